"""The websocket: handshake, message sequences (success, cache hit, node error, interrupt), targeting, reconnect,
feature flags and binary preview frames."""
from __future__ import annotations

import asyncio
import io
import json
import struct

import pytest
from aiohttp import WSMsgType
from PIL import Image

from tests.server import server_nodes
from tests.server.conftest import chain, gated, queue, until_done, wait_for, wait_history


def status(n, sid=None):
    data = {"status": {"exec_info": {"queue_remaining": n}}}
    if sid is not None:
        data["sid"] = sid
    return {"type": "status", "data": data}


def compact(message):
    """(type, data without timestamp); a progress_state as {node: (state, value, max)}."""
    data = {k: v for k, v in message["data"].items() if k != "timestamp"}
    if message["type"] == "progress_state":
        data = {nid: (e["state"], e["value"], e["max"]) for nid, e in data["nodes"].items()}
    return message["type"], data


async def connect(client, sid=None, **query):
    if sid is not None:
        query["clientId"] = sid
    ws = await client.ws_connect("/ws", params=query)
    first = await ws.receive_json()
    return ws, first


async def test_handshake_with_and_without_client_id(client):
    ws, first = await connect(client, "abc")
    assert first == status(0, "abc")
    ws2, first2 = await connect(client)
    sid = first2["data"]["sid"]
    assert len(sid) == 32 and int(sid, 16) >= 0 and first2 == status(0, sid)
    await ws.close()
    await ws2.close()


async def test_success_sequence(client):
    ws, _ = await connect(client, "c1")
    body = await queue(client, chain(), client_id="c1")
    pid = body["prompt_id"]
    messages = await until_done(ws, pid)
    # the history entry exists by the time the "done" signal arrives
    assert (await (await client.get(f"/history/{pid}")).json())[pid]["status"]["completed"]
    running, finished = ("running", 0, 1), ("finished", 1, 1)
    assert [compact(m) for m in messages] == [
        ("status", {"status": {"exec_info": {"queue_remaining": 1}}}),  # queued
        ("status", {"status": {"exec_info": {"queue_remaining": 1}}}),  # taken by the worker
        ("execution_start", {"prompt_id": pid}),
        ("execution_cached", {"nodes": [], "prompt_id": pid}),
        ("progress_state", {"1": running}),
        ("executing", {"node": "1", "display_node": "1", "prompt_id": pid}),
        ("progress_state", {"1": finished}),
        ("progress_state", {"1": finished, "2": running}),
        ("executing", {"node": "2", "display_node": "2", "prompt_id": pid}),
        ("progress_state", {"1": finished, "2": finished}),
        ("progress_state", {"1": finished, "2": finished, "3": running}),
        ("executing", {"node": "3", "display_node": "3", "prompt_id": pid}),
        ("executed", {"node": "3", "display_node": "3", "output": {"text": ["6.0"]}, "prompt_id": pid}),
        ("progress_state", {"1": finished, "2": finished, "3": finished}),
        ("execution_success", {"prompt_id": pid}),
        ("status", {"status": {"exec_info": {"queue_remaining": 0}}}),
        ("executing", {"node": None, "prompt_id": pid}),
    ]
    await ws.close()


async def test_cache_hit_sequence(client):
    ws, _ = await connect(client, "c1")
    await until_done(ws, (await queue(client, chain(), client_id="c1"))["prompt_id"])
    pid = (await queue(client, chain(), client_id="c1"))["prompt_id"]
    messages = await until_done(ws, pid)
    kinds = [m["type"] for m in messages]
    assert kinds == ["status", "status", "execution_start", "execution_cached", "progress_state", "executed",
                     "execution_success", "status", "executing"]
    assert set(messages[3]["data"]["nodes"]) == {"1", "2", "3"}
    assert compact(messages[4])[1] == {nid: ("finished", 1, 1) for nid in ("1", "2", "3")}
    assert messages[5]["data"] == {"node": "3", "display_node": "3", "output": {"text": ["6.0"]}, "prompt_id": pid}
    await ws.close()


