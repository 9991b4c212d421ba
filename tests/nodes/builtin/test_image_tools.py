"""Image and latent utility nodes: each against an independent hand computation on small tensors (explicit loops,
bilinear weights written out, literal values), their /object_info entries, a SaveLatent → LoadLatent round trip
through the executor, and an outpainting workflow on the tiny checkpoint."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from safetensors import safe_open
from safetensors.torch import save_file

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Context, Environment
from nodes.builtin import builtin_registry
from nodes.builtin.image_tools import (ImageBatch, ImageCompositeMasked, ImageCrop, ImagePadForOutpaint,
                                       ImageScaleToTotalPixels)
from nodes.builtin.latent_tools import LatentCompositeMasked, LatentFlip, LatentRotate, LoadLatent
from nodes.paths import DataPaths, UnsafePathError
from nodes.sd import tiny

# Bilinear (align_corners=False) 2 → 4 upsampling as a matrix: output k samples input (k + 0.5)/2 − 0.5, clamped.
UP_2_TO_4 = np.array([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("image_tools")))
    tiny.write_single_file("sd1", env.paths.models("checkpoints") / "sd1.safetensors")
    return env


def run(env, wf, extra_data=None):
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p", prompt=wf, extra_data=extra_data)
    assert result.success, result.error
    return result


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def write_rgb(path, height, width):
    pixels = np.random.default_rng(1).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    PILImage.fromarray(pixels, "RGB").save(path)
    return pixels.astype(np.float32) / 255.0


def test_object_info_matches_comfyui(env):
    info = builtin_registry().object_info(env)
    pad = info["ImagePadForOutpaint"]
    assert pad["input_order"]["required"] == ["image", "left", "top", "right", "bottom", "feathering"]
    assert pad["input"]["required"]["top"][1] == {"default": 0, "min": 0, "max": 16384, "step": 8}
    assert pad["input"]["required"]["feathering"][1] == {"default": 40, "min": 0, "max": 16384, "step": 1}
    assert (pad["output"], pad["category"], pad["display_name"]) == (["IMAGE", "MASK"], "image",
                                                                      "Pad Image for Outpainting")
    empty = info["EmptyImage"]
    assert empty["input_order"]["required"] == ["width", "height", "batch_size", "color"]
    assert empty["input"]["required"]["color"][1] == {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1,
                                                      "display": "color"}
    assert info["ImageBatch"]["input_order"]["required"] == ["image1", "image2"]
    assert info["ImageInvert"]["display_name"] == "Invert Image"
    for name, kind, step, category in (("ImageCompositeMasked", "IMAGE", 1, "image"),
                                       ("LatentCompositeMasked", "LATENT", 8, "latent")):
        entry = info[name]
        assert entry["input_order"] == {"required": ["destination", "source", "x", "y", "resize_source"],
                                        "optional": ["mask"]}
        assert entry["input"]["required"]["x"][1] == {"default": 0, "min": 0, "max": 16384, "step": step}
        assert entry["input"]["required"]["resize_source"] == ["BOOLEAN", {"default": False}]
        assert entry["input"]["optional"]["mask"] == ["MASK"]
        assert (entry["output"], entry["category"], entry["python_module"]) == ([kind], category,
                                                                                 "comfy_extras.nodes_mask")
    total = info["ImageScaleToTotalPixels"]
    assert total["input"]["required"]["megapixels"][1] == {"default": 1.0, "min": 0.01, "max": 16.0, "step": 0.01}
    assert total["display_name"] == "Scale Image to Total Pixels"
    crop = info["ImageCrop"]
    size = {"default": 512, "min": 1, "max": 16384, "step": 1}
    offset = {"default": 0, "min": 0, "max": 16384, "step": 1}
    assert crop["input"]["required"] == {"image": ["IMAGE"], "width": ["INT", size], "height": ["INT", size],
                                         "x": ["INT", offset], "y": ["INT", offset]}
    assert crop["input_order"]["required"] == ["image", "width", "height", "x", "y"]
    assert (crop["output"], crop["category"], crop["display_name"], crop["python_module"]) == (
        ["IMAGE"], "image/transform", "Image Crop", "comfy_extras.nodes_images")
    assert (total["category"], total["python_module"]) == ("image/upscaling", "comfy_extras.nodes_post_processing")
    save, load = info["SaveLatent"], info["LoadLatent"]
    assert save["input"]["required"]["filename_prefix"] == ["STRING", {"default": "latents/ComfyUI"}]
    assert (save["output_node"], save["output"], save["category"]) == (True, [], "_for_testing")
    assert (load["input_order"]["required"], load["output"], load["category"]) == (["latent"], ["LATENT"],
                                                                                    "_for_testing")
    assert info["LatentFlip"]["input"]["required"]["flip_method"][0] == ["x-axis: vertically",
                                                                         "y-axis: horizontally"]
    assert info["LatentRotate"]["input"]["required"]["rotation"][0] == ["none", "90 degrees", "180 degrees",
                                                                        "270 degrees"]
    assert info["LatentRotate"]["category"] == "latent/transform"


def test_empty_image_invert_and_batch_through_the_executor(env):
    wf = {"1": {"class_type": "EmptyImage", "inputs": {"width": 5, "height": 3, "batch_size": 2, "color": 0x12F080}},
          "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
          "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
          "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}
    values = run(env, wf).values
    solid = values["1"].outputs[0][0]
    assert solid.shape == (2, 3, 5, 3) and solid.dtype == torch.float32
    want = torch.tensor([0x12 / 255, 0xF0 / 255, 0x80 / 255])
    assert torch.equal(solid, want.expand(2, 3, 5, 3))
    inverted = values["2"].outputs[0][0]
    assert torch.equal(inverted, (1.0 - want).expand(2, 3, 5, 3))
    assert torch.equal(values["3"].outputs[0][0], torch.cat([solid, inverted]))


def test_image_crop_through_the_executor(env):
    wf = {"1": {"class_type": "EmptyImage", "inputs": {"width": 6, "height": 5, "batch_size": 2, "color": 0}},
          "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
          "3": {"class_type": "ImageCompositeMasked", "inputs": {"destination": ["1", 0], "source": ["2", 0], "x": 4,
                                                                 "y": 3, "resize_source": False}},
          "4": {"class_type": "ImageCrop", "inputs": {"image": ["3", 0], "width": 3, "height": 2, "x": 3, "y": 2}},
          "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}}}
    cropped = run(env, wf).values["4"].outputs[0][0]
    want = torch.zeros(2, 2, 3, 3)
    want[:, 1:, 1:] = 1.0  # the white block pasted at (4, 3) seen through the window at (3, 2)
    assert torch.equal(cropped, want)


def test_image_crop_cuts_at_the_edges():
    image = rand(1, 5, 6, 3)
    assert torch.equal(ImageCrop(image=image, width=4, height=4, x=4, y=1).run(None), image[:, 1:5, 4:6])
    # x and y past the image are pulled back to its last column and row: a 1×1 result
    assert torch.equal(ImageCrop(image=image, width=4, height=4, x=40, y=9).run(None), image[:, 4:5, 5:6])


def test_image_batch_resizes_the_second_image():
    first = rand(1, 4, 4, 3)
    # 4×6 → 4×4: centre crop to aspect 1 (offset round((6 − 4)/2) = 1), then a same-size bilinear (identity).
    wide = rand(2, 4, 6, 3, seed=1)
    out = ImageBatch(image1=first, image2=wide).run(None)
    assert out.shape == (3, 4, 4, 3)
    assert torch.equal(out[:1], first) and torch.equal(out[1:], wide[:, :, 1:5])
    # 2×2 → 4×4: bilinear, separable weights written out.
    small = rand(1, 2, 2, 3, seed=2)
    out = ImageBatch(image1=first, image2=small).run(None)
    want = np.einsum("ik,jl,kls->ijs", UP_2_TO_4, UP_2_TO_4, small[0].double().numpy())
    assert np.allclose(out[1].numpy(), want, rtol=0, atol=1e-6)


def feather_by_hand(height, width, top, bottom, left, right, f):
    """The outpaint ramp as plain loops over the stated formula."""
    t = np.zeros((height, width), dtype=np.float32)
    if not (f > 0 and 2 * f < height and 2 * f < width):
        return t
    for i in range(height):
        for j in range(width):
            d = min(i if top else height, height - i if bottom else height,
                    j if left else width, width - j if right else width)
            if d < f:
                t[i, j] = ((f - d) / f) ** 2
    return t


@pytest.mark.parametrize("sides", [(8, 0, 0, 8), (0, 8, 16, 0), (8, 8, 8, 8), (0, 0, 0, 0)])
def test_pad_for_outpaint_matches_the_hand_computation(sides):
    left, top, right, bottom = sides
    image = rand(2, 20, 24, 3)
    padded, mask = ImagePadForOutpaint(image=image, left=left, top=top, right=right, bottom=bottom,
                                       feathering=4).run(None)
    size = (20 + top + bottom, 24 + left + right)
    assert padded.shape == (2, *size, 3) and mask.shape == (1, *size)
    inside = (slice(top, top + 20), slice(left, left + 24))
    assert torch.equal(padded[:, inside[0], inside[1]], image)
    border = torch.ones(size, dtype=torch.bool)
    border[inside] = False
    assert (padded[:, border] == 0.5).all() and (mask[0, border] == 1.0).all()
    want = feather_by_hand(20, 24, top, bottom, left, right, 4)
    assert np.array_equal(mask[0, inside[0], inside[1]].numpy(), want)


def test_pad_for_outpaint_literal_ramp():
    _, mask = ImagePadForOutpaint(image=rand(1, 20, 24, 3), left=8, top=0, right=0, bottom=8,
                                  feathering=4).run(None)
    inner = mask[0, :20, 8:]
    # next to the left border: d = j → ((4 − j)/4)²; the bottom edge row is d = 20 − 19 = 1, not 0.
    assert inner[5, :5].tolist() == [1.0, 0.5625, 0.25, 0.0625, 0.0]
    assert inner[12:20, 10].tolist() == [0.0, 0.0, 0.0, 0.0, 0.0, 0.0625, 0.25, 0.5625]
    assert inner[0, 10] == 0.0  # the top was not padded: no ramp there
    # feathering too wide for the image (2f ≥ 20): no ramp at all
    _, wide = ImagePadForOutpaint(image=rand(1, 20, 24, 3), left=8, top=0, right=0, bottom=8,
                                  feathering=10).run(None)
    assert (wide[0, :20, 8:] == 0).all() and (wide[0, :, :8] == 1).all()


def composite_by_hand(dest, src, left, top, weight):
    """dest [H, W, C], src [h, w, C], weight [h, w]: per-pixel loops, cut at the destination's edges."""
    out = dest.copy()
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            if top + i < dest.shape[0] and left + j < dest.shape[1]:
                m = weight[i, j]
                out[top + i, left + j] = m * src[i, j] + (1 - m) * dest[top + i, left + j]
    return out


