"""`server.PromptServer`: the server object ComfyUI packs talk to (reference §4.8 item 6, §4.9, §2.2).

What a pack gets from `PromptServer.instance`:
- `.routes`: an aiohttp `RouteTableDef` the pack decorates at import time. `attach(app)` adds those routes to the
  app after our own routes and the extension files (ours win a clash; a clashing or broken pack route is logged
  and skipped, never fatal) and before the editor's catch-all; each plain route is also served under `/api`, as
  ComfyUI does. They sit behind the same middlewares as every API route (token, origin checks).
- `.send_sync(event, data, sid=None)`: a text message `{"type": event, "data": data}` to the socket `sid`, or to
  every socket. Callable from any thread (FUNCTIONs run on the executor thread): the message is serialised on the
  caller's thread (a value that is not JSON raises there) and handed to the loop with `call_soon_threadsafe`, the
  path the run's own events take, so it keeps its place among them. Binary events are not supported.
- `.add_on_prompt_handler(fn)`: `fn(json_data) -> json_data` is applied to each `POST /prompt` body before it is
  validated (`on_prompt`); a handler that raises is logged and skipped.
- `.client_id`: the client id of the prompt being run (the running V1 node's, else the worker's), or None.
- `.loop`, `.app`: the app's event loop and application, from when the app starts (None before).

There is one `PromptServer.instance` per process, as in ComfyUI. `create_app` makes a fresh one just before it
loads the data folder's plugins (and for an app without plugins), so route tables and prompt handlers of packs
loaded for another app (tests, an earlier data folder) do not leak in; an app made from a registry and plugins
loaded elsewhere takes the current instance, the one those packs registered with.
Only the most recently started app receives `send_sync` messages.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, ClassVar

from aiohttp import web

from nodes.comfy_compat import current_context
from server.api import API_PREFIX
from server.hub import Hub, text

log = logging.getLogger(__name__)
PromptHandler = Callable[[dict[str, Any]], dict[str, Any]]


class PromptServer:
    """The pack-facing server; constructing one makes it `PromptServer.instance`."""

    instance: ClassVar[PromptServer]

    def __init__(self) -> None:
        self.routes = web.RouteTableDef()
        self.on_prompt_handlers: list[PromptHandler] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.app: web.Application | None = None
        self._hub: Hub | None = None
        PromptServer.instance = self

    @property
    def client_id(self) -> str | None:
        ctx = current_context()
        if ctx is not None:
            return ctx.extra_data.get("client_id")
        running = self._hub.running if self._hub is not None else None
        return running.client_id if running is not None else None

    def add_on_prompt_handler(self, handler: PromptHandler) -> None:
        self.on_prompt_handlers.append(handler)

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        if not isinstance(event, str):
            raise TypeError(f"latentloom's send_sync sends text events only, not {event!r}")
        message = text(event, data)
        hub, loop = self._hub, self.loop
        if hub is None or loop is None:
            log.debug("send_sync(%r) before the server started: dropped", event)
            return
        try:
            if sid is None:
                loop.call_soon_threadsafe(hub.broadcast, message)
            else:
                loop.call_soon_threadsafe(hub.send, sid, message)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass


PromptServer()
PROMPT_SERVER = web.AppKey("prompt_server", PromptServer)


def attach(app: web.Application, hub: Hub) -> None:
    """Serve the current instance's pack routes on `app`; bind the instance to it (and its `hub`) while it runs."""
    server = app[PROMPT_SERVER] = PromptServer.instance
    for route in server.routes:
        _add_route(app, route)

    async def bind(app: web.Application) -> None:
        server.loop, server.app, server._hub = asyncio.get_running_loop(), app, hub

    async def unbind(app: web.Application) -> None:
        if server.app is app:
            server.loop, server.app, server._hub = None, None, None

    app.on_startup.append(bind)
    app.on_cleanup.append(unbind)


def _add_route(app: web.Application, route: web.AbstractRouteDef) -> None:
    try:
        route.register(app.router)
        if isinstance(route, web.RouteDef):
            kwargs = {k: v for k, v in route.kwargs.items() if k != "name"}  # a name may be registered once
            app.router.add_route(route.method, API_PREFIX + route.path, route.handler, **kwargs)
    except (RuntimeError, ValueError) as exc:  # a clash with a route already there
        log.error("a plugin's route %r was not added: %s", route, exc)


def on_prompt(app: web.Application, json_data: Any) -> Any:
    """A `POST /prompt` body after the packs' on-prompt handlers (unchanged when there are none)."""
    server = app.get(PROMPT_SERVER)
    for handler in server.on_prompt_handlers if server is not None else ():
        try:
            json_data = handler(json_data)
        except Exception:  # a pack's bug must not refuse every prompt
            log.exception("on-prompt handler %r failed; the prompt goes on without it", handler)
    return json_data
