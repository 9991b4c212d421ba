"""Queueing and control routes: `/prompt`, `/queue`, `/history`, `/interrupt`, `/free` (protocol §1.3–§1.6, §1.9).

`POST /prompt`, in order: read the body, pass it through the on-prompt handlers ComfyUI packs registered
(`PromptServer.instance.add_on_prompt_handler`), validate it (400 `invalid_json` / `invalid_request`, never
ComfyUI's 500), require `prompt` (400 `no_prompt`), admit it on a worker thread (executor.prepare.admit: UI
format converted, models found by their recorded hash, seeds resolved with the store's counters, parsed and
validated; a refusal is 400 with ComfyUI's `error` + `node_errors`), choose the number (the caller's, else the
persistent counter, negated for `front`), store the item with `client_id` copied into `extra_data`, broadcast
`status`, wake the worker, answer `{prompt_id, number, node_errors}`. The prompt is stored and run with its seeds resolved.
"""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web

from executor.errors import PromptError
from executor.prepare import admit
from executor.queue import DuplicatePromptError, QueueItem, QueueStore
from server import schemas as s
from server.api import ApiError, Route, empty_ok, json_response, parse_json, read_model, read_query, validate_model
from server.comfy_server import on_prompt
from server.state import ENV, HUB, REGISTRY, STORE, WORKER

BAD = (400, ("refused: ComfyUI's error envelope", s.ErrorResponse))


class LoopCounters:
    """The store's seed counters for `admit` on a worker thread: each step runs on the loop, which owns the store."""

    def __init__(self, store: QueueStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store, self.loop = store, loop

    def advance_seed(self, stream: str, start: int, delta: int, lo: int, hi: int) -> int:
        async def advance() -> int:
            return self.store.advance_seed(stream, start, delta, lo, hi)

        return asyncio.run_coroutine_threadsafe(advance(), self.loop).result()


async def read_prompt_request(request: web.Request) -> s.PromptRequest:
    """The body, after the packs' on-prompt handlers (server.comfy_server), validated."""
    raw = await request.read()  # over client_max_size: aiohttp raises 413
    if not raw.strip():
        raise ApiError(400, "invalid_json", "Invalid JSON", "the request body is empty")
    return validate_model(s.PromptRequest, on_prompt(request.app, parse_json(raw)), "body")


async def post_prompt(request: web.Request) -> web.Response:
    body = await read_prompt_request(request)
    if body.prompt is None:
        raise ApiError(400, "no_prompt", "No prompt provided", "No prompt provided")
    app = request.app
    store, registry, env = app[STORE], app[REGISTRY], app[ENV]
    prompt_id = str(body.prompt_id) if body.prompt_id is not None else str(uuid.uuid4())
    if not prompt_id or len(prompt_id) > s.MAX_ID_LENGTH:
        raise ApiError(400, "invalid_request", "Invalid request",
                       f"prompt_id must be 1 to {s.MAX_ID_LENGTH} characters")
    # off the loop: resolving models by hash may read whole model files the first time, and a large prompt
    # takes a while to validate; sockets must not wait for either
    counters = LoopCounters(store, asyncio.get_running_loop())
    try:
        admitted = await asyncio.to_thread(admit, body.prompt, registry, env, extra_data=body.extra_data,
                                           seeds=counters, client_id=body.client_id or "",
                                           targets=body.partial_execution_targets)
    except PromptError as exc:
        return json_response(exc.body(), status=400)
    report, extra_data = admitted.report, dict(admitted.extra_data)
    if body.client_id is not None:
        extra_data["client_id"] = body.client_id
    number: int | float = body.number if body.number is not None else store.next_number(front=bool(body.front))
    try:
        store.put(QueueItem(number, prompt_id, admitted.prompt, extra_data, list(report.outputs)))
    except DuplicatePromptError as exc:
        raise ApiError(400, "duplicate_prompt_id", "Prompt id already queued", str(exc)) from None
    app[HUB].status(store.remaining())
    app[WORKER].wake()
    return json_response({"prompt_id": prompt_id, "number": number, "node_errors": report.node_errors()})


async def get_prompt(request: web.Request) -> web.Response:
    return json_response({"exec_info": {"queue_remaining": request.app[STORE].remaining()}})


async def get_queue(request: web.Request) -> web.Response:
    store = request.app[STORE]
    return json_response({"queue_running": [i.to_comfy() for i in store.running()],
                          "queue_pending": [i.to_comfy() for i in store.pending()]})


async def post_queue(request: web.Request) -> web.Response:
    action = await read_model(request, s.QueueAction)
    store = request.app[STORE]
    changed = store.clear_pending() if action.clear else 0
    changed += store.delete_pending(action.delete) if action.delete else 0
    if changed:
        request.app[HUB].status(store.remaining())
    return empty_ok()


async def get_history(request: web.Request) -> web.Response:
    query = read_query(request, s.HistoryQuery)
    return json_response(request.app[STORE].history(query.max_items, query.offset))


async def get_history_item(request: web.Request) -> web.Response:
    prompt_id = request.match_info["prompt_id"]
    entry = request.app[STORE].history_entry(prompt_id)
    return json_response({prompt_id: entry} if entry is not None else {})


async def post_history(request: web.Request) -> web.Response:
    action = await read_model(request, s.QueueAction)
    store = request.app[STORE]
    if action.clear:
        store.clear_history()
    if action.delete:
        store.delete_history(action.delete)
    return empty_ok()


async def post_interrupt(request: web.Request) -> web.Response:
    body = await read_model(request, s.InterruptRequest, required=False)
    request.app[WORKER].interrupt(body.prompt_id)
    return empty_ok()


async def post_free(request: web.Request) -> web.Response:
    body = await read_model(request, s.FreeRequest, required=False)
    request.app[WORKER].request_free(body.unload_models, body.free_memory)
    return empty_ok()


def _ok(description: str, model: Any = None) -> dict[int, tuple[str, Any]]:
    return {200: (description, model), BAD[0]: BAD[1]}


ROUTES = [
    Route("POST", "/prompt", post_prompt, "Queue an API-format workflow", "queue", body=s.PromptRequest,
          responses=_ok("queued", s.PromptResponse)),
    Route("GET", "/prompt", get_prompt, "How many prompts are pending or running", "queue",
          responses={200: ("queue size", s.PromptStatus)}),
    Route("GET", "/queue", get_queue, "The running and pending prompts", "queue",
          responses={200: ("queue", s.QueueResponse)}),
    Route("POST", "/queue", post_queue, "Clear the pending prompts or delete some", "queue", body=s.QueueAction,
          responses=_ok("done (empty body)")),
    Route("GET", "/history", get_history, "Finished prompts, in completion order", "history",
          query=s.HistoryQuery, responses=_ok("history", s.HistoryResponse)),
    Route("GET", "/history/{prompt_id}", get_history_item, "One finished prompt ({} when unknown or unfinished)",
          "history", responses={200: ("history entry", s.HistoryResponse)}),
    Route("POST", "/history", post_history, "Clear the history or delete entries", "history", body=s.QueueAction,
          responses=_ok("done (empty body)")),
    Route("POST", "/interrupt", post_interrupt, "Interrupt the running prompt (only it, when prompt_id is given)",
          "queue", body=s.InterruptRequest, body_required=False, responses=_ok("done (empty body)")),
    Route("POST", "/free", post_free, "Unload models and/or drop cached results after the running prompt",
          "system", body=s.FreeRequest, body_required=False, responses=_ok("done (empty body)")),
]
