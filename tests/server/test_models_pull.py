"""POST /models/pull: a download in the background with model_pull progress on the websocket; who may start one."""
from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from tests.http_files import FileServer
from tests.server.conftest import chain, queue, wait_history

DATA = os.urandom(200_000)


@pytest.fixture
def files():
    with FileServer() as srv:
        srv.files["model.safetensors"] = DATA
        yield srv


async def pull_messages(ws, timeout: float = 20.0) -> list[dict]:
    """model_pull messages until the first that is not `downloading`."""
    found = []

    async def read():
        while True:
            message = await ws.receive_json()
            if message["type"] == "model_pull":
                found.append(message["data"])
                if message["data"]["status"] != "downloading":
                    return found

    return await asyncio.wait_for(read(), timeout)


async def test_pull_reports_progress_and_the_model_appears(client, files, data_dir):
    ws = await client.ws_connect("/ws")
    await ws.receive_json()  # status
    resp = await client.post("/api/models/pull", json={"source": f"{files.url}/files/model.safetensors",
                                                       "kind": "loras", "name": "style.safetensors"})
    assert resp.status == 202
    pull_id = (await resp.json())["pull_id"]
    messages = await pull_messages(ws)
    assert messages[0]["status"] == "downloading" and messages[0]["pull_id"] == pull_id
    assert all(m["max"] == len(DATA) for m in messages)
    done = messages[-1]
    assert done == {"pull_id": pull_id, "kind": "loras", "name": "style.safetensors", "status": "done",
                    "value": len(DATA), "max": len(DATA), "sha256": hashlib.sha256(DATA).hexdigest(), "error": None}
    assert await (await client.get(f"/models/pull/{pull_id}")).json() == done
    assert await (await client.get("/models/loras")).json() == ["style.safetensors"]
    assert (data_dir / "models" / "loras" / "style.safetensors").read_bytes() == DATA
    await ws.close()


async def test_a_failed_pull_is_reported_and_leaves_nothing(client, files, data_dir):
    ws = await client.ws_connect("/ws")
    await ws.receive_json()
    resp = await client.post("/models/pull", json={"source": f"{files.url}/files/model.safetensors",
                                                   "sha256": "0" * 64})
    assert resp.status == 202
    done = (await pull_messages(ws))[-1]
    assert done["status"] == "error" and "is not the expected" in done["error"]
    assert sorted(os.listdir(data_dir / "models" / "checkpoints")) == []
    # the queue kept going meanwhile, and goes on after
    body = await queue(client, chain())
    assert (await wait_history(client, body["prompt_id"]))["status"]["completed"]
    await ws.close()


async def test_a_download_does_not_hold_up_the_queue(client, files):
    files.slow["model.safetensors"] = 0.2     # about 2.5 s for the whole file
    resp = await client.post("/models/pull", json={"source": f"{files.url}/files/model.safetensors"})
    pull_id = (await resp.json())["pull_id"]
    body = await queue(client, chain())
    assert (await wait_history(client, body["prompt_id"]))["status"]["completed"]
    assert (await (await client.get(f"/models/pull/{pull_id}")).json())["status"] == "downloading"


async def test_bad_requests_are_refused_before_anything_starts(client, files):
    for body, code in (({"source": "http://example.com/m.safetensors"}, "invalid_source"),
                       ({"source": f"{files.url}/files/model.exe"}, "invalid_source"),
                       ({"source": f"{files.url}/files/model.safetensors", "kind": "nowhere"}, "invalid_request"),
                       ({}, "invalid_request")):
        resp = await client.post("/models/pull", json=body)
        assert resp.status == 400 and (await resp.json())["error"]["type"] == code, body
    assert (await client.get("/models/pull/nope")).status == 404
    assert files.requests == []


async def test_beyond_loopback_pulls_need_the_flag_and_a_token(make_client, files):
    open_server = await make_client(listen="0.0.0.0", no_auth=True, allow_model_pull=True)
    resp = await open_server.post("/models/pull", json={"source": f"{files.url}/files/model.safetensors"})
    assert resp.status == 403 and (await resp.json())["error"]["type"] == "model_pull_disabled"
    tokened = await make_client(listen="0.0.0.0", auth_token="s3cret")
    resp = await tokened.post("/models/pull", json={"source": f"{files.url}/files/model.safetensors"},
                              headers={"Authorization": "Bearer s3cret"})
    assert resp.status == 403
    allowed = await make_client(listen="0.0.0.0", auth_token="s3cret", allow_model_pull=True)
    resp = await allowed.post("/models/pull", json={"source": f"{files.url}/files/model.safetensors"},
                              headers={"Authorization": "Bearer s3cret"})
    assert resp.status == 202
    assert (await allowed.post("/models/pull", json={"source": "x"})).status == 401
