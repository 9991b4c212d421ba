"""`GET /ws?clientId=`: the websocket endpoint; the hub (server.hub) decides what each socket receives."""
from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from server.api import Route
from server.state import HUB, STORE

MAX_CLIENT_MESSAGE = 1 << 20


async def websocket(request: web.Request) -> web.StreamResponse:
    hub, store = request.app[HUB], request.app[STORE]
    sid = request.query.get("clientId") or None
    if sid is not None and (len(sid) > 256 or not sid.isprintable()):
        raise web.HTTPBadRequest(text="clientId must be at most 256 printable characters")
    ws = web.WebSocketResponse(max_msg_size=MAX_CLIENT_MESSAGE, heartbeat=30.0)
    await ws.prepare(request)
    client = hub.connect(ws, sid, store.remaining())
    sender = asyncio.get_running_loop().create_task(hub.sender(client))
    try:
        async for msg in ws:
            if msg.type == web.WSMsgType.TEXT:
                hub.receive(client, msg.data)
    finally:
        hub.disconnect(client)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    return ws


ROUTES = [
    Route("GET", "/ws", websocket, "Websocket of run events (first message: status with the sid)", "events",
          responses={101: ("switching to the websocket protocol", None)}, content_type=""),
]
