"""Model downloads over HTTP (ours): `POST /models/pull` starts one, `GET /models/pull/{pull_id}` reports it.

- Allowed on a loopback-only server, and beyond loopback only with `--allow-model-pull` and a token (a server
  without a token never downloads for whoever can reach it); otherwise 403.
- The download runs on its own small thread pool (`nodes.pull`), never on the event loop and never in the prompt
  queue's way. Its progress goes to every websocket as `model_pull` messages `{pull_id, kind, name, status,
  value, max, error}` with status `downloading` (at most about four a second), then `done` or `error`.
- The source is checked before the answer (an http URL elsewhere, an unknown kind or a bad name → 400), so a 202
  means the download started.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from nodes.identity import model_hashes
from nodes.paths import MODEL_FOLDERS
from nodes.pull import PullError, Source, pull, resolve_source, safe_name
from server.api import ApiError, Route, json_response, read_model
from server.hub import text
from server.state import CONFIG, ENV, HUB

PULLS = web.AppKey("model_pulls", dict)
POOL = web.AppKey("model_pull_pool", ThreadPoolExecutor)
PROGRESS_INTERVAL = 0.25


class PullBody(BaseModel):
    source: str = Field(description="https URL, or Hugging Face org/repo/path/file (or org/repo with `file`)")
    kind: Literal[MODEL_FOLDERS] = Field("checkpoints", description="model folder")  # type: ignore[valid-type]
    name: str | None = Field(None, description="file name in that folder (default: the source's)")
    sha256: str | None = Field(None, description="expected sha256; another hash is refused")
    file: str | None = Field(None, description="the file in a Hugging Face repository")
    revision: str | None = Field(None, description="Hugging Face branch, tag or commit")


class PullState(BaseModel):
    """A download as `GET /models/pull/{pull_id}` and the `model_pull` messages report it."""

    pull_id: str
    kind: str
    name: str
    status: Literal["downloading", "done", "error"] = "downloading"
    value: int = Field(0, description="bytes so far")
    max: int | None = Field(None, description="bytes in all, when known")
    sha256: str | None = None
    error: str | None = None


class PullStarted(BaseModel):
    pull_id: str


async def start_pull(request: web.Request) -> web.Response:
    app = request.app
    config = app[CONFIG]
    if not (config.loopback_only or (config.allow_model_pull and config.auth_token is not None)):
        raise ApiError(403, "model_pull_disabled", "Model downloads are off",
                       "beyond loopback they need --allow-model-pull and a token")
    body = await read_model(request, PullBody)
    try:
        source = resolve_source(body.source, body.file, body.revision)
        name = safe_name(body.name or source.name)
    except PullError as exc:
        raise ApiError(400, "invalid_source", "Cannot pull that", str(exc)) from None
    state = PullState(pull_id=uuid.uuid4().hex, kind=body.kind, name=name)
    app[PULLS][state.pull_id] = state
    loop = asyncio.get_running_loop()
    loop.run_in_executor(app[POOL], _run, app, loop, state, source, body.sha256)
    return json_response({"pull_id": state.pull_id}, status=202)


def _run(app: web.Application, loop: asyncio.AbstractEventLoop, state: PullState, source: Source,
         sha256: str | None) -> None:
    """On a pool thread: the download, its progress sent through the loop."""
    hub = app[HUB]
    last = 0.0

    def announce() -> None:
        loop.call_soon_threadsafe(hub.broadcast, text("model_pull", state.model_dump()))

    def progress(done: int, total: int | None) -> None:
        nonlocal last
        state.value, state.max = done, total
        if time.monotonic() - last >= PROGRESS_INTERVAL:
            last = time.monotonic()
            announce()

    env = app[ENV]
    try:
        pulled = pull(env.paths, model_hashes(env), state.kind, source, name=state.name, sha256=sha256,
                      progress=progress)
    except PullError as exc:
        state.status, state.error = "error", str(exc)
    except OSError as exc:
        state.status, state.error = "error", f"cannot write the model: {exc}"
    else:
        state.status, state.sha256 = "done", pulled.sha256
        state.value = state.max = pulled.size
    announce()


async def pull_status(request: web.Request) -> web.Response:
    state = request.app[PULLS].get(request.match_info["pull_id"])
    if state is None:
        raise ApiError(404, "unknown_pull", "No such download", request.match_info["pull_id"])
    return json_response(state.model_dump())


async def pull_pool(app: web.Application):
    """The downloads' threads for the app's lifetime (two at a time)."""
    app[PULLS] = {}
    app[POOL] = ThreadPoolExecutor(2, thread_name_prefix="model-pull")
    yield
    app[POOL].shutdown(wait=False, cancel_futures=True)


ROUTES = [
    Route("POST", "/models/pull", start_pull, "Download a model into the data folder (progress: model_pull "
          "websocket messages)", "models", body=PullBody,
          responses={202: ("started", PullStarted), 400: ("bad source or name", None),
                     403: ("downloads are off on this server", None)}),
    Route("GET", "/models/pull/{pull_id}", pull_status, "A download's state", "models",
          responses={200: ("state", PullState), 404: ("unknown download", None)}),
]
