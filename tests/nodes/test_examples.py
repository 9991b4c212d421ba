"""The "Writing a node" guide (nodes/examples/README.md) runs as written; the example plugin loads and works."""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import full_registry
from nodes.paths import DataPaths

EXAMPLES = Path(__file__).resolve().parents[2] / "nodes" / "examples"


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


def test_guide_code_blocks_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks((EXAMPLES / "README.md").read_text())
    assert len(blocks) == 5
    module = type(sys)("writing_a_node_guide")  # a real module: @node resolves annotations through it
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for index, block in enumerate(blocks):
        try:
            exec(compile(block, f"README.md block {index + 1}", "exec"), namespace)
        except Exception as exc:  # name the block that broke
            raise AssertionError(f"guide block {index + 1} failed: {type(exc).__name__}: {exc}") from exc


@pytest.fixture
def example(tmp_path):
    env = Environment(DataPaths(tmp_path / "data"))
    shutil.copytree(EXAMPLES / "example_plugin", env.paths.custom_nodes / "example_plugin")
    registry, plugins = full_registry(env.paths, entry_points=False)
    assert plugins.get("example_plugin").status == "loaded", plugins.to_json()
    return env, registry


def run(env, registry, wf):
    report = validate(parse_workflow(wf), registry, env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p", prompt=wf)
    assert result.success, result.error
    return result


def test_example_blend_modes_match_their_formulas(example):
    env, registry = example
    torch.manual_seed(0)
    a, b = torch.rand(1, 4, 4, 3), torch.rand(1, 4, 4, 3)
    spec = registry.get("BlendImages")
    expected = {"normal": b, "multiply": a * b, "screen": 1 - (1 - a) * (1 - b)}
    for mode, mixed in expected.items():
        node = spec.cls.model_construct(image_a=a, image_b=b, factor=0.25, mode=mode)
        assert torch.allclose(node.run(None), a + 0.25 * (mixed - a), atol=1e-7)
    with pytest.raises(ValueError, match="differ in size"):
        spec.cls.model_construct(image_a=a, image_b=b[:, :2], factor=0.5, mode="normal").run(None)


def test_example_list_nodes_and_comfy_style_node(example):
    env, registry = example
    wf = {"1": {"class_type": "SplitLines", "inputs": {"text": "red\n\n green \nblue"}},
          "2": {"class_type": "JoinLines", "inputs": {"lines": ["1", 0], "separator": " | "}},
          "3": {"class_type": "ShowText", "inputs": {"text": ["2", 0]}}}
    result = run(env, registry, wf)
    assert result.values["1"].outputs == [["red", "green", "blue"]]
    assert result.outputs["3"] == {"text": ["red | green | blue"]}
    import numpy as np
    from PIL import Image

    pixels = np.array([[[0, 100, 200], [255, 30, 60]]], dtype=np.uint8)
    Image.fromarray(pixels).save(env.paths.input / "p.png")
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "p.png"}},
          "2": {"class_type": "ExamplePosterize", "inputs": {"image": ["1", 0], "levels": 2}},
          "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}
    out = run(env, registry, wf).values["2"].outputs[0][0]
    assert out.tolist() == [[[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]]]
    info = registry.object_info(env)["ExamplePosterize"]
    assert info["display_name"] == "Posterize (ComfyUI style)"
    assert info["python_module"] == "custom_nodes.example_plugin"
