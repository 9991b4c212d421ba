"""LatentComposite, LatentBlend and LatentCrop: each against a hand computation on small tensors (explicit loops
over ComfyUI's feather rule, literal slices), their /object_info entries as ComfyUI 0.3.64 reports them, and a
workflow running all three through the executor."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.builtin.latent_tools import LatentBlend, LatentComposite, LatentCrop
from nodes.paths import DataPaths


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return Environment(DataPaths(tmp_path_factory.mktemp("latent_tools")))


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def inputs(entry, section="required"):
    return {name: entry["input"][section][name] for name in entry["input_order"][section]}


def test_object_info_matches_comfyui(env):
    info = builtin_registry().object_info(env)
    step8 = {"default": 0, "min": 0, "max": 16384, "step": 8}
    composite = info["LatentComposite"]
    assert inputs(composite) == {"samples_to": ["LATENT"], "samples_from": ["LATENT"], "x": ["INT", step8],
                                 "y": ["INT", step8], "feather": ["INT", step8]}
    assert (composite["output"], composite["category"], composite["display_name"], composite["python_module"]) == (
        ["LATENT"], "latent", "Latent Composite", "nodes")
    blend = info["LatentBlend"]
    assert inputs(blend) == {"samples1": ["LATENT"], "samples2": ["LATENT"],
                             "blend_factor": ["FLOAT", {"default": 0.5, "min": 0, "max": 1, "step": 0.01}]}
    assert (blend["output"], blend["category"], blend["display_name"]) == (["LATENT"], "_for_testing",
                                                                           "Latent Blend")
    crop = info["LatentCrop"]
    size = {"default": 512, "min": 64, "max": 16384, "step": 8}
    assert inputs(crop) == {"samples": ["LATENT"], "width": ["INT", size], "height": ["INT", size],
                            "x": ["INT", step8], "y": ["INT", step8]}
    assert (crop["output"], crop["category"], crop["display_name"]) == (["LATENT"], "latent/transform",
                                                                        "Crop Latent")


def feather_mask_by_hand(h, w, f, top, bottom, left, right):
    """ComfyUI's loop: for t < f, multiply row/column t from each inner edge by (t + 1)/f."""
    m = np.ones((h, w))
    for t in range(min(f, h)):
        if top:
            m[t, :] *= (t + 1) / f
        if bottom:
            m[h - 1 - t, :] *= (t + 1) / f
    for t in range(min(f, w)):
        if left:
            m[:, t] *= (t + 1) / f
        if right:
            m[:, w - 1 - t] *= (t + 1) / f
    return m


def test_latent_composite_plain_paste_cuts_at_the_edges():
    to = {"samples": rand(2, 4, 6, 8), "noise_mask": torch.ones(1, 1, 48, 64), "batch_index": [4, 5]}
    source = {"samples": rand(1, 4, 4, 4, seed=1)}
    kept = to["samples"].clone()
    out = LatentComposite(samples_to=to, samples_from=source, x=39, y=16, feather=0).run(None)
    assert torch.equal(to["samples"], kept)  # the input is not modified
    assert out["batch_index"] == [4, 5] and out["noise_mask"] is to["noise_mask"]
    want = kept.clone()
    want[:, :, 2:6, 4:8] = source["samples"][0]  # x 39 → cell 4, y 16 → cell 2; 4 columns fit
    assert torch.equal(out["samples"], want)
    outside = LatentComposite(samples_to=to, samples_from=source, x=64, y=0, feather=0).run(None)
    assert torch.equal(outside["samples"], kept)


@pytest.mark.parametrize("x, y", [(0, 0), (16, 8), (32, 16), (8, 40)])
def test_latent_composite_feather_matches_comfyuis_ramp(x, y):
    to, source = rand(1, 4, 8, 10), rand(1, 4, 5, 6, seed=1)
    out = LatentComposite(samples_to={"samples": to}, samples_from={"samples": source}, x=x, y=y,
                          feather=24).run(None)["samples"]
    left, top = x // 8, y // 8
    h, w = min(5, 8 - top), min(6, 10 - left)
    m = feather_mask_by_hand(h, w, 3, top != 0, top + h < 8, left != 0, left + w < 10)
    want = to.double().numpy().copy()
    region = want[:, :, top:top + h, left:left + w]
    want[:, :, top:top + h, left:left + w] = m * source[:, :, :h, :w].double().numpy() + (1 - m) * region
    assert np.allclose(out.numpy(), want, rtol=0, atol=1e-6)


