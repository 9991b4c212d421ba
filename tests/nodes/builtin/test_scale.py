"""Latent and image resizing nodes: sizes, aspect rules, centre crop, methods (checked against independent
computations: repetition, average pooling, PIL), and a hires-fix run on the tiny checkpoint."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image as PILImage

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.builtin.scale import ImageScale, ImageScaleBy, LatentUpscale, LatentUpscaleBy, bislerp
from nodes.paths import DataPaths
from nodes.sd import tiny


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("scale")))
    tiny.write_single_file("sd1", env.paths.models("checkpoints") / "sd1.safetensors")
    return env


def latent(h, w, batch=1):
    return {"samples": torch.randn(batch, 4, h, w, generator=torch.Generator().manual_seed(h * w)),
            "batch_index": list(range(batch))}


def test_object_info_matches_comfyui(env):
    info = builtin_registry().object_info(env)
    up = info["LatentUpscale"]
    assert up["input_order"]["required"] == ["samples", "upscale_method", "width", "height", "crop"]
    assert up["input"]["required"]["upscale_method"][0] == ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
    assert up["input"]["required"]["width"][1] == {"default": 512, "min": 0, "max": 16384, "step": 8}
    assert up["input"]["required"]["crop"][0] == ["disabled", "center"]
    by = info["LatentUpscaleBy"]["input"]["required"]["scale_by"][1]
    assert by == {"default": 1.5, "min": 0.01, "max": 8.0, "step": 0.01}
    image = info["ImageScale"]
    assert image["input"]["required"]["upscale_method"][0] == ["nearest-exact", "bilinear", "area", "bicubic",
                                                               "lanczos"]  # ComfyUI's images have no bislerp
    assert image["category"] == "image/upscaling" and info["ImageScaleBy"]["output"] == ["IMAGE"]


def test_latent_sizes_and_aspect():
    src = latent(4, 6)  # 32×48 pixels
    out = LatentUpscale(samples=src, upscale_method="nearest-exact", width=96, height=64, crop="disabled").run(None)
    assert out["samples"].shape == (1, 4, 8, 12) and out["batch_index"] == [0]
    assert torch.equal(out["samples"], src["samples"].repeat_interleave(2, -1).repeat_interleave(2, -2))
    keep = LatentUpscale(samples=src, upscale_method="bilinear", width=0, height=64, crop="disabled").run(None)
    assert keep["samples"].shape == (1, 4, 8, 12)  # width = round(48 · 64 / 32) = 96
    tiny_target = LatentUpscale(samples=src, upscale_method="bilinear", width=8, height=0, crop="disabled").run(None)
    assert tiny_target["samples"].shape == (1, 4, 8, 8)  # both at least 64 pixels
    same = LatentUpscale(samples=src, upscale_method="bilinear", width=0, height=0, crop="disabled").run(None)
    assert same is src


def test_latent_scale_by_and_area():
    src = latent(4, 6)
    assert LatentUpscaleBy(samples=src, upscale_method="bicubic", scale_by=1.5).run(None)["samples"].shape == (
        1, 4, 6, 9)
    half = LatentUpscaleBy(samples=src, upscale_method="area", scale_by=0.5).run(None)["samples"]
    assert torch.allclose(half, F.avg_pool2d(src["samples"], 2), atol=1e-6)


def test_centre_crop_cuts_the_longer_side():
    image = torch.arange(8 * 16 * 3, dtype=torch.float32).reshape(1, 8, 16, 3) / 384
    out = ImageScale(image=image, upscale_method="nearest-exact", width=8, height=8, crop="center").run(None)
    assert torch.equal(out, image[:, :, 4:12])  # aspect 2 → 1: round((16 − 8) / 2) = 4 columns off each side
    tall = image.transpose(1, 2)  # 16 high, 8 wide
    out = ImageScale(image=tall, upscale_method="nearest-exact", width=8, height=4, crop="center").run(None)
    assert torch.equal(out, tall[:, 6:10])  # aspect 0.5 → 2: round((16 − 4) / 2) = 6 rows off each side


def test_image_methods():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(2, 10, 14, 3), dtype=np.uint8)
    image = torch.from_numpy(pixels.astype(np.float32) / 255.0)
    doubled = ImageScaleBy(image=image, upscale_method="nearest-exact", scale_by=2.0).run(None)
    assert torch.equal(doubled, image.repeat_interleave(2, 1).repeat_interleave(2, 2))
    lanczos = ImageScale(image=image, upscale_method="lanczos", width=21, height=0, crop="disabled").run(None)
    for k in range(2):
        want = np.asarray(PILImage.fromarray(pixels[k]).resize((21, 15), PILImage.Resampling.LANCZOS))
        assert torch.equal(lanczos[k], torch.from_numpy(want.astype(np.float32) / 255.0))


def slerp_by_hand(a, b, r):
    """One pair of channel vectors (float64), from the formula: slerp of the unit vectors, lerped length."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    ua = a / na if na > 0 else np.zeros_like(a)
    ub = b / nb if nb > 0 else np.zeros_like(b)
    dot = float(ua @ ub)
    if dot > 1 - 1e-5:
        return a
    if dot < 1e-5 - 1:
        return (1 - r) * a + r * b
    omega = math.acos(dot)
    unit = (math.sin((1 - r) * omega) * ua + math.sin(r * omega) * ub) / math.sin(omega)
    return unit * ((1 - r) * na + r * nb)


