"""Inpainting nodes through the real executor on tiny real-layout checkpoints (reference §6.8, §6.13).

Masks come from LoadImage (MASK = 1 − alpha of an RGBA PNG), so every value here travels the way a user's does.
Expected values are transcribed from §6.8 directly in numpy (the dilation as an explicit window sum), not through
the module's own helpers.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths
from nodes.sd import tiny
from nodes.sd.ksampler import sample


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("inpaint")))
    for arch in ("sd1", "sd1-inpaint"):
        tiny.write_single_file(arch, env.paths.models("checkpoints") / f"{arch}.safetensors")
    return env


def write_rgba(path, height, width, transparent):
    """A colour-gradient RGBA PNG; `transparent` (a numpy index) gets alpha 0, i.e. MASK 1 (regenerate)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(height, width, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    pixels[(*transparent, 3)] = 0
    PILImage.fromarray(pixels, "RGBA").save(path)
    return pixels[..., :3].astype(np.float32) / 255.0, (pixels[..., 3] == 0).astype(np.float32)


def run(env, wf):
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p", prompt=wf)
    assert result.success, result.error
    return result.values


def sampler_nodes(ckpt, latent_link, sampler="euler", steps=4):
    return {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red door", "clip": ["4", 1]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
            "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": 7, "steps": steps, "cfg": 5.0,
                                                        "sampler_name": sampler, "scheduler": "normal",
                                                        "positive": ["6", 0], "negative": ["7", 0],
                                                        "latent_image": latent_link, "denoise": 1.0}},
            **preview_nodes(["3", 0])}


def preview_nodes(latent_link):
    return {"8": {"class_type": "VAEDecode", "inputs": {"samples": latent_link, "vae": ["4", 2]}},
            "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}}


def expected_grown(mask, k):
    """§6.8 by hand: round(clamp(k×k window sum of round(mask), padding ceil((k−1)/2))), cut to mask's size."""
    m = np.round(mask)
    if k == 0:
        return m
    pad = math.ceil((k - 1) / 2)
    padded = np.pad(m, pad)
    out = np.zeros_like(m)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            out[i, j] = padded[i:i + k, j:j + k].sum()
    return np.round(np.clip(out, 0.0, 1.0))


def test_object_info_matches_comfyui(env):
    info = builtin_registry().object_info(env)
    noise = info["SetLatentNoiseMask"]
    assert noise["input_order"]["required"] == ["samples", "mask"]
    assert noise["input"]["required"] == {"samples": ["LATENT"], "mask": ["MASK"]}
    assert (noise["output"], noise["category"]) == (["LATENT"], "latent/inpaint")
    enc = info["VAEEncodeForInpaint"]
    assert enc["input_order"]["required"] == ["pixels", "vae", "mask", "grow_mask_by"]
    assert enc["input"]["required"]["grow_mask_by"] == ["INT", {"default": 6, "min": 0, "max": 64, "step": 1}]
    assert (enc["output"], enc["category"]) == (["LATENT"], "latent/inpaint")


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral"])
def test_set_latent_noise_mask_keeps_the_unmasked_half(env, sampler):
    # Left half transparent → mask 1 (regenerate); the right half (mask 0) must come back as it went in.
    write_rgba(env.paths.input / "half.png", 32, 32, (slice(None), slice(0, 16)))
    wf = {**sampler_nodes("sd1.safetensors", ["12", 0], sampler),
          "10": {"class_type": "LoadImage", "inputs": {"image": "half.png"}},
          "11": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}},
          "12": {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["11", 0], "mask": ["10", 1]}}}
    values = run(env, wf)
    latent_in = values["11"].outputs[0][0]["samples"]
    masked = values["12"].outputs[0][0]
    assert masked["noise_mask"].shape == (1, 1, 32, 32) and torch.equal(masked["samples"], latent_in)
    out = values["3"].outputs[0][0]
    assert torch.equal(out["noise_mask"], masked["noise_mask"])  # the mask rides along, as in ComfyUI
    samples = out["samples"]
    # Latent 4×4: columns 0–1 regenerate, 2–3 keep. The sampler pins `denoised` there to latent·0.18215; the
    # final x is that value only up to float rounding (euler: x + d·(0 − σ) ≈ denoised; both: the ÷ 0.18215).
    assert torch.allclose(samples[..., 2:], latent_in[..., 2:], rtol=0, atol=1e-5)
    if sampler == "euler_ancestral":  # its last step returns denoised itself: exact up to the scale round trip
        assert torch.equal(samples[..., 2:], (latent_in * 0.18215)[..., 2:] / 0.18215)
    assert (samples[..., :2] - latent_in[..., :2]).abs().max() > 0.1


