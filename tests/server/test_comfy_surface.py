"""A ComfyUI-style pack using PromptServer, folder_paths and comfy.utils, loaded by the app factory from the data
folder's custom_nodes/ and driven over HTTP and the websocket (reference §2.2, §4.8, §4.9, §5.8)."""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from nodes.paths import DataPaths
from server.app import create_app
from server.config import ServerConfig
from tests.server.conftest import queue, wait_history

PACK = Path(__file__).parents[1] / "nodes" / "plugin_packs" / "surface_pack"
CLASH = '''
from aiohttp import web
from server import PromptServer

routes = PromptServer.instance.routes


@routes.get("/object_info")
async def steal(request):
    return web.json_response({"stolen": True})


@routes.get("/clash/ok")
async def ok(request):
    return web.json_response({"ok": True})


@routes.get("/clash/broken")
async def broken(request):
    raise RuntimeError("a bug in the pack")


NODE_CLASS_MAPPINGS = {}
'''


@pytest.fixture
def paths(data_dir) -> DataPaths:
    paths = DataPaths(data_dir)
    shutil.copytree(PACK, paths.custom_nodes / "surface_pack")
    (paths.custom_nodes / "clash.py").write_text(CLASH)
    (paths.models("checkpoints") / "tiny.safetensors").write_bytes(b"0123456789")
    (paths.root / "models" / "secret.safetensors").write_bytes(b"secret")
    (paths.root / "models" / "surface").mkdir()
    for name in ("a.txt", "b.bin", "c.png"):
        (paths.root / "models" / "surface" / name).write_bytes(b"x")
    return paths


@pytest.fixture
async def pack_client(aiohttp_client, paths):
    app = create_app(ServerConfig(data_dir=paths.root, shutdown_grace=0.2))
    return await aiohttp_client(app)


async def get_json(client, url):
    resp = await client.get(url)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_pack_routes_at_both_paths_see_the_data_folder(pack_client, paths):
    plugins = {p["name"]: p["status"] for p in await get_json(pack_client, "/plugins")}
    assert plugins == {"clash": "loaded", "surface_pack": "loaded"}
    listing = await get_json(pack_client, "/surface_pack/files")
    assert listing == {"files": ["tiny.safetensors"], "full_path": None,
                       "folders": [str(paths.models("checkpoints"))]}
    assert await get_json(pack_client, "/api/surface_pack/files") == listing
    assert (await get_json(pack_client, "/api/surface_pack/files?kind=surface"))["files"] == ["a.txt", "b.bin"]
    found = await get_json(pack_client, "/surface_pack/files?name=tiny.safetensors")
    assert found["full_path"] == str(paths.models("checkpoints") / "tiny.safetensors")
    for name in ("../secret.safetensors", "..%2Fsecret.safetensors", "%2Fetc%2Fpasswd"):
        assert (await get_json(pack_client, f"/surface_pack/files?name={name}"))["full_path"] is None
    # a pack route never replaces ours; its other routes still work; its bug is a 500, not a crash
    assert "SurfaceWaitForUser" in await get_json(pack_client, "/object_info")
    assert await get_json(pack_client, "/api/clash/ok") == {"ok": True}
    broken = await pack_client.get("/clash/broken")
    assert broken.status == 500 and (await broken.json())["error"]["type"] == "internal_error"


