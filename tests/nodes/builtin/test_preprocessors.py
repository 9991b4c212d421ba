"""Canny: kornia's canny as ComfyUI calls it, in a workflow, and its /object_info entry."""
from __future__ import annotations

import torch
from kornia.filters import canny

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Context, Environment
from nodes.builtin import builtin_registry
from nodes.builtin.preprocessors import Canny
from nodes.paths import DataPaths


def _ctx(tmp_path):
    return Context(node_id="1", prompt_id="p", prompt={}, extra_data={}, env=Environment(DataPaths(tmp_path)))


def _rectangle():
    image = torch.zeros((1, 64, 64, 3))
    image[:, 16:48, 20:44] = 1.0
    return image


def test_canny_matches_kornia(tmp_path):
    image = torch.rand((2, 40, 48, 3), generator=torch.Generator().manual_seed(0))
    out = Canny(image=image, low_threshold=0.2, high_threshold=0.5).run(_ctx(tmp_path))
    _, edges = canny(image.movedim(-1, 1), 0.2, 0.5)
    assert out.shape == (2, 40, 48, 3)
    assert torch.equal(out, edges.repeat(1, 3, 1, 1).movedim(1, -1))


def test_canny_outlines_a_rectangle(tmp_path):
    out = Canny(image=_rectangle()).run(_ctx(tmp_path))[0, :, :, 0]
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert out[:, 32].nonzero().flatten().tolist() in ([15, 47], [16, 47], [15, 48], [16, 48])
    assert out[32, :].nonzero().numel() == 2  # one edge pixel on each vertical side
    assert out[20:44, 24:40].sum() == 0 and out[:8].sum() == 0  # nothing inside or far outside


def test_canny_in_a_workflow_and_object_info(tmp_path):
    env = Environment(DataPaths(tmp_path))
    wf = {"1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 0}},
          "2": {"class_type": "ImagePadForOutpaint", "inputs": {"image": ["1", 0], "left": 16, "top": 0,
                                                                "right": 0, "bottom": 0, "feathering": 0}},
          "3": {"class_type": "Canny", "inputs": {"image": ["2", 0], "low_threshold": 0.1, "high_threshold": 0.3}},
          "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p")
    assert result.success, result.error
    edges = result.values["3"].outputs[0][0]
    assert edges.shape == (1, 32, 48, 3) and edges[0, 16, 14:18, 0].sum() > 0 and edges[0, :, 30:, 0].sum() == 0
    info = builtin_registry().object_info(env)["Canny"]
    assert info["input_order"]["required"] == ["image", "low_threshold", "high_threshold"]
    for name, default in (("low_threshold", 0.4), ("high_threshold", 0.8)):
        assert info["input"]["required"][name] == ["FLOAT", {"default": default, "min": 0.01, "max": 0.99,
                                                             "step": 0.01}]
    assert (info["output"], info["category"], info["display_name"], info["python_module"]) == (
        ["IMAGE"], "image/preprocessors", "Canny", "comfy_extras.nodes_canny")
    bad = validate(parse_workflow({**wf, "3": {**wf["3"], "inputs": {**wf["3"]["inputs"], "low_threshold": 1.5}}}),
                   builtin_registry(), env)
    assert not bad.clean