def test_image_composite_masked():
    dest, src = rand(2, 6, 8, 3), rand(1, 3, 4, 3, seed=1)
    mask = rand(3, 4, seed=2)
    kept = dest.clone()
    out = ImageCompositeMasked(destination=dest, source=src, x=5, y=2, resize_source=False, mask=mask).run(None)
    assert torch.equal(dest, kept)  # the input is not modified
    for b in range(2):  # the one source item is repeated for each destination item; x = 5 runs off the right
        want = composite_by_hand(dest[b].numpy(), src[0].numpy(), 5, 2, mask.numpy())
        assert np.allclose(out[b].numpy(), want, rtol=0, atol=1e-6)
    plain = ImageCompositeMasked(destination=dest, source=src, x=0, y=4, resize_source=False).run(None)
    want = dest.clone()
    want[:, 4:6, 0:4] = src[0, :2]
    assert torch.equal(plain, want)
    # resize_source: a 2×2 source stretched (bilinear) over a 4×4 destination; a 2×2 mask likewise
    small, m2 = rand(1, 2, 2, 3, seed=3), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    dest4 = rand(1, 4, 4, 3, seed=4)
    out = ImageCompositeMasked(destination=dest4, source=small, x=0, y=0, resize_source=True, mask=m2).run(None)
    stretched = np.einsum("ik,jl,kls->ijs", UP_2_TO_4, UP_2_TO_4, small[0].double().numpy())
    weight = UP_2_TO_4 @ m2.double().numpy() @ UP_2_TO_4.T
    want = composite_by_hand(dest4[0].double().numpy(), stretched, 0, 0, weight)
    assert np.allclose(out[0].numpy(), want, rtol=0, atol=1e-6)