async def read_until_done(ws, prompt_id, on_message=None):
    """Text messages until `executing {node: null}` of `prompt_id`; `on_message` may answer each one."""
    messages = []

    async def read():
        while True:
            message = await ws.receive_json()
            messages.append(message)
            if on_message is not None:
                await on_message(message)
            data = message["data"]
            if message["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                return messages

    return await asyncio.wait_for(read(), 30)


async def test_progress_custom_messages_and_client_id(pack_client):
    mine = await pack_client.ws_connect("/ws?clientId=mine")
    other = await pack_client.ws_connect("/ws?clientId=other")
    for ws in (mine, other):
        assert (await ws.receive_json(timeout=5))["type"] == "status"

    async def answer(message):  # the user clicks "continue" each time the node waits
        if message["type"] == "surface_pack.waiting":
            assert (await pack_client.post("/api/surface_pack/continue")).status == 200

    wf = {"1": {"class_type": "SurfaceWaitForUser", "inputs": {"steps": 2, "width": 64}}}
    pid = (await queue(pack_client, wf, client_id="mine"))["prompt_id"]
    messages = await read_until_done(mine, pid, answer)
    kinds = [m["type"] for m in messages if m["type"] not in ("progress_state", "status")]
    assert kinds == ["execution_start", "execution_cached", "executing", "surface_pack.waiting", "progress",
                     "surface_pack.waiting", "progress", "surface_pack.done", "executed", "execution_success",
                     "executing"]
    assert [m["data"] for m in messages if m["type"] == "surface_pack.waiting"] == [
        {"node": "1", "step": 0}, {"node": "1", "step": 1}]
    assert [m["data"] for m in messages if m["type"] == "progress"] == [
        {"value": i, "max": 2, "prompt_id": pid, "node": "1"} for i in (1, 2)]
    done = {"type": "surface_pack.done", "data": {"node": "1", "steps": 2, "max": 16384}}
    assert done in messages
    assert any(m["type"] == "progress_state" and m["data"]["nodes"]["1"]["value"] == 2 for m in messages)
    # the other socket gets the broadcast message, not the ones sent to the prompt's client
    seen = []
    while not seen or seen[-1]["type"] != "surface_pack.done":
        seen.append(await other.receive_json(timeout=10))
    assert seen[-1] == done and all(m["type"] == "status" for m in seen[:-1])
    await mine.close()
    await other.close()


async def test_interrupt_stops_the_progress_loop(pack_client):
    ws = await pack_client.ws_connect("/ws?clientId=me")

    async def interrupt(message):  # instead of answering, the user presses "cancel"
        if message["type"] == "surface_pack.waiting":
            assert (await pack_client.post("/interrupt")).status == 200

    wf = {"1": {"class_type": "SurfaceWaitForUser", "inputs": {"steps": 5, "width": 64}}}
    pid = (await queue(pack_client, wf, client_id="me"))["prompt_id"]
    messages = await read_until_done(ws, pid, interrupt)
    assert [m["data"]["step"] for m in messages if m["type"] == "surface_pack.waiting"] == [0]
    assert {"type": "surface_pack.cancelled", "data": {"node": "1", "step": 0}} in messages
    assert not [m for m in messages if m["type"] == "progress"]
    stopped = next(m["data"] for m in messages if m["type"] == "execution_interrupted")
    assert (stopped["node_id"], stopped["node_type"]) == ("1", "SurfaceWaitForUser")
    assert (await wait_history(pack_client, pid))["status"]["status_str"] == "error"
    await ws.close()


async def test_on_prompt_handler_and_saved_file_numbering(pack_client, paths):
    saved = []
    for label in ("v$PACK_VERSION", "again $PACK_VERSION"):
        wf = {"1": {"class_type": "SurfaceCheckpointReport",
                    "inputs": {"ckpt_name": "tiny.safetensors", "label": label, "filename_prefix": "surface/report"}}}
        pid = (await queue(pack_client, wf))["prompt_id"]
        entry = await wait_history(pack_client, pid)
        assert entry["status"]["status_str"] == "success", entry
        assert entry["prompt"][2]["1"]["inputs"]["label"] == label.replace("$PACK_VERSION", "0.2.0")
        saved += entry["outputs"]["1"]["files"]
    assert saved == [{"filename": f"report_0000{i}_.txt", "subfolder": "surface", "type": "output"} for i in (1, 2)]
    text = (paths.output / "surface" / "report_00001_.txt").read_text()
    assert text.startswith("v0.2.0: tiny.safetensors 10 bytes on ")
