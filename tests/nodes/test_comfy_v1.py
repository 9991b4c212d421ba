"""A ComfyUI-style V1 pack, unchanged, through our registry, validation, executor, cache and server."""
from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import full_registry
from nodes.paths import DataPaths

PACK = Path(__file__).parent / "plugin_packs" / "v1_pack"


@pytest.fixture
def env(tmp_path) -> Environment:
    paths = DataPaths(tmp_path / "data")
    shutil.copytree(PACK, paths.custom_nodes / "v1_pack")
    return Environment(paths)


@pytest.fixture
def loaded(env):
    registry, plugins = full_registry(env.paths, entry_points=False)
    assert plugins.get("v1_pack").status == "loaded", plugins.to_json()
    return registry, plugins


@pytest.fixture
def pack():
    import sys

    return sys.modules["custom_nodes_x_v1_pack"]


def check(registry, env, wf):
    return validate(parse_workflow(wf), registry, env)


def run(registry, env, wf, executor=None, extra_data=None):
    report = check(registry, env, wf)
    assert report.clean, report.to_comfy()
    return (executor or Executor(env)).execute(report, prompt_id="p", prompt=wf, extra_data=extra_data)


def test_object_info_is_input_types_verbatim(loaded, env, pack):
    registry, _ = loaded
    info = registry.object_info(env)
    brightness = info["V1Brightness"]
    assert brightness == {
        "input": {"required": {"image": ["IMAGE"],
                               "amount": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 4.0, "step": 0.01}]},
                  "optional": {"mask": ["MASK"]}},
        "input_order": {"required": ["image", "amount"], "optional": ["mask"]},
        "output": ["IMAGE"], "output_is_list": [False], "output_name": ["IMAGE"], "name": "V1Brightness",
        "display_name": "Brightness (V1)", "description": "Multiply pixel values.",
        "python_module": "custom_nodes.v1_pack", "category": "v1test/image", "output_node": False}
    words = info["V1MakeWords"]
    assert words["input"]["required"]["repeat"] == [[1, 2, 4], {"default": 1}]
    assert (words["output"], words["output_name"], words["output_is_list"]) == (
        ["STRING", "INT"], ["words", "count"], [True, False])
    join = info["V1JoinWords"]
    assert join["input"]["hidden"] == {"prompt": "PROMPT", "extra": "EXTRA_PNGINFO", "node": "UNIQUE_ID"}
    assert join["input_order"]["hidden"] == ["prompt", "extra", "node"] and join["output_node"] is True
    assert info["V1Counter"]["input"]["required"]["anything"] == ["*"]
    assert json.loads(json.dumps(info)) == info


def test_list_output_maps_over_a_node_and_list_input_receives_everything(loaded, env):
    registry, _ = loaded
    wf = {"1": {"class_type": "V1MakeWords", "inputs": {"text": "red green blue", "repeat": 2}},
          "2": {"class_type": "V1Shout", "inputs": {"word": ["1", 0], "suffix": "!"}},
          "3": {"class_type": "V1JoinWords", "inputs": {"words": ["2", 0], "sep": "-"}},
          "4": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}}}
    result = run(registry, env, wf, extra_data={"extra_pnginfo": {"workflow": {}}})
    assert result.values["1"].outputs == [["red", "green", "blue"] * 2, [6]]
    assert result.values["2"].outputs == [["RED!", "GREEN!", "BLUE!"] * 2]
    assert result.outputs["3"] == {"text": ["RED!-GREEN!-BLUE!-RED!-GREEN!-BLUE!",
                                            "node=3 nodes_in_prompt=4 extra=['workflow']"]}
    assert result.outputs["4"] == {"text": ["6"]}


def test_numeric_combo_checked_as_listed(loaded, env):
    registry, _ = loaded
    wf = {"1": {"class_type": "V1MakeWords", "inputs": {"text": "x", "repeat": 3}},
          "2": {"class_type": "V1JoinWords", "inputs": {"words": ["1", 0], "sep": ","}}}
    (error,) = check(registry, env, wf).errors["1"]
    assert error.type == "value_not_in_list" and error.details == "repeat: '3' not in ['1', '2', '4']"


def test_is_changed_nan_always_reruns_and_instances_persist_per_node(loaded, env):
    registry, _ = loaded
    wf = {"1": {"class_type": "PrimitiveInt", "inputs": {"value": 5}},
          "2": {"class_type": "V1Counter", "inputs": {"anything": ["1", 0]}},
          "3": {"class_type": "V1Counter", "inputs": {"anything": "constant"}}}
    executor = Executor(env)
    first = run(registry, env, wf, executor)
    second = run(registry, env, wf, executor)
    assert first.outputs == {"2": {"calls": [1]}, "3": {"calls": [1]}}
    assert second.outputs == {"2": {"calls": [2]}, "3": {"calls": [2]}}
    assert second.cached == ["1"]


