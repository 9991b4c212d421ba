"""Third-party ComfyUI client libraries from PyPI, unchanged, against a real server on 127.0.0.1.

Each client queues `workflows/txt2img.json` (the real Stable Diffusion nodes on the tiny random-weight SD1.x
demo checkpoint) over HTTP, follows it over the websocket and downloads SaveImage's PNG through `/view`:
`comfy-api-simplified` (requests + websockets), `pycomfy` (requests + websocket-client) and `comfyui-utils`
(aiohttp). Each client sets the seed its own way; the PNG must carry the seed the server stored, and its pixels
must equal a headless run of that stored prompt by a separate executor (its own data folder and cache).
"""
from __future__ import annotations

import asyncio
import copy
import io
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths
from server.app import create_app
from server.background import BackgroundServer
from server.config import ServerConfig
from tests.server import server_nodes

TXT2IMG = Path(__file__).resolve().parents[2] / "workflows" / "txt2img.json"
SD_NODES = ("CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode", "SaveImage")


def txt2img() -> dict:
    return json.loads(TXT2IMG.read_text())


def write_demo_checkpoint(data_dir: Path) -> None:
    from nodes.sd.tiny import write_single_file

    target = data_dir / "models" / "checkpoints" / txt2img()["4"]["inputs"]["ckpt_name"]
    target.parent.mkdir(parents=True, exist_ok=True)
    write_single_file("sd1", target, seed=0)


@pytest.fixture(scope="module")
def registry():
    reg = builtin_registry()
    missing = [name for name in SD_NODES if name not in reg]
    if missing or not TXT2IMG.is_file():
        pytest.skip(f"the txt2img workflow or its nodes are missing: {missing}")
    reg.add_module(server_nodes)  # only for the blocker prompt of the comfyui-utils test
    return reg


@pytest.fixture(scope="module")
def server(tmp_path_factory, registry):
    data = tmp_path_factory.mktemp("e2e") / "data"
    write_demo_checkpoint(data)
    config = ServerConfig(data_dir=data, shutdown_grace=0.5)
    with BackgroundServer(create_app(config, registry)) as running:
        yield running


@pytest.fixture(scope="module")
def headless(tmp_path_factory, registry):
    """Run a prompt without the server: the PNG pixels SaveImage writes for it."""
    data = tmp_path_factory.mktemp("headless") / "data"
    write_demo_checkpoint(data)
    env = Environment(DataPaths(data))
    executor = Executor(env)

    def run(prompt: dict) -> np.ndarray:
        report = validate(parse_workflow(prompt), registry, env)
        result = executor.execute(report, prompt_id="reference", prompt=prompt)
        assert result.success, result.error
        (image,) = result.outputs["9"]["images"]
        return np.asarray(Image.open(env.paths.output / image["subfolder"] / image["filename"]).convert("RGB"))

    return run


def check(png: Image.Image, headless, seed: int | None = None) -> int:
    """The PNG holds the prompt that ran (seed resolved) and the pixels a headless run of it gives."""
    stored = json.loads(png.text["prompt"])
    ran = stored["3"]["inputs"]["seed"]
    assert isinstance(ran, int) and (seed is None or ran == seed)
    expected = copy.deepcopy(txt2img())
    expected["3"]["inputs"]["seed"] = ran
    assert {k: v["inputs"] for k, v in stored.items()} == {k: v["inputs"] for k, v in expected.items()}
    pixels = np.asarray(png.convert("RGB"))
    assert pixels.shape == (64, 64, 3) and pixels.std() > 0
    assert np.array_equal(pixels, headless(stored))
    return ran


def test_comfy_api_simplified(server, headless):
    from comfy_api_simplified import ComfyApiWrapper, ComfyWorkflowWrapper

    api = ComfyApiWrapper(server.url)
    wf = ComfyWorkflowWrapper(txt2img())
    wf.set_node_param("KSampler", "seed", "random")  # resolved by the server when queued
    images = api.queue_and_wait_images(wf, "Save Image")
    assert len(images) == 1
    name, data = next(iter(images.items()))
    assert name.startswith("txt2img_") and name.endswith("_.png")
    seed = check(Image.open(io.BytesIO(data)), headless)
    assert 0 <= seed <= 2**50
    assert api.get_queue() == {"queue_running": [], "queue_pending": []}
    assert "KSampler" in api.get_object_info("KSampler")
    assert api.get_system_stats()["system"]["comfyui_version"]


def test_pycomfy(server, headless, tmp_path):
    from pycomfy import ComfyAPI

    path = tmp_path / "workflow_api.json"
    path.write_text(json.dumps(txt2img()))
    api = ComfyAPI(f"127.0.0.1:{server.port}")
    try:
        images = api.load_workflow(str(path)).execute(seed=1234)  # pycomfy sets every KSampler's seed
    finally:
        api.close()
    assert len(images) == 1
    check(images[0], headless, seed=1234)


def test_comfyui_utils(server, headless):
    from comfyui_utils.comfy import Callbacks, ComfyAPI

    class Collect(Callbacks):
        def __init__(self):
            self.positions, self.progress, self.done = [], [], []

        async def queue_position(self, position):
            self.positions.append(position)

        async def in_progress(self, node_id, progress, total):
            self.progress.append((node_id, progress, total))

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
    prompt = txt2img()
    prompt["3"]["inputs"]["seed"] = 77
    callbacks, data = asyncio.run(run(prompt))
    check(Image.open(io.BytesIO(data)), headless, seed=77)
    assert callbacks.positions[0] == 1 and callbacks.done[0][1] is False  # waited behind the blocker, then ran
    steps = prompt["3"]["inputs"]["steps"]
    sampler = [(p, t) for node, p, t in callbacks.progress if node == 3 and t]
    assert sampler == [(i, steps) for i in range(1, steps + 1)]  # KSampler's step progress, live
