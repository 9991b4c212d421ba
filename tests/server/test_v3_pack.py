"""A V3 pack over HTTP: its nodes in /object_info, and a prompt whose nodes expand and read lazy inputs, run by the
server's worker (reference §1.3, §1.8, §4.7, §4.10)."""
from __future__ import annotations

import shutil
from io import BytesIO
from pathlib import Path

from PIL import Image

from nodes.paths import DataPaths
from server.app import create_app
from server.config import ServerConfig
from tests.server.conftest import queue, wait_history

PACKS = Path(__file__).parents[1] / "nodes" / "plugin_packs"


async def test_v3_nodes_expand_and_skip_lazy_branches_in_a_served_prompt(aiohttp_client, data_dir):
    paths = DataPaths(data_dir)
    shutil.copytree(PACKS / "v3_pack", paths.custom_nodes / "v3_pack")
    client = await aiohttp_client(create_app(ServerConfig(data_dir=paths.root, shutdown_grace=0.2)))
    info = await (await client.get("/object_info/V3RepeatInvert")).json()
    assert info["V3RepeatInvert"]["python_module"] == "custom_nodes.v3_pack"
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0xFFFFFF}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "3": {"class_type": "V3LazySwitch", "inputs": {"use_first": False, "first": ["1", 0], "second": ["2", 0]}},
        "4": {"class_type": "V3RepeatInvert", "inputs": {"image": ["3", 0], "times": 1}},
        "5": {"class_type": "V3AsyncArithmetic", "inputs": {"a": 2, "b": 3.0, "mode": "add"}},
        "6": {"class_type": "V3PreviewNegative", "inputs": {"images": ["4", 0]}},
    }
    prompt_id = (await queue(client, prompt))["prompt_id"]
    entry = await wait_history(client, prompt_id)
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert entry["outputs"]["5"] == {"text": ["5: 5.0"]}
    (preview,) = entry["outputs"]["6"]["images"]  # black → inverted once by expansion → white → negative: black
    image = await client.get("/view", params=preview)
    assert image.status == 200  # the second (black) branch was chosen: a first (white) one would preview white
    assert set(Image.open(BytesIO(await image.read())).convert("RGB").get_flattened_data()) == {(0, 0, 0)}