def test_is_changed_value_keys_the_cache(loaded, env, pack):
    registry, _ = loaded
    note = env.paths.input / "note.txt"
    note.write_text("one")
    wf = {"1": {"class_type": "V1FileStamp", "inputs": {"path": str(note)}},
          "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    executor = Executor(env)
    pack.CALLS.clear()
    assert run(registry, env, wf, executor).outputs["2"] == {"text": ["one"]}
    assert run(registry, env, wf, executor).executed == []
    note.write_text("two")
    assert run(registry, env, wf, executor).outputs["2"] == {"text": ["two"]}
    assert pack.CALLS == [("FileStamp", "note.txt"), ("FileStamp", "note.txt")]


def test_validate_inputs_takes_over_range_and_link_type_checks(loaded, env):
    registry, _ = loaded

    def wf(value, source):
        return {"1": {"class_type": "PrimitiveString", "inputs": {"value": "2.5"}},
                "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
                "3": {"class_type": "V1Limit", "inputs": {"value": value, "source": source}},
                "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}}

    # 50 is above the declared max of 10, but the node checks its own range; a STRING link is its choice too
    assert run(registry, env, wf(50, ["1", 0])).outputs["4"] == {"text": ["52"]}
    report = check(registry, env, wf(150, ["2", 0]))
    assert [(e.type, e.details, e.extra_info.get("input_name")) for e in report.errors["3"]] == [
        ("custom_validation_failed", "value - value 150 is over 100", "value")]
    report = check(registry, env, wf(5, ["2", 0]))
    assert [e.details for e in report.errors["3"]] == ["value - cannot read LATENT"]
    report = check(registry, env, wf("many", ["1", 0]))
    assert [e.type for e in report.errors["3"]] == ["invalid_input_type"]  # coercion still applies


def test_image_node_and_async_function(loaded, env):
    registry, _ = loaded
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    PILImage.fromarray(pixels).save(env.paths.input / "in.png")
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
          "2": {"class_type": "V1Brightness", "inputs": {"image": ["1", 0], "amount": 1.5}},
          "3": {"class_type": "V1MeanColor", "inputs": {"image": ["2", 0]}},
          "4": {"class_type": "V1AsyncDouble", "inputs": {"x": 21}},
          "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}}}
    result = run(registry, env, wf)
    expected = torch.clamp(torch.from_numpy(pixels.astype(np.float32) / 255.0)[None] * 1.5, 0, 1)
    assert torch.equal(result.values["2"].outputs[0][0], expected)
    assert result.outputs["3"] == {"text": [f"{float(expected.mean()):.4f}"]}
    assert result.outputs["5"] == {"text": ["42"]}


async def test_v1_pack_through_the_server(loaded, env, aiohttp_client):
    from server.app import create_app
    from server.config import ServerConfig

    registry, _ = loaded
    client = await aiohttp_client(create_app(ServerConfig(data_dir=env.paths.root), registry))
    info = await (await client.get("/object_info/V1MakeWords")).json()
    assert info["V1MakeWords"]["input"]["required"]["repeat"] == [[1, 2, 4], {"default": 1}]
    prompt = {"1": {"class_type": "V1MakeWords", "inputs": {"text": "a b", "repeat": 1}},
              "2": {"class_type": "V1Shout", "inputs": {"word": ["1", 0], "suffix": "?"}},
              "3": {"class_type": "V1JoinWords", "inputs": {"words": ["2", 0], "sep": "+"}},
              "4": {"class_type": "V1Counter", "inputs": {"anything": ["3", 0]}}}
    outputs = []
    for _ in range(2):
        response = await client.post("/prompt", json={"prompt": prompt, "client_id": "t"})
        assert response.status == 200, await response.text()
        outputs.append(await _history(client, (await response.json())["prompt_id"]))
    assert outputs[0]["3"] == {"text": ["A?+B?", "node=3 nodes_in_prompt=4 extra=[]"]}
    assert outputs[0]["4"] == {"calls": [1]}
    assert outputs[1]["4"] == {"calls": [2]}  # NaN IS_CHANGED: re-run; the instance kept its state
    assert outputs[1]["3"] == outputs[0]["3"]  # cached UI re-published
    bad = dict(prompt, **{"1": {"class_type": "V1MakeWords", "inputs": {"text": "a", "repeat": 5}}})
    response = await client.post("/prompt", json={"prompt": bad})
    body = await response.json()
    assert response.status == 400 and body["node_errors"]["1"]["errors"][0]["type"] == "value_not_in_list"


async def _history(client, prompt_id):
    for _ in range(200):
        entry = await (await client.get(f"/history/{prompt_id}")).json()
        if prompt_id in entry:
            assert entry[prompt_id]["status"]["status_str"] == "success", entry
            return entry[prompt_id]["outputs"]
        await asyncio.sleep(0.05)
    raise AssertionError("prompt did not finish")