def test_latent_composite_literal_ramp_and_batch_rules():
    to, source = torch.zeros(1, 1, 6, 6), torch.ones(1, 1, 4, 4)
    out = LatentComposite(samples_to={"samples": to}, samples_from={"samples": source}, x=8, y=8,
                          feather=16).run(None)["samples"][0, 0]
    # every edge of the block is inside: ramps 1/2, 1, 1, 1/2 on both axes, multiplied
    assert out[1:5, 1:5].tolist() == [[0.25, 0.5, 0.5, 0.25], [0.5, 1, 1, 0.5], [0.5, 1, 1, 0.5],
                                      [0.25, 0.5, 0.5, 0.25]]
    assert out[0].tolist() == [0.0] * 6 and out[:, 5].tolist() == [0.0] * 6
    with pytest.raises(ValueError, match="batch of 2"):
        LatentComposite(samples_to={"samples": torch.zeros(3, 4, 4, 4)},
                        samples_from={"samples": torch.zeros(2, 4, 2, 2)}, x=0, y=0, feather=0).run(None)


def test_latent_blend():
    first, second = rand(2, 4, 3, 5), rand(2, 4, 3, 5, seed=1)
    out = LatentBlend(samples1={"samples": first, "batch_index": [7, 8]}, samples2={"samples": second},
                      blend_factor=0.25).run(None)
    assert out["batch_index"] == [7, 8]
    assert torch.allclose(out["samples"], 0.25 * first + 0.75 * second, rtol=0, atol=1e-6)
    # another size: centre-cropped to samples1's aspect, then resized. Columns 2–5 (round((8 − 4)/2) = 2 off
    # each side) are constant per channel, so the result is that constant whatever the interpolation.
    wide = torch.full((1, 4, 4, 8), 9.0)
    wide[..., :2] = -50.0
    wide[..., 6:] = 50.0
    wide[:, 1] = 3.0
    small = torch.zeros(1, 4, 2, 2)
    out = LatentBlend(samples1={"samples": small}, samples2={"samples": wide}, blend_factor=0.5).run(None)
    want = torch.tensor([4.5, 1.5, 4.5, 4.5]).reshape(1, 4, 1, 1).expand(1, 4, 2, 2)
    assert torch.allclose(out["samples"], want, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="channels"):
        LatentBlend(samples1={"samples": small}, samples2={"samples": torch.zeros(1, 3, 2, 2)},
                    blend_factor=0.5).run(None)


def test_latent_crop():
    grid = torch.arange(12 * 16.0).reshape(1, 1, 12, 16)
    latent = {"samples": grid, "noise_mask": torch.ones(1, 1, 96, 128)}
    out = LatentCrop(samples=latent, width=64, height=72, x=16, y=8).run(None)
    assert torch.equal(out["samples"], grid[:, :, 1:10, 2:10])
    assert out["noise_mask"] is latent["noise_mask"]
    # x and y are pulled back so that 8 cells remain: x 120 → 15 → 16 − 8 = 8; y 200 → 25 → 12 − 8 = 4
    far = LatentCrop(samples=latent, width=128, height=512, x=120, y=200).run(None)
    assert torch.equal(far["samples"], grid[:, :, 4:12, 8:16])


def test_composite_blend_and_crop_through_the_executor(env):
    base, patch = rand(1, 4, 8, 8), rand(1, 4, 8, 8, seed=1)
    save_file({"latent_tensor": base, "latent_format_version_0": torch.tensor([])},
              str(env.paths.input / "base.latent"))
    save_file({"latent_tensor": patch, "latent_format_version_0": torch.tensor([])},
              str(env.paths.input / "patch.latent"))
    wf = {"1": {"class_type": "LoadLatent", "inputs": {"latent": "base.latent"}},
          "2": {"class_type": "LoadLatent", "inputs": {"latent": "patch.latent"}},
          "3": {"class_type": "LatentCrop", "inputs": {"samples": ["2", 0], "width": 64, "height": 64, "x": 0,
                                                        "y": 0}},
          "4": {"class_type": "LatentComposite", "inputs": {"samples_to": ["1", 0], "samples_from": ["3", 0],
                                                             "x": 32, "y": 32, "feather": 0}},
          "5": {"class_type": "LatentBlend", "inputs": {"samples1": ["4", 0], "samples2": ["1", 0],
                                                         "blend_factor": 0.5}},
          "6": {"class_type": "PreviewAny", "inputs": {"source": ["5", 0]}}}
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p", prompt=wf)
    assert result.success, result.error
    out = result.values["5"].outputs[0][0]["samples"]
    want = base.clone()
    want[:, :, 4:8, 4:8] = 0.5 * patch[:, :, :4, :4] + 0.5 * base[:, :, 4:8, 4:8]
    assert torch.allclose(out, want, rtol=0, atol=1e-6)
    bad = {**wf, "4": {**wf["4"], "inputs": {**wf["4"]["inputs"], "feather": -8}}}
    errors = validate(parse_workflow(bad), builtin_registry(), env).to_comfy()["node_errors"]
    assert errors["4"]["errors"][0]["type"] == "value_smaller_than_min"
