"""V3 nodes (comfy_api.latest) and V1 nodes with lazy inputs and node expansion, through the plugin loader,
validation and the executor; images are checked against torch computations."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import full_registry
from nodes.paths import DataPaths

PACKS = Path(__file__).parent / "plugin_packs"
RED, BLUE = 0xFF0000, 0x0000FF


@pytest.fixture
def env(tmp_path):
    env = Environment(DataPaths(tmp_path / "data"))
    shutil.copytree(PACKS / "v3_pack", env.paths.custom_nodes / "v3_pack")
    shutil.copy(PACKS / "v1_flow.py", env.paths.custom_nodes / "v1_flow.py")
    return env


@pytest.fixture
def registry(env):
    registry, plugins = full_registry(env.paths, entry_points=False)
    assert plugins.get("v3_pack").status == "loaded", plugins.to_json()
    assert plugins.get("v1_flow").status == "loaded", plugins.to_json()
    assert plugins.get("v3_pack").nodes == ["V3LazySwitch", "V3RepeatInvert", "V3AsyncArithmetic",
                                            "V3PreviewNegative", "V3SplitText", "V3JoinText"]
    return registry


def run(registry, env, wf, executor=None):
    report = validate(parse_workflow(wf), registry, env)
    assert report.clean, report.to_comfy()
    return (executor or Executor(env)).execute(report, prompt_id="p", prompt=wf)


def solid(nid_colour: int) -> dict:
    return {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 4, "batch_size": 1, "color": nid_colour}}


def colour(value: int) -> torch.Tensor:
    rgb = torch.tensor([(value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF], dtype=torch.float32) / 255.0
    return rgb.expand(1, 4, 8, 3)


def test_object_info_renders_the_schema(registry, env):
    info = registry.object_info(env)
    switch = info["V3LazySwitch"]
    assert switch["input"] == {"required": {"use_first": ["BOOLEAN", {"default": True}],
                                            "first": ["IMAGE", {"lazy": True}], "second": ["IMAGE", {"lazy": True}]}}
    assert switch["output"] == ["IMAGE"] and switch["output_name"] == ["chosen"]
    assert switch["display_name"] == "Lazy switch" and switch["python_module"] == "custom_nodes.v3_pack"
    arithmetic = info["V3AsyncArithmetic"]
    assert arithmetic["input"] == {
        "required": {"a": ["INT", {"default": 1, "min": 0, "max": 100}],
                     "mode": ["COMBO", {"options": ["add", "multiply"], "default": "add"}]},
        "optional": {"b": ["FLOAT", {"tooltip": "the second operand", "default": 0.5}]},
        "hidden": {"unique_id": ["UNIQUE_ID"], "prompt": ["PROMPT"], "extra_pnginfo": ["EXTRA_PNGINFO"]}}
    assert arithmetic["output_node"] is True and arithmetic["output_tooltips"] == ["the result"]
    assert info["V3RepeatInvert"]["input"]["required"]["image"] == ["IMAGE", {"rawLink": True}]


@pytest.mark.parametrize("switch, lazy_node", [("V3LazySwitch", "V3"), ("V1LazyPick", "V1")])
def test_lazy_inputs_run_only_the_branch_asked_for(registry, env, switch, lazy_node):
    for first in (True, False):
        choice = {"use_first": first} if lazy_node == "V3" else {"index": 0 if first else 1}
        names = ("first", "second") if lazy_node == "V3" else ("a", "b")
        wf = {"1": solid(RED), "2": solid(BLUE),
              "3": {"class_type": switch, "inputs": {**choice, names[0]: ["1", 0], names[1]: ["2", 0]}},
              "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}
        result = run(registry, env, wf)
        assert result.success, result.error
        ran, skipped = ("1", "2") if first else ("2", "1")
        assert ran in result.executed and skipped not in result.executed
        assert torch.equal(result.values["3"].outputs[0][0], colour(RED if first else BLUE))


def test_v3_expansion_with_graph_builder(registry, env):
    for times in (3, 2, 0):
        wf = {"1": solid(0x336699), "2": {"class_type": "V3RepeatInvert", "inputs": {"image": ["1", 0],
                                                                                    "times": times}},
              "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}
        result = run(registry, env, wf)
        assert result.success, result.error
        expected = colour(0x336699) if times % 2 == 0 else 1.0 - colour(0x336699)
        assert torch.allclose(result.values["2"].outputs[0][0], expected)
        added = [nid for nid in result.executed if nid.startswith("2.")]
        assert len(added) == times and all(result.values[n].outputs[0][0].shape == (1, 4, 8, 3) for n in added)


def test_v1_expansion_and_its_id_clash(registry, env):
    wf = {"1": solid(0x204080), "2": {"class_type": "V1InvertTwiceExpanded",
                                      "inputs": {"image": ["1", 0], "node_ids": "prefixed"}},
          "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}
    result = run(registry, env, wf)
    assert result.success, result.error
    assert result.executed == ["1", "2.inv1", "2.inv2", "2", "3"]
    assert torch.allclose(result.values["2"].outputs[0][0], colour(0x204080), atol=1e-6)
    assert result.values["2"].outputs[1] == [2]
    wf["2"]["inputs"]["node_ids"] = "clashing"
    failed = run(registry, env, wf)
    assert failed.status == "error" and failed.error.node_id == "2"
    assert "reuses node id(s) 1, 2" in failed.error.exception_message


def test_async_output_node_with_hidden_values_and_hooks(registry, env):
    wf = {"7": {"class_type": "V3AsyncArithmetic", "inputs": {"a": 4, "b": 2.5, "mode": "multiply"}}}
    executor = Executor(env)
    result = run(registry, env, wf, executor)
    assert result.success, result.error
    assert result.outputs["7"] == {"text": ["7: 10.0"]} and result.values["7"].outputs[0] == [10.0]
    assert run(registry, env, wf, executor).cached == ["7"]  # same fingerprint: cached
    wf["7"]["inputs"]["a"] = 13
    report = validate(parse_workflow(wf), registry, env)
    assert report.errors["7"][0].type == "custom_validation_failed" and "a must not be 13" in report.errors["7"][0].details


def test_ui_preview_image(registry, env):
    wf = {"1": solid(0x102030), "2": {"class_type": "V3PreviewNegative", "inputs": {"images": ["1", 0]}}}
    result = run(registry, env, wf)
    assert result.success, result.error
    (shown,) = result.outputs["2"]["images"]
    assert shown["type"] == "temp"
    pixels = np.asarray(Image.open(env.paths.temp / shown["subfolder"] / shown["filename"]))
    expected = ((1.0 - colour(0x102030)[0].numpy()) * 255).clip(0, 255).astype(np.uint8)
    assert np.array_equal(pixels, expected)


def test_list_outputs_and_list_inputs(registry, env):
    info = registry.object_info(env)
    assert info["V3SplitText"]["output_is_list"] == [True]
    assert info["V3SplitText"]["input"]["required"]["text"] == ["STRING", {"multiline": True}]
    assert info["V3JoinText"]["input"]["required"]["texts"] == ["STRING", {"forceInput": True}]
    wf = {"1": {"class_type": "V3SplitText", "inputs": {"text": "a, b ,c", "separator": ","}},
          "2": {"class_type": "V3JoinText", "inputs": {"texts": ["1", 0], "glue": "+"}}}
    result = run(registry, env, wf)
    assert result.success, result.error
    assert result.values["1"].outputs[0] == ["a", "b", "c"]
    assert result.outputs["2"] == {"text": ["a+b+c"]} and result.values["2"].outputs[0] == ["a+b+c"]