@pytest.mark.parametrize("grow", [0, 1, 3, 6])
def test_vae_encode_for_inpaint_greys_crops_and_grows(env, grow):
    # 20×27 is cropped to 16×24 at offset (2, 1); one transparent pixel at (9, 12) lands at (7, 11).
    rgb, mask = write_rgba(env.paths.input / "dot.png", 20, 27, (np.array([9]), np.array([12])))
    wf = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.safetensors"}},
          "10": {"class_type": "LoadImage", "inputs": {"image": "dot.png"}},
          "12": {"class_type": "VAEEncodeForInpaint",
                 "inputs": {"pixels": ["10", 0], "vae": ["4", 2], "mask": ["10", 1], "grow_mask_by": grow}},
          **preview_nodes(["12", 0])}
    values = run(env, wf)
    latent = values["12"].outputs[0][0]
    rgb, mask = rgb[2:18, 1:25], mask[2:18, 1:25]
    want_mask = expected_grown(mask, grow)
    assert latent["noise_mask"].shape == (1, 1, 16, 24)
    assert np.array_equal(latent["noise_mask"][0, 0].numpy(), want_mask)
    if grow in (1, 3):  # odd k: a k×k square centred on the pixel
        assert want_mask.sum() == grow * grow and want_mask[7 - grow // 2:8 + grow // 2, 11 - grow // 2:12 + grow // 2].all()
    if grow == 6:  # even k: padding 3, window −3…+2, cut back → rows/columns −2…+3 around the pixel
        assert want_mask.sum() == 36 and want_mask[5:11, 9:15].all()
    greyed = np.where(mask[..., None] == 1.0, 0.5, rgb)
    assert greyed[7, 11].tolist() == [0.5, 0.5, 0.5] and (greyed != rgb).sum() == 3
    vae = values["4"].outputs[2][0]
    assert torch.equal(latent["samples"], vae.encode(torch.from_numpy(greyed)[None]))


def test_set_latent_noise_mask_reshapes_any_mask(env):
    from nodes.builtin.inpaint import SetLatentNoiseMask

    latent = {"samples": torch.zeros(2, 4, 2, 3), "batch_index": [0, 1]}
    for mask in (torch.ones(16, 24), torch.ones(2, 16, 24), torch.ones(2, 1, 16, 24)):
        out = SetLatentNoiseMask(samples=latent, mask=mask).run(None)
        assert out["noise_mask"].shape == (mask.numel() // (16 * 24), 1, 16, 24)
        assert out["batch_index"] == [0, 1] and "noise_mask" not in latent


def test_inpainting_checkpoint_runs_with_vae_encode_for_inpaint(env):
    # Right third transparent → regenerate; sd1-inpaint's UNet takes 9 channels: x, mask, masked-image latent.
    write_rgba(env.paths.input / "third.png", 32, 48, (slice(None), slice(32, 48)))
    wf = {**sampler_nodes("sd1-inpaint.safetensors", ["12", 0]),
          "10": {"class_type": "LoadImage", "inputs": {"image": "third.png"}},
          "12": {"class_type": "VAEEncodeForInpaint",
                 "inputs": {"pixels": ["10", 0], "vae": ["4", 2], "mask": ["10", 1], "grow_mask_by": 6}}}
    values = run(env, wf)
    unet = values["4"].outputs[0][0].unet
    assert unet.config.in_channels == 9
    latent = values["12"].outputs[0][0]
    out = values["3"].outputs[0][0]["samples"]
    assert values["8"].outputs[0][0].shape == (1, 32, 48, 3)
    # Grown by 6 (padding 3) the mask starts at column 30: latent columns 0–2 are wholly kept.
    assert torch.allclose(out[..., :3], latent["samples"][..., :3], rtol=0, atol=1e-5)
    # The KSampler passed the noise mask on (to the mask wrapper and the concat channels): identical to calling
    # the sampler with it, and different from the same sampling without it.
    positive, negative = values["6"].outputs[0][0], values["7"].outputs[0][0]
    common = dict(latent=latent["samples"], seed=7, steps=4, cfg=5.0, sampler_name="euler", scheduler="normal",
                  positive=positive, negative=negative)
    with values["4"].outputs[0][0].manager.use(unet):
        assert torch.equal(out, sample(unet, noise_mask=latent["noise_mask"], **common))
        assert (sample(unet, **common) - out).abs().max() > 1e-3


def test_inpaint_model_conditioning_object_info(env):
    info = builtin_registry().object_info(env)["InpaintModelConditioning"]
    assert info["input_order"]["required"] == ["positive", "negative", "vae", "pixels", "mask", "noise_mask"]
    assert info["input"]["required"]["noise_mask"][0] == "BOOLEAN"
    assert info["input"]["required"]["noise_mask"][1]["default"] is True
    assert info["output"] == ["CONDITIONING", "CONDITIONING", "LATENT"]
    assert info["output_name"] == ["positive", "negative", "latent"]
    assert info["category"] == "conditioning/inpaint"


@pytest.mark.parametrize("noise_mask", [True, False])
def test_inpaint_model_conditioning_feeds_the_concat_channels(env, noise_mask):
    # 20×27 cropped to 16×24 at offset (2, 1); the bottom-right block is transparent → regenerate.
    rgb, mask = write_rgba(env.paths.input / "block.png", 20, 27, (slice(10, 20), slice(14, 27)))
    wf = {**sampler_nodes("sd1-inpaint.safetensors", ["12", 2]),
          "10": {"class_type": "LoadImage", "inputs": {"image": "block.png"}},
          "12": {"class_type": "InpaintModelConditioning",
                 "inputs": {"positive": ["6", 0], "negative": ["7", 0], "vae": ["4", 2], "pixels": ["10", 0],
                            "mask": ["10", 1], "noise_mask": noise_mask}}}
    wf["3"]["inputs"].update(positive=["12", 0], negative=["12", 1])
    values = run(env, wf)
    vae, unet = values["4"].outputs[2][0], values["4"].outputs[0][0].unet
    rgb, mask = torch.from_numpy(rgb[2:18, 1:25]), torch.from_numpy(mask[2:18, 1:25])
    greyed = torch.where(mask[..., None] == 1.0, torch.tensor(0.5), rgb)
    positive, negative, latent = (values["12"].outputs[i][0] for i in range(3))
    assert torch.equal(latent["samples"], vae.encode(rgb[None]))  # the whole image, not the greyed one
    assert ("noise_mask" in latent) is noise_mask
    for made, given in ((positive, values["6"].outputs[0][0]), (negative, values["7"].outputs[0][0])):
        (cond, extras), = made
        assert cond is given[0][0] and extras["pooled_output"] is given[0][1]["pooled_output"]
        assert torch.equal(extras["concat_latent_image"], vae.encode(greyed[None]))
        assert torch.equal(extras["concat_mask"], mask[None, None])
    # the sampler saw exactly these conditionings and mask; the concat channels make a difference
    common = dict(latent=latent["samples"], seed=7, steps=4, cfg=5.0, sampler_name="euler", scheduler="normal",
                  noise_mask=latent.get("noise_mask"))
    out = values["3"].outputs[0][0]["samples"]
    with values["4"].outputs[0][0].manager.use(unet):
        assert torch.equal(out, sample(unet, positive=positive, negative=negative, **common))
        plain = sample(unet, positive=values["6"].outputs[0][0], negative=values["7"].outputs[0][0], **common)
    assert (plain - out).abs().max() > 1e-3
    if noise_mask:  # latent row 0 (pixel rows 0–7) holds no masked pixel: kept
        assert torch.allclose(out[..., :1, :], latent["samples"][..., :1, :], rtol=0, atol=1e-5)