def test_latent_composite_masked_works_in_pixels():
    dest = {"samples": rand(1, 4, 4, 4), "noise_mask": torch.ones(1, 1, 32, 32), "batch_index": [3]}
    src = {"samples": rand(1, 4, 2, 2, seed=1)}
    pixels = rand(16, 16, seed=2)  # a pixel mask over the 16×16-pixel source
    out = LatentCompositeMasked(destination=dest, source=src, x=16, y=8, resize_source=False,
                                mask=pixels).run(None)
    assert out["batch_index"] == [3] and out["noise_mask"] is dest["noise_mask"]
    # 16 → 2 bilinear without antialiasing samples input (k + 0.5)·8 − 0.5 = 3.5 and 11.5: 2×2 averages.
    p = pixels.double().numpy()
    weight = np.array([[p[3:5, 3:5].mean(), p[3:5, 11:13].mean()], [p[11:13, 3:5].mean(), p[11:13, 11:13].mean()]])
    want = composite_by_hand(dest["samples"][0].movedim(0, -1).double().numpy(),
                             src["samples"][0].movedim(0, -1).double().numpy(), 2, 1, weight)
    assert np.allclose(out["samples"][0].movedim(0, -1).numpy(), want, rtol=0, atol=1e-6)
    # x, y are floored to latent cells: 23 → 2, 15 → 1
    again = LatentCompositeMasked(destination=dest, source=src, x=23, y=15, resize_source=False,
                                  mask=pixels).run(None)
    assert torch.equal(again["samples"], out["samples"])