async def test_node_error_sequence(client):
    ws, _ = await connect(client, "c1")
    wf = {"1": {"class_type": "Constant", "inputs": {"value": 4.0}},
          "2": {"class_type": "Fail", "inputs": {"x": ["1", 0], "message": "kaput"}},
          "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    pid = (await queue(client, wf, client_id="c1"))["prompt_id"]
    messages = await until_done(ws, pid)
    kinds = [m["type"] for m in messages]
    assert kinds == ["status", "status", "execution_start", "execution_cached", "progress_state", "executing",
                     "progress_state", "progress_state", "executing", "progress_state", "execution_error", "status",
                     "executing"]
    assert compact(messages[9])[1] == {"1": ("finished", 1, 1), "2": ("error", 0, 1)}
    error = messages[10]["data"]
    assert set(error) == {"prompt_id", "node_id", "node_type", "executed", "exception_message", "exception_type",
                          "traceback", "current_inputs", "current_outputs", "timestamp"}
    assert (error["node_id"], error["node_type"], error["exception_message"], error["exception_type"]) == (
        "2", "Fail", "kaput", "RuntimeError")
    assert error["executed"] == ["1"] and error["current_inputs"] == {"x": [4.0], "message": ["kaput"]}
    assert any("kaput" in line for line in error["traceback"])
    entry = await wait_history(client, pid)
    assert entry["status"]["status_str"] == "error" and entry["status"]["messages"][-1][0] == "execution_error"
    await ws.close()


async def test_interrupt_sequence(client):
    ws, _ = await connect(client, "c1")
    pid = (await queue(client, gated(), client_id="c1"))["prompt_id"]
    await wait_for(server_nodes.GATE_ENTERED.is_set)
    await client.post("/interrupt")
    messages = await until_done(ws, pid)
    assert [m["type"] for m in messages][-4:] == ["executing", "execution_interrupted", "status", "executing"]
    data = messages[-3]["data"]
    assert {k: v for k, v in data.items() if k != "timestamp"} == {
        "prompt_id": pid, "node_id": "2", "node_type": "Gate", "executed": ["1"]}
    await ws.close()


async def test_progress_and_targeting(client):
    mine, _ = await connect(client, "mine")
    other, _ = await connect(client, "other")
    wf = {"1": {"class_type": "Constant", "inputs": {"value": 1.0}},
          "2": {"class_type": "Slow", "inputs": {"x": ["1", 0], "steps": 3, "delay": 0.0}},
          "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    pid = (await queue(client, wf, client_id="mine"))["prompt_id"]
    messages = await until_done(mine, pid)
    progress = [m["data"] for m in messages if m["type"] == "progress"]
    assert progress == [{"value": i, "max": 3, "prompt_id": pid, "node": "2"} for i in (1, 2, 3)]
    # each step is followed by the node's progress state
    states = [compact(m)[1]["2"] for m in messages if m["type"] == "progress_state" and "2" in m["data"]["nodes"]]
    assert states == [("running", 0, 1), ("running", 1, 3), ("running", 2, 3), ("running", 3, 3),
                      ("finished", 3, 3), ("finished", 3, 3), ("finished", 3, 3)]
    entry = next(m for m in messages if m["type"] == "progress_state")["data"]["nodes"]["1"]
    assert entry == {"value": 0, "max": 1, "state": "running", "node_id": "1", "prompt_id": pid,
                     "display_node_id": "1", "parent_node_id": None, "real_node_id": "1"}
    # the other socket saw only the broadcast status messages
    seen = []
    while len(seen) < 3:
        seen.append(await other.receive_json(timeout=5))
    assert [m["type"] for m in seen] == ["status", "status", "status"]

    # without a client_id: progress and progress states are broadcast, the prompt's other events are not sent
    wf["2"]["inputs"]["steps"] = 2
    anon = (await queue(client, wf))["prompt_id"]
    await wait_history(client, anon)
    for ws in (mine, other):
        got = []
        while not got or got[-1]["type"] != "status" or len(got) < 3:
            got.append(await ws.receive_json(timeout=5))
        kinds = [m["type"] for m in got if m["type"] != "progress_state"]
        assert kinds == ["status", "status", "progress", "progress", "status"]
        assert all(m["data"]["prompt_id"] == anon for m in got if m["type"] == "progress_state")
    await mine.close()
    await other.close()


async def test_anonymous_interrupt_is_broadcast(client):
    ws, _ = await connect(client, "watcher")
    pid = (await queue(client, gated()))["prompt_id"]
    await wait_for(server_nodes.GATE_ENTERED.is_set)
    await client.post("/interrupt", json={"prompt_id": pid})
    kinds = []
    while "execution_interrupted" not in kinds:
        kinds.append((await ws.receive_json(timeout=5))["type"])
    assert [kind for kind in kinds if kind != "progress_state"] == ["status", "status", "execution_interrupted"]
    await ws.close()


async def test_reconnect_gets_current_node_and_replaces_old_socket(client):
    old, _ = await connect(client, "me")
    await queue(client, gated(), client_id="me")
    await wait_for(server_nodes.GATE_ENTERED.is_set)
    new, first = await connect(client, "me")
    assert first == status(1, "me")
    assert await new.receive_json(timeout=5) == {"type": "executing", "data": {"node": "2"}}
    closed = None
    while closed is None or closed.type not in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
        closed = await old.receive(timeout=5)
    server_nodes.GATE.set()
    await new.close()


async def test_feature_flags_only_as_first_message(client):
    ws, _ = await connect(client, "f")
    await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    reply = await ws.receive_json(timeout=5)
    assert reply == {"type": "feature_flags",
                     "data": {"supports_preview_metadata": True, "max_upload_size": 104857600.0}}
    await ws.send_json({"type": "feature_flags", "data": {}})
    await ws.send_str("not json at all")
    await queue(client, chain())
    assert (await ws.receive_json(timeout=5))["type"] == "status"  # no second feature_flags reply
    await ws.close()


def previews_wf(size):
    return {"1": {"class_type": "Constant", "inputs": {"value": 1.0}},
            "2": {"class_type": "Previewer", "inputs": {"x": ["1", 0], "steps": 2, "size": size}},
            "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}


async def frames_until_done(ws, pid):
    texts, frames = [], []

    async def read():
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.BINARY:
                frames.append(msg.data)
                continue
            texts.append(msg.json())
            if texts[-1]["type"] == "executing" and texts[-1]["data"]["node"] is None:
                return

    await asyncio.wait_for(read(), 10)
    return texts, frames


async def test_preview_frames(make_client):
    client = await make_client(preview=True)
    plain, _ = await connect(client, "plain")
    rich, _ = await connect(client, "rich")
    await rich.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    assert (await rich.receive_json())["type"] == "feature_flags"
    pid = (await queue(client, previews_wf(1024), client_id="plain"))["prompt_id"]
    texts, frames = await frames_until_done(plain, pid)
    assert len(frames) == 2
    for i, frame in enumerate(frames):
        event, kind = struct.unpack(">II", frame[:8])
        assert (event, kind) == (1, 1)
        img = Image.open(io.BytesIO(frame[8:]))
        assert img.format == "JPEG" and img.size == (512, 256)  # fits 512 × 512, aspect kept
        assert abs(img.getpixel((10, 10))[0] - 200) < 8 and abs(img.getpixel((10, 10))[1] - 30 * i) < 8
    # progress comes before its preview, in order
    pid2 = (await queue(client, previews_wf(64), client_id="rich"))["prompt_id"]
    _, frames = await frames_until_done(rich, pid2)
    event, length = struct.unpack(">II", frames[0][:8])
    meta = json.loads(frames[0][8:8 + length])
    assert event == 4 and meta == {"node_id": "2", "prompt_id": pid2, "display_node_id": "2",
                                   "parent_node_id": None, "real_node_id": "2", "image_type": "image/jpeg"}
    assert Image.open(io.BytesIO(frames[0][8 + length:])).size == (64, 32)
    await plain.close()
    await rich.close()


async def test_previews_off_by_default(client):
    ws, _ = await connect(client, "p")
    pid = (await queue(client, previews_wf(64), client_id="p"))["prompt_id"]
    texts, frames = await frames_until_done(ws, pid)
    assert frames == [] and [m["type"] for m in texts].count("progress") == 2
    await ws.close()


@pytest.mark.parametrize("sid", ["x" * 300, "bad\nid"])
async def test_odd_client_ids_refused(client, sid):
    resp = await client.get("/ws", params={"clientId": sid})
    assert resp.status == 400


async def test_a_socket_that_does_not_read_is_dropped_not_buffered():
    from server.hub import OUTBOX_MAX, Hub

    class StuckSocket:
        """A peer that never reads: every send waits forever."""

        def __init__(self):
            self.closed_with = None

        async def send_str(self, data):
            await asyncio.Event().wait()

        async def close(self, code=None, message=b""):
            self.closed_with = code

    hub = Hub(1000)
    stuck, fine = StuckSocket(), StuckSocket()
    client = hub.connect(stuck, "stuck", 0)
    sender = asyncio.get_running_loop().create_task(hub.sender(client))
    hub.connect(fine, "fine", 0)
    for i in range(OUTBOX_MAX + 10):
        hub.send("stuck", f"message {i}")
    await asyncio.sleep(0)
    assert "stuck" not in hub.clients and "fine" in hub.clients  # only the one that overflowed went
    assert stuck.closed_with == 1008 and client.outbox.qsize() <= 1  # its backlog was released
    sender.cancel()