def slerp_axis_by_hand(x, size, axis):
    """x [C, H, W]: each new cell k along `axis` from bilinear's source position, clamped to the edges."""
    old = x.shape[axis]
    out_shape = list(x.shape)
    out_shape[axis] = size
    out = np.zeros(out_shape)
    for k in range(size):
        p = min(max((k + 0.5) * old / size - 0.5, 0.0), old - 1)
        lo = math.floor(p)
        hi = min(lo + 1, old - 1)
        for m in range(x.shape[3 - axis]):  # the other spatial axis
            if axis == 2:
                out[:, m, k] = slerp_by_hand(x[:, m, lo], x[:, m, hi], p - lo)
            else:
                out[:, k, m] = slerp_by_hand(x[:, lo, m], x[:, hi, m], p - lo)
    return out


def bislerp_by_hand(x, width, height):
    return slerp_axis_by_hand(slerp_axis_by_hand(x, width, 2), height, 1)


@pytest.mark.parametrize("h, w, new_h, new_w", [(3, 5, 7, 4), (4, 4, 8, 8), (6, 5, 3, 2), (1, 3, 2, 6)])
def test_bislerp_matches_the_formula(h, w, new_h, new_w):
    src = latent(h, w, batch=2)["samples"]
    got = bislerp(src, new_w, new_h)
    assert got.shape == (2, 4, new_h, new_w) and got.dtype == torch.float32
    for b in range(2):
        want = bislerp_by_hand(src[b].double().numpy(), new_w, new_h)
        assert np.allclose(got[b].numpy(), want, rtol=0, atol=2e-5)


def test_bislerp_edge_cases():
    a = torch.tensor([3.0, 4.0, 0.0, 0.0])  # |a| = 5
    # 2 → 4 cells: positions 0 (clamped), 0.25, 0.75, 1 (clamped); cell 1 has ratio 0.25 between a and b
    zero_mid = math.sin(0.75 * math.pi / 2) * (a / 5) * 3.75  # b = 0: ω = π/2, length 0.75·5
    for b, want_mid in ((torch.zeros(4), zero_mid), (2 * a, a), (-a, 0.5 * a)):  # parallel: a; opposite: lerp
        out = bislerp(torch.stack([a, b], dim=-1).reshape(1, 4, 1, 2), 4, 1)[0, :, 0]
        assert torch.allclose(out[:, 1], want_mid, atol=1e-5)
        assert torch.allclose(out[:, 0], a, atol=1e-6) and torch.allclose(out[:, 3], b, atol=1e-6)
    half = bislerp(latent(2, 2)["samples"].half(), 3, 3)
    assert half.dtype == torch.float16 and half.shape == (1, 4, 3, 3)


def test_bislerp_through_the_executor(env):
    wf = {"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
          "2": {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["1", 0], "upscale_method": "bislerp",
                                                            "scale_by": 1.5}},
          "3": {"class_type": "LatentUpscale", "inputs": {"samples": ["2", 0], "upscale_method": "bislerp",
                                                          "width": 128, "height": 64, "crop": "center"}},
          "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}}
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p", prompt=wf)
    assert result.success, result.error
    # zeros stay zeros (zero vectors lerp); 8 → 12 cells, then 12×12 cut to 12×6 (aspect 2) and resized to 8×16
    assert torch.equal(result.values["2"].outputs[0][0]["samples"], torch.zeros(1, 4, 12, 12))
    assert torch.equal(result.values["3"].outputs[0][0]["samples"], torch.zeros(1, 4, 8, 16))


def test_hires_fix_on_the_tiny_checkpoint(env):
    def ksampler(latent_link, denoise):
        return {"class_type": "KSampler", "inputs": {
            "model": ["4", 0], "seed": 3, "steps": 3, "cfg": 4.0, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["6", 0], "negative": ["7", 0], "latent_image": latent_link, "denoise": denoise}}

    wf = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.safetensors"}},
          "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
          "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["4", 1]}},
          "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
          "3": ksampler(["5", 0], 1.0),
          "10": {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["3", 0], "upscale_method": "bilinear",
                                                             "scale_by": 2.0}},
          "11": ksampler(["10", 0], 0.5),
          "8": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["4", 2]}},
          "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}}
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p", prompt=wf)
    assert result.success, result.error
    upscaled = result.values["10"].outputs[0][0]["samples"]
    assert upscaled.shape == (1, 4, 8, 8) and result.values["8"].outputs[0][0].shape == (1, 64, 64, 3)
    resampled = result.values["11"].outputs[0][0]["samples"]
    assert (resampled - upscaled).abs().max() > 1e-3  # sampled again from the upscaled latent