def test_scale_to_total_pixels():
    image = rand(1, 64, 64, 3)
    # 0.0625 MP = 65536 px = 256²: ×4 each way; nearest-exact is plain repetition
    out = ImageScaleToTotalPixels(image=image, upscale_method="nearest-exact", megapixels=0.0625).run(None)
    assert torch.equal(out, image.repeat_interleave(4, 1).repeat_interleave(4, 2))
    # 16×32 at 0.01 MP: scale √(10485.76 / 512) = 4.5255 → round(144.82) × round(72.41)
    out = ImageScaleToTotalPixels(image=rand(1, 16, 32, 3), upscale_method="bilinear", megapixels=0.01).run(None)
    assert out.shape == (1, 72, 145, 3)
    assert round(32 * math.sqrt(0.01 * 1024 * 1024 / 512)) == 145
    # the pixel total is truncated first: 10506.5 → 10506 px, √ = 102.499 → 102 (103 without the truncation)
    out = ImageScaleToTotalPixels(image=rand(1, 1, 1, 3), upscale_method="nearest-exact",
                                  megapixels=10506.5 / 1024 ** 2).run(None)
    assert out.shape == (1, 102, 102, 3)


def test_latent_flip_and_rotate():
    grid = torch.arange(6.0).reshape(1, 1, 2, 3)  # [[0, 1, 2], [3, 4, 5]]
    latent = {"samples": grid, "batch_index": [0]}

    def flip(method):
        return LatentFlip(samples=latent, flip_method=method).run(None)["samples"][0, 0].tolist()

    assert flip("x-axis: vertically") == [[3, 4, 5], [0, 1, 2]]
    assert flip("y-axis: horizontally") == [[2, 1, 0], [5, 4, 3]]

    def turn(rotation):
        return LatentRotate(samples=latent, rotation=rotation).run(None)

    assert turn("90 degrees")["samples"][0, 0].tolist() == [[3, 0], [4, 1], [5, 2]]  # clockwise
    assert turn("180 degrees")["samples"][0, 0].tolist() == [[5, 4, 3], [2, 1, 0]]
    assert turn("270 degrees")["samples"][0, 0].tolist() == [[2, 5], [1, 4], [0, 3]]
    assert torch.equal(turn("none")["samples"], grid) and turn("none")["batch_index"] == [0]


