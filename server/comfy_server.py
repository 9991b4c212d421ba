"""`server.PromptServer`: the server object ComfyUI packs talk to (reference §4.8 item 6, §4.9, §2.2).

What a pack gets from `PromptServer.instance`:
- `.routes`: an aiohttp `RouteTableDef` the pack decorates at import time. `attach(app)` adds those routes to the
  app after our own routes and the extension files (ours win a clash; a clashing or broken pack route is logged
  and skipped, never fatal) and before the editor's catch-all; each plain route is also served under `/api`, as
  ComfyUI does. They sit behind the same middlewares as every API route (token, origin checks).
- `.send_sync(event, data, sid=None)`: a text message `{"type": event, "data": data}` to the socket `sid`, or to
  every socket. Callable from any thread (FUNCTIONs run on the executor thread): the message is serialised on the
  caller's thread (a value that is not JSON raises there) and handed to the loop with `call_soon_threadsafe`, the
  path the run's own events take, so it keeps its place among them. A `BinaryEventTypes` event sends a binary
  frame: a preview `(format, PIL image, max size)` for PREVIEW_IMAGE / UNENCODED_PREVIEW_IMAGE (encoded, resized
  to fit, as event 1), otherwise `data` bytes after the event number.
- `.add_on_prompt_handler(fn)`: `fn(json_data) -> json_data` is applied to each `POST /prompt` body before it is
  validated (`on_prompt`); a handler that raises is logged and skipped.
- `.client_id`: the client id of the prompt being run (the running V1 node's, else the worker's), or None.
- `.supports`: `["custom_nodes_from_web"]`: packs that check it serve their `WEB_DIRECTORY` through us instead of
  copying their JavaScript into the server's folders, which must never happen.
- `.app`: an aiohttp application from the moment the instance exists, so packs may touch `app.router` at import
  time: a stand-in until `attach` moves what packs put on it (routes, middlewares, startup/cleanup signals) to
  the app, which it is from then on. Routes a pack added there come after ours, like `.routes`, a clash being
  logged and skipped. `.loop`: the app's event loop, from when it starts (None before).

There is one `PromptServer.instance` per process, as in ComfyUI. `create_app` makes a fresh one just before it
loads the data folder's plugins (and for an app without plugins), so route tables and prompt handlers of packs
loaded for another app (tests, an earlier data folder) do not leak in; an app made from a registry and plugins
loaded elsewhere takes the current instance, the one those packs registered with.
Only the most recently started app receives `send_sync` messages.
"""
from __future__ import annotations

import asyncio
import io
import logging
import struct
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
    supports: ClassVar[list[str]] = ["custom_nodes_from_web"]

    def __init__(self) -> None:
        self.routes = web.RouteTableDef()
        self.on_prompt_handlers: list[PromptHandler] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.app = self._stand_in = web.Application()  # until attached (see the module's rules)
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

    def send_sync(self, event: str | int, data: Any, sid: str | None = None) -> None:
        message = binary_frame(event, data) if isinstance(event, int) else text(event, data)
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


class BinaryEventTypes:
    """ComfyUI's binary websocket event numbers."""

    PREVIEW_IMAGE = 1
    UNENCODED_PREVIEW_IMAGE = 2
    TEXT = 3
    PREVIEW_IMAGE_WITH_METADATA = 4


def binary_frame(event: int, data: Any) -> bytes:
    """The websocket frame of a binary `send_sync` event (see the module's rules)."""
    if event in (BinaryEventTypes.PREVIEW_IMAGE, BinaryEventTypes.UNENCODED_PREVIEW_IMAGE):
        fmt, image, max_size = data
        image = image.copy()
        if max_size is not None:
            image.thumbnail((max_size, max_size))
        buffer = io.BytesIO()
        png = str(fmt).upper() == "PNG"
        image.convert("RGBA" if png else "RGB").save(buffer, format="PNG" if png else "JPEG", quality=95)
        return struct.pack(">II", BinaryEventTypes.PREVIEW_IMAGE, 2 if png else 1) + buffer.getvalue()
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"binary event {event} sends bytes, not {type(data).__name__}")
    return struct.pack(">I", event) + bytes(data)


PromptServer()
PROMPT_SERVER = web.AppKey("prompt_server", PromptServer)


def attach(app: web.Application, hub: Hub) -> None:
    """Serve the current instance's pack routes on `app`; bind the instance to it (and its `hub`) while it runs."""
    server = app[PROMPT_SERVER] = PromptServer.instance
    if server.app is server._stand_in:
        _adopt(app, server._stand_in)
    server.app = app
    for route in server.routes:
        _add_route(app, route)

    async def bind(app: web.Application) -> None:
        server.loop, server._hub = asyncio.get_running_loop(), hub

    async def unbind(app: web.Application) -> None:
        if server.app is app:
            server.loop, server._hub = None, None

    app.on_startup.append(bind)
    app.on_cleanup.append(unbind)


def _adopt(app: web.Application, stand_in: web.Application) -> None:
    """What packs put on the stand-in app at import: its routes (after ours), middlewares and signals."""
    for resource in stand_in.router.resources():
        try:
            app.router.register_resource(resource)
        except (RuntimeError, ValueError) as exc:
            log.error("a plugin's route %r was not added: %s", resource, exc)
    app.middlewares.extend(stand_in.middlewares)
    for signal in ("on_startup", "on_shutdown", "on_cleanup"):
        getattr(app, signal).extend(getattr(stand_in, signal))


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
