"""Fixtures for the server tests: an app on a temporary data folder with the stub nodes, and websocket helpers."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from nodes.registry import Registry
from server.app import create_app
from server.config import ServerConfig
from tests.executor import stub_nodes
from tests.server import server_nodes


def stub_registry() -> Registry:
    reg = Registry()
    reg.add_module(stub_nodes)
    reg.add_module(server_nodes)
    return reg


@pytest.fixture
def registry() -> Registry:
    return stub_registry()


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def reset_nodes():
    stub_nodes.RUNS.clear()
    stub_nodes.SLOW_STARTED.clear()
    server_nodes.GATE.clear()
    server_nodes.GATE_ENTERED.clear()
    server_nodes.CHECK_GATE.clear()
    server_nodes.CHECK_ENTERED.clear()
    yield
    server_nodes.GATE.set()  # never leave an executor thread waiting
    server_nodes.CHECK_GATE.set()


@pytest.fixture
def make_client(aiohttp_client, registry, data_dir):
    """`await make_client(**config)` → a test client of a fresh app on the shared data folder."""

    async def make(registry_: Registry | None = None, **overrides: Any):
        overrides.setdefault("shutdown_grace", 0.2)
        config = ServerConfig(data_dir=data_dir, **overrides)
        return await aiohttp_client(create_app(config, registry_ or registry))

    return make


@pytest.fixture
async def client(make_client):
    return await make_client()


def chain(value: float = 2.0, *, show: str = "3") -> dict[str, Any]:
    """Constant → Scale → Show: three nodes, one output."""
    return {"1": {"class_type": "Constant", "inputs": {"value": value}},
            "2": {"class_type": "Scale", "inputs": {"x": ["1", 0], "factor": 3, "mode": "multiply"}},
            show: {"class_type": "Show", "inputs": {"value": ["2", 0]}}}


def gated(tag: str = "") -> dict[str, Any]:
    """A workflow that runs until the test opens `server_nodes.GATE`."""
    return {"1": {"class_type": "Constant", "inputs": {"value": 1.0}},
            "2": {"class_type": "Gate", "inputs": {"x": ["1", 0], "tag": tag}},
            "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}


async def queue(client, prompt: dict[str, Any], **body: Any) -> dict[str, Any]:
    resp = await client.post("/prompt", json={"prompt": prompt, **body})
    data = await resp.json()
    assert resp.status == 200, data
    return data


async def until_done(ws, prompt_id: str, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Text messages until `executing {node: null}` of `prompt_id` (included)."""
    messages = []

    async def read() -> list[dict[str, Any]]:
        while True:
            msg = await ws.receive()
            assert msg.type == web.WSMsgType.TEXT, msg
            message = msg.json()
            messages.append(message)
            data = message["data"]
            if message["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                return messages

    return await asyncio.wait_for(read(), timeout)


async def wait_history(client, prompt_id: str, timeout: float = 20.0) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        while True:
            entry = await (await client.get(f"/history/{prompt_id}")).json()
            if entry:
                return entry[prompt_id]
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), timeout)


async def wait_for(predicate, timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