def test_save_latent_load_latent_round_trip(env):
    write_rgb(env.paths.input / "photo.png", 32, 24)
    wf = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.safetensors"}},
          "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
          "2": {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": ["4", 2]}},
          "3": {"class_type": "SaveLatent", "inputs": {"samples": ["2", 0], "filename_prefix": "latents/ComfyUI"}}}
    result = run(env, wf, extra_data={"extra_pnginfo": {"workflow": {"nodes": []}}})
    assert result.outputs["3"]["latents"] == [{"filename": "ComfyUI_00001_.latent", "subfolder": "latents",
                                               "type": "output"}]
    encoded = result.values["2"].outputs[0][0]["samples"]
    saved = env.paths.output / "latents" / "ComfyUI_00001_.latent"
    with safe_open(str(saved), "pt") as f:
        assert set(f.keys()) == {"latent_tensor", "latent_format_version_0"}
        assert f.get_tensor("latent_format_version_0").numel() == 0
        meta = f.metadata()
    assert json.loads(meta["prompt"]) == wf and json.loads(meta["workflow"]) == {"nodes": []}
    assert json.loads(meta["latentloom"])["latent"] == {"node": "3"}
    (env.paths.input / "kept.latent").write_bytes(saved.read_bytes())
    load = {"1": {"class_type": "LoadLatent", "inputs": {"latent": "kept.latent"}},
            "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "latents/ComfyUI"}}}
    again = run(env, load)
    loaded = again.values["1"].outputs[0][0]["samples"]
    assert loaded.dtype == torch.float32 and torch.equal(loaded, encoded)
    assert again.outputs["2"]["latents"][0]["filename"] == "ComfyUI_00002_.latent"


def test_load_latent_old_format_fingerprint_and_folder(env):
    samples = rand(1, 4, 2, 2)
    save_file({"latent_tensor": samples}, str(env.paths.input / "old.latent"))
    out = LoadLatent(latent="old.latent")
    ctx = Context(node_id="1", prompt_id="p", prompt={}, extra_data={}, env=env)
    assert torch.equal(out.run(ctx)["samples"], samples * (1.0 / 0.18215))  # old files held scaled latents
    before = LoadLatent.fingerprint({"latent": "old.latent"}, env)
    save_file({"latent_tensor": samples + 1}, str(env.paths.input / "old.latent"))
    assert LoadLatent.fingerprint({"latent": "old.latent"}, env) != before
    with pytest.raises(UnsafePathError):
        LoadLatent(latent="../output/latents/ComfyUI_00001_.latent").run(ctx)
    wf = {"1": {"class_type": "LoadLatent", "inputs": {"latent": "../secret.latent"}},
          "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0]}}}
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.node_errors()["1"]["errors"][0]["type"] == "value_not_in_list"


def test_outpaint_workflow_on_the_tiny_checkpoint(env):
    rgb = write_rgb(env.paths.input / "scene.png", 32, 32)
    wf = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.safetensors"}},
          "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a wide valley", "clip": ["4", 1]}},
          "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
          "10": {"class_type": "LoadImage", "inputs": {"image": "scene.png"}},
          "11": {"class_type": "ImagePadForOutpaint",
                 "inputs": {"image": ["10", 0], "left": 8, "top": 0, "right": 8, "bottom": 8, "feathering": 4}},
          "12": {"class_type": "VAEEncodeForInpaint",
                 "inputs": {"pixels": ["11", 0], "vae": ["4", 2], "mask": ["11", 1], "grow_mask_by": 6}},
          "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": 3, "steps": 3, "cfg": 5.0,
                                                      "sampler_name": "euler", "scheduler": "normal",
                                                      "positive": ["6", 0], "negative": ["7", 0],
                                                      "latent_image": ["12", 0], "denoise": 1.0}},
          "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
          "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}}
    values = run(env, wf).values
    padded = values["11"].outputs[0][0]
    assert padded.shape == (1, 40, 48, 3) and np.array_equal(padded[0, :32, 8:40].numpy(), rgb)
    latent = values["12"].outputs[0][0]
    assert latent["samples"].shape == (1, 4, 5, 6) and latent["noise_mask"].shape == (1, 1, 40, 48)
    assert values["8"].outputs[0][0].shape == (1, 40, 48, 3)
    # The ramp reaches image columns 8–11 and 37–39 and rows 29–31; grown by 6 (window −3…+2) the mask is still
    # 0 on pixels rows 0–23, columns 16–31, i.e. latent rows 0–2, columns 2–3: kept by the sampler.
    assert (latent["noise_mask"][0, 0, :24, 16:32] == 0).all()
    out = values["3"].outputs[0][0]["samples"]
    assert torch.allclose(out[..., :3, 2:4], latent["samples"][..., :3, 2:4], rtol=0, atol=1e-5)
    assert (out[..., 4:, :] - latent["samples"][..., 4:, :]).abs().max() > 0.1  # the new border was sampled
