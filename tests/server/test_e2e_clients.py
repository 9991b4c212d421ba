"""Third-party ComfyUI client libraries from PyPI, unchanged, against a real server on 127.0.0.1.

Each client queues an API-format workflow over HTTP, follows it over the websocket and downloads the image through
`/view`: `comfy-api-simplified` (requests + websockets), `pycomfy` (requests + websocket-client) and
`comfyui-utils` (aiohttp). The workflow is a seeded noise image (a test node) saved by the real `SaveImage`, so the
bytes a client gets can be recomputed from the seed that the server stored.
"""
from __future__ import annotations

import asyncio
import io
import json
import urllib.request

import numpy as np
import pytest
from PIL import Image

from nodes.builtin import builtin_registry
from server.app import create_app
from server.config import ServerConfig
from tests.server import server_nodes
from tests.server.conftest import ThreadedServer


def workflow(seed, width=24, height=16, prefix="e2e"):
    return {
        "1": {"class_type": "NoiseImage", "inputs": {"seed": seed, "width": width, "height": height},
              "_meta": {"title": "Noise"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix},
              "_meta": {"title": "Save Image"}},
    }


def expected_pixels(seed, width=24, height=16):
    pixels = server_nodes.noise_pixels(seed, width, height)[0].numpy()
    return np.clip(pixels * 255.0, 0, 255).astype(np.uint8)  # ComfyUI's truncation


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    registry = builtin_registry()
    registry.add_module(server_nodes)
    config = ServerConfig(data_dir=tmp_path_factory.mktemp("e2e") / "data", shutdown_grace=0.5)
    with ThreadedServer(create_app(config, registry)) as running:
        yield running


def seed_of(png: Image.Image) -> int:
    prompt = json.loads(png.text["prompt"])
    return prompt["1"]["inputs"]["seed"]


def test_comfy_api_simplified(server):
    from comfy_api_simplified import ComfyApiWrapper, ComfyWorkflowWrapper

    api = ComfyApiWrapper(server.url)
    images = api.queue_and_wait_images(ComfyWorkflowWrapper(workflow("random")), "Save Image")
    assert len(images) == 1
    name, data = next(iter(images.items()))
    assert name.startswith("e2e_") and name.endswith("_.png")
    png = Image.open(io.BytesIO(data))
    seed = seed_of(png)  # the PNG holds the seed that ran, not "random"
    assert isinstance(seed, int) and 0 <= seed <= 2**50
    assert np.array_equal(np.asarray(png.convert("RGB")), expected_pixels(seed))
    assert api.get_queue() == {"queue_running": [], "queue_pending": []}
    assert "NoiseImage" in api.get_object_info("NoiseImage")
    assert api.get_system_stats()["system"]["comfyui_version"]


def test_pycomfy(server, tmp_path):
    from pycomfy import ComfyAPI

    path = tmp_path / "workflow_api.json"
    path.write_text(json.dumps(workflow(1234, prefix="pycomfy")))
    api = ComfyAPI(f"127.0.0.1:{server.port}")
    try:
        images = api.load_workflow(str(path)).execute()
    finally:
        api.close()
    assert len(images) == 1
    assert seed_of(images[0]) == 1234
    assert np.array_equal(np.asarray(images[0].convert("RGB")), expected_pixels(1234))


def test_comfyui_utils(server):
    from comfyui_utils.comfy import Callbacks, ComfyAPI

    class Collect(Callbacks):
        def __init__(self):
            self.positions, self.progress, self.done = [], [], []

        async def queue_position(self, position):
            self.positions.append(position)

        async def in_progress(self, node_id, progress, total):
            self.progress.append(node_id)

        async def completed(self, outputs, cached):
            self.done.append((outputs, cached))

    async def run(prompt):
        api = ComfyAPI(f"127.0.0.1:{server.port}")
        callbacks = Collect()
        # another prompt holds the worker, so this client sees its queue position, then its run, live
        asyncio.get_running_loop().call_later(0.5, server_nodes.GATE.set)
        await api.submit(prompt, callbacks)
        (outputs, _), = callbacks.done
        fetched = []

        async def keep(data):
            fetched.append(data.read())

        await api.fetch(outputs["images"][0], keep)
        return callbacks, fetched[0]

    blocker = {"1": {"class_type": "Seeded", "inputs": {"seed": 5}},
               "2": {"class_type": "Gate", "inputs": {"x": ["1", 0], "tag": "utils"}},
               "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}
    request = urllib.request.Request(server.url + "/prompt", data=json.dumps({"prompt": blocker}).encode(),
                                     method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    assert server_nodes.GATE_ENTERED.wait(10)
    callbacks, data = asyncio.run(run(workflow(77, prefix="utils")))
    png = Image.open(io.BytesIO(data))
    assert seed_of(png) == 77 and np.array_equal(np.asarray(png.convert("RGB")), expected_pixels(77))
    assert callbacks.positions[0] == 1 and callbacks.done[0][1] is False  # waited behind the blocker, then ran
    assert callbacks.progress == [1, 2]  # it followed `executing` with integer node ids
