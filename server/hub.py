"""The websocket hub: who is connected, and which messages reach whom, in order.

Rules (protocol reference §2):
- A socket's id (`sid`) is its `clientId` query value, else a fresh UUID4 hex; a new socket with a taken id
  replaces (and closes) the old one. Its first message is `status` with the `sid`; if it owns the prompt that is
  running, `executing {node}` of the current node follows at once.
- Events of a prompt go to the socket whose sid is the prompt's `client_id`. A prompt without one has its
  `progress`, previews and `execution_interrupted` broadcast and its other events not sent. `status` always goes
  to everyone.
- Messages are serialised once and queued per socket, so every socket sees them in publication order; each
  socket has its own sender task, so a slow reader never delays the others. A socket whose outbox overflows is
  disconnected rather than allowed to hold memory.
- Binary preview frames: event 1 (`[u32 1][u32 1 = JPEG][bytes]`) by default, event 4 (`[u32 4][u32 n][n bytes of
  metadata JSON][image]`) for sockets that announced `supports_preview_metadata` in their first message.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, web

from executor.events import Event, Executing, FeatureFlags, Status

log = logging.getLogger(__name__)
OUTBOX_MAX = 4096
PREVIEW_IMAGE, PREVIEW_IMAGE_WITH_METADATA = 1, 4
JPEG = 1
BROADCAST_WITHOUT_CLIENT = frozenset({"progress", "progress_state", "preview", "execution_interrupted"})
Message = str | bytes


@dataclass(eq=False)
class Client:
    sid: str
    ws: web.WebSocketResponse
    outbox: asyncio.Queue[Message | None] = field(default_factory=lambda: asyncio.Queue(OUTBOX_MAX))
    features: dict[str, Any] = field(default_factory=dict)
    greeted: bool = False  # has sent its first text message (feature negotiation happens only there)

    @property
    def wants_preview_metadata(self) -> bool:
        return self.features.get("supports_preview_metadata") is True


@dataclass
class Running:
    """The prompt being executed, as far as sockets care."""

    prompt_id: str
    client_id: str | None
    node: str | None = None


def text(kind: str, data: Any) -> str:
    """A text message of any type (packs' `send_sync` messages are not ours to type)."""
    return json.dumps({"type": kind, "data": data})


def encode(event: Event) -> str:
    """An event as its websocket text message."""
    return text(event.type, event.data())


def preview_frames(jpeg: bytes, prompt_id: str, node: str) -> tuple[bytes, bytes]:
    """(event 1 frame, event 4 frame) for one JPEG preview."""
    plain = struct.pack(">II", PREVIEW_IMAGE, JPEG) + jpeg
    meta = json.dumps({"node_id": node, "prompt_id": prompt_id, "display_node_id": node, "parent_node_id": None,
                       "real_node_id": node, "image_type": "image/jpeg"}).encode()
    rich = struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(meta)) + meta + jpeg
    return plain, rich


class Hub:
    """The connected websockets and the routing of messages to them (rules in the module doc).

    Used on the event loop only; the worker hands executor events over with `publish`.
    """

    def __init__(self, max_upload_size: int) -> None:
        self.clients: dict[str, Client] = {}
        self.running: Running | None = None
        self.max_upload_size = max_upload_size
        self._closing: set[asyncio.Task] = set()  # sockets being closed in the background (kept referenced)

    # --- connections -------------------------------------------------------------------------------------------
    def connect(self, ws: web.WebSocketResponse, sid: str | None, queue_remaining: int) -> Client:
        sid = sid or uuid.uuid4().hex
        old = self.clients.get(sid)
        if old is not None:
            self._drop(old)
        client = Client(sid, ws)
        self.clients[sid] = client
        self._put(client, encode(Status(queue_remaining, sid)))
        running = self.running
        if running is not None and running.client_id == sid and running.node is not None:
            self._put(client, encode(Executing(running.node, None)))
        return client

    def disconnect(self, client: Client) -> None:
        if self.clients.get(client.sid) is client:
            del self.clients[client.sid]

    def receive(self, client: Client, data: str) -> None:
        """A text message from a client: only a first `feature_flags` message means anything."""
        first, client.greeted = not client.greeted, True
        if not first:
            return
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):
            return
        if isinstance(message, dict) and message.get("type") == "feature_flags" and isinstance(
                message.get("data"), dict):
            client.features = dict(message["data"])
            self._put(client, encode(FeatureFlags(True, float(self.max_upload_size))))

    async def sender(self, client: Client) -> None:
        """Drain one socket's outbox until it is closed (a `None` in the outbox)."""
        while (message := await client.outbox.get()) is not None:
            try:
                if isinstance(message, bytes):
                    await client.ws.send_bytes(message)
                else:
                    await client.ws.send_str(message)
            except (ConnectionError, RuntimeError):
                break  # the peer went away; the reader side cleans up

    async def close_all(self) -> None:
        clients = list(self.clients.values())
        self.clients.clear()
        for client in clients:
            with contextlib.suppress(Exception):
                await client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    # --- publishing --------------------------------------------------------------------------------------------
    def status(self, queue_remaining: int) -> None:
        """Tell every socket the queue size."""
        self.broadcast(encode(Status(queue_remaining)))

    def broadcast(self, message: Message) -> None:
        """Queue an encoded message for every socket."""
        for client in list(self.clients.values()):
            self._put(client, message)

    def send(self, sid: str, message: Message) -> None:
        """Queue an encoded message for one socket (nothing when it is not connected)."""
        client = self.clients.get(sid)
        if client is not None:
            self._put(client, message)

    def publish(self, event: Event, client_id: str | None, jpeg: bytes | None = None) -> None:
        """One executor event of the running prompt (called on the loop, in the order the executor emitted)."""
        if event.type == "executing" and self.running is not None:
            self.running.node = event.data()["node"]
        if event.type == "preview":
            if jpeg is not None:
                self._publish_preview(event, client_id, jpeg)
            return
        message = encode(event)
        if client_id is not None:
            self.send(client_id, message)
        elif event.type in BROADCAST_WITHOUT_CLIENT:
            self.broadcast(message)

    def _publish_preview(self, event: Event, client_id: str | None, jpeg: bytes) -> None:
        data = event.data()
        plain, rich = preview_frames(jpeg, data["prompt_id"], data["node_id"])
        targets = [self.clients[client_id]] if client_id in self.clients else []
        if client_id is None:
            targets = list(self.clients.values())
        for client in targets:
            self._put(client, rich if client.wants_preview_metadata else plain)

    def _put(self, client: Client, message: Message | None) -> None:
        try:
            client.outbox.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("websocket %s is not reading; disconnecting it", client.sid)
            self._drop(client)

    def _drop(self, client: Client) -> None:
        self.disconnect(client)
        # Stop its sender at once (even if the outbox is full) and close the socket in the background.
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                client.outbox.get_nowait()
        client.outbox.put_nowait(None)
        task = asyncio.get_running_loop().create_task(client.ws.close(code=WSCloseCode.POLICY_VIOLATION))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
