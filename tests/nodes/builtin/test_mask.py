"""Mask nodes: channels of input images, conversions, and growing/shrinking against hand-made expectations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.builtin.mask import GrowMask, ImageToMask, InvertMask, MaskToImage, SolidMask, ThresholdMask
from nodes.paths import DataPaths


@pytest.fixture
def env(tmp_path):
    return Environment(DataPaths(tmp_path))


def load_mask(env, name, channel):
    wf = {"1": {"class_type": "LoadImageMask", "inputs": {"image": name, "channel": channel}},
          "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p")
    assert result.success, result.error
    return result.values["1"].outputs[0][0]


def test_load_image_mask_channels(env):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, size=(6, 5, 4), dtype=np.uint8)
    PILImage.fromarray(rgba, "RGBA").save(env.paths.input / "rgba.png")
    PILImage.fromarray(rgba[..., :3], "RGB").save(env.paths.input / "rgb.png")
    alpha = load_mask(env, "rgba.png", "alpha")
    assert alpha.shape == (1, 6, 5)
    assert torch.equal(alpha[0], 1.0 - torch.from_numpy(rgba[..., 3].astype(np.float32) / 255.0))
    green = load_mask(env, "rgba.png", "green")
    assert torch.equal(green[0], torch.from_numpy(rgba[..., 1].astype(np.float32) / 255.0))
    assert not load_mask(env, "rgb.png", "alpha").any()  # no transparency: nothing selected


def test_object_info(env):
    info = builtin_registry().object_info(env)
    load = info["LoadImageMask"]
    assert load["input"]["required"]["channel"][0] == ["alpha", "red", "green", "blue"]
    assert load["input"]["required"]["image"][1].get("image_upload") is True
    grow = info["GrowMask"]["input"]["required"]
    assert grow["expand"][1]["default"] == 0 and grow["expand"][1]["min"] == -16384
    assert grow["tapered_corners"] == ["BOOLEAN", {"default": True}]
    assert info["ImageToMask"]["input"]["required"]["channel"][0] == ["red", "green", "blue", "alpha"]
    assert all(info[n]["category"] == "mask" for n in ("SolidMask", "InvertMask", "ThresholdMask", "MaskToImage"))


def test_conversions():
    image = torch.rand(2, 4, 3, 3)
    mask = ImageToMask(image=image, channel="blue").run(None)
    assert torch.equal(mask, image[..., 2])
    grey = MaskToImage(mask=mask).run(None)
    assert grey.shape == (2, 4, 3, 3) and all(torch.equal(grey[..., c], mask) for c in range(3))
    assert torch.equal(InvertMask(mask=mask).run(None), 1.0 - mask)
    solid = SolidMask(value=0.25, width=3, height=2).run(None)
    assert solid.shape == (1, 2, 3) and (solid == 0.25).all()
    assert ThresholdMask(mask=torch.tensor([[0.2, 0.5, 0.7]]), value=0.5).run(None).tolist() == [[0.0, 0.0, 1.0]]


def test_grow_and_shrink():
    dot = torch.zeros(1, 7, 7)
    dot[0, 3, 3] = 1.0
    plus = GrowMask(mask=dot, expand=1, tapered_corners=True).run(None)[0]
    assert plus.sum() == 5 and plus[2:5, 3].all() and plus[3, 2:5].all() and plus[2, 2] == 0
    square = GrowMask(mask=dot, expand=1, tapered_corners=False).run(None)[0]
    assert square.sum() == 9 and square[2:5, 2:5].all()
    diamond = GrowMask(mask=dot, expand=2, tapered_corners=True).run(None)[0]
    rows, cols = np.nonzero(diamond.numpy())
    assert diamond.sum() == 13 and (abs(rows - 3) + abs(cols - 3)).max() == 2  # |dy| + |dx| ≤ 2
    shrunk = GrowMask(mask=square[None], expand=-1, tapered_corners=True).run(None)[0]
    assert torch.equal(shrunk, dot[0])
    soft = torch.full((1, 3, 3), 0.5)
    soft[0, 1, 1] = 0.9
    assert torch.equal(GrowMask(mask=soft, expand=1, tapered_corners=False).run(None), torch.full((1, 3, 3), 0.9))
    assert torch.equal(GrowMask(mask=dot, expand=0, tapered_corners=True).run(None), dot)


def test_python_modules_as_in_comfyui(env):
    info = builtin_registry().object_info(env)
    assert info["LoadImageMask"]["python_module"] == "nodes"
    for name in ("ImageToMask", "MaskToImage", "InvertMask", "SolidMask", "ThresholdMask", "GrowMask"):
        assert info[name]["python_module"] == "comfy_extras.nodes_mask", name
