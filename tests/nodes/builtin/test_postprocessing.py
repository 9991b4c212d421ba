"""ImageBlur, ImageSharpen and ImageQuantize against independent references: scipy's `correlate` (mode "mirror" is
torch's reflection padding) with the Gaussian kernel written out in float64 from ComfyUI's formula, PIL's own
quantisation, and the Bayer matrix built by its bit-interleaving formula; their /object_info entries as ComfyUI
0.3.64 reports them; and a workflow running all three."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from scipy import ndimage

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.builtin.postprocessing import ImageBlur, ImageQuantize, ImageSharpen, bayer_matrix
from nodes.paths import DataPaths


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return Environment(DataPaths(tmp_path_factory.mktemp("postprocessing")))


def rand_image(batch, height, width, seed=0):
    return torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(seed))


def kernel_by_hand(radius, sigma):
    """exp(−(x² + y²)/(2σ²)) over an evenly spaced −1…1 grid of 2r + 1 points each way, normalised."""
    n = 2 * radius + 1
    k = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            x, y = -1 + 2 * i / (n - 1), -1 + 2 * j / (n - 1)
            k[i, j] = math.exp(-(x * x + y * y) / (2 * sigma * sigma))
    return k / k.sum()


def filter_by_scipy(image, kernel):
    out = np.empty(image.shape)
    for b in range(image.shape[0]):
        for c in range(image.shape[-1]):
            out[b, :, :, c] = ndimage.correlate(image[b, :, :, c].double().numpy(), kernel, mode="mirror")
    return out


def test_object_info_matches_comfyui(env):
    info = builtin_registry().object_info(env)

    def inputs(name):
        entry = info[name]
        assert (entry["category"], entry["python_module"], entry["output"]) == (
            "image/postprocessing", "comfy_extras.nodes_post_processing", ["IMAGE"])
        return {key: entry["input"]["required"][key] for key in entry["input_order"]["required"]}

    assert inputs("ImageBlur") == {"image": ["IMAGE"],
                                   "blur_radius": ["INT", {"default": 1, "min": 1, "max": 31, "step": 1}],
                                   "sigma": ["FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}]}
    assert inputs("ImageSharpen") == {
        "image": ["IMAGE"], "sharpen_radius": ["INT", {"default": 1, "min": 1, "max": 31, "step": 1}],
        "sigma": ["FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.01}],
        "alpha": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 5.0, "step": 0.01}]}
    assert inputs("ImageQuantize") == {
        "image": ["IMAGE"], "colors": ["INT", {"default": 256, "min": 1, "max": 256, "step": 1}],
        "dither": [["none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16"]]}
    assert [info[n]["display_name"] for n in ("ImageBlur", "ImageSharpen", "ImageQuantize")] == [
        "Image Blur", "Image Sharpen", "Image Quantize"]


@pytest.mark.parametrize("radius, sigma", [(1, 1.0), (2, 0.5), (3, 2.5)])
def test_blur_matches_scipy(radius, sigma):
    image = rand_image(2, 9, 11)
    out = ImageBlur(image=image, blur_radius=radius, sigma=sigma).run(None)
    assert out.shape == image.shape and out.dtype == torch.float32
    want = filter_by_scipy(image, kernel_by_hand(radius, sigma))
    assert np.allclose(out.numpy(), want, rtol=0, atol=1e-6)


def test_blur_literal_and_radius_limit():
    # radius 1, σ = 1: corner weight e^(−1), edge e^(−1/2), centre 1, before normalising
    k = kernel_by_hand(1, 1.0)
    total = 1 + 4 * math.exp(-0.5) + 4 * math.exp(-1)
    assert k[1, 1] == pytest.approx(1 / total) and k[0, 0] == pytest.approx(math.exp(-1) / total)
    image = torch.zeros(1, 3, 3, 3)
    image[0, 0, 0] = 1.0  # a corner pixel: reflection padding does not repeat it (mirrors row and column 1)
    out = ImageBlur(image=image, blur_radius=1, sigma=1.0).run(None)
    assert out[0, 0, 0, 0].item() == pytest.approx(k[1, 1])
    assert out[0, 1, 1, 0].item() == pytest.approx(k[0, 0])
    assert out[0, 2, 2, 0].item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="radius of 3"):
        ImageBlur(image=image, blur_radius=3, sigma=1.0).run(None)


@pytest.mark.parametrize("radius, sigma, alpha", [(1, 1.0, 1.0), (2, 0.7, 0.3), (1, 2.0, 0.0)])
def test_sharpen_matches_scipy(radius, sigma, alpha):
    image = rand_image(1, 8, 10, seed=3)
    out = ImageSharpen(image=image, sharpen_radius=radius, sigma=sigma, alpha=alpha).run(None)
    kernel = -10 * alpha * kernel_by_hand(radius, sigma)
    kernel[radius, radius] += 1 - kernel.sum()
    want = np.clip(filter_by_scipy(image, kernel), 0, 1)
    assert np.allclose(out.numpy(), want, rtol=0, atol=2e-6)
    if alpha == 0:
        assert torch.allclose(out, image, atol=1e-6)


def quantize_by_pil(pixels, colors, dither):
    im = PILImage.fromarray(pixels, "RGB")
    palette = im.quantize(colors=colors)
    return np.asarray(im.quantize(palette=palette, dither=dither).convert("RGB"))


@pytest.mark.parametrize("colors", [2, 5, 256])
def test_quantize_none_and_floyd_steinberg_are_pils(colors):
    image = rand_image(2, 12, 10, seed=4)
    pixels = (image * 255).to(torch.uint8).numpy()  # truncated, as ComfyUI converts
    for mode, dither in (("none", PILImage.Dither.NONE), ("floyd-steinberg", PILImage.Dither.FLOYDSTEINBERG)):
        out = ImageQuantize(image=image, colors=colors, dither=mode).run(None)
        for b in range(2):
            want = quantize_by_pil(pixels[b], colors, dither)
            assert torch.equal(out[b], torch.from_numpy(want.astype(np.float32) / 255))
    assert len(torch.unique(out[0].reshape(-1, 3), dim=0)) <= colors


def bayer_by_bits(n):
    """Bayer index matrix via bit interleaving: M(i, j) = bit_reverse(interleave(i XOR j, i))."""
    bits = int(math.log2(n))
    m = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            value = 0
            for bit in range(bits):
                value = (value << 1) | (((i ^ j) >> bit) & 1)
                value = (value << 1) | ((i >> bit) & 1)
            m[i, j] = value
    return m


@pytest.mark.parametrize("order", [2, 4, 8, 16])
def test_bayer_matrix_is_the_standard_one(order):
    assert np.allclose(bayer_matrix(order), (bayer_by_bits(order) + 0.5) / order ** 2 - 0.5)


@pytest.mark.parametrize("order", [2, 4])
def test_quantize_bayer(order):
    image = rand_image(1, 9, 7, seed=5)
    out = ImageQuantize(image=image, colors=4, dither=f"bayer-{order}").run(None)
    pixels = (image[0] * 255).to(torch.uint8).numpy()
    im = PILImage.fromarray(pixels, "RGB")
    palette = im.quantize(colors=4)
    spread = 512 / (len(palette.getpalette()) // 3)
    shifted = pixels.astype(np.float64)
    index = bayer_by_bits(order)
    for i in range(9):
        for j in range(7):
            shifted[i, j] += spread * ((index[i % order, j % order] + 0.5) / order ** 2 - 0.5) + 0.5
    shifted = np.clip(shifted, 0, 255).astype(np.uint8)
    want = PILImage.fromarray(shifted, "RGB").quantize(palette=palette, dither=PILImage.Dither.NONE)
    assert torch.equal(out[0], torch.from_numpy(np.asarray(want.convert("RGB")).astype(np.float32) / 255))
    with pytest.raises(ValueError, match="RGB"):
        ImageQuantize(image=torch.zeros(1, 4, 4, 4), colors=4, dither="none").run(None)


def test_post_processing_through_the_executor(env):
    wf = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 6, "batch_size": 1,
                                                       "color": 0x336699}},
          "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 2, "sigma": 1.0}},
          "3": {"class_type": "ImageSharpen", "inputs": {"image": ["2", 0], "sharpen_radius": 1, "sigma": 1.0,
                                                         "alpha": 0.5}},
          "4": {"class_type": "ImageQuantize", "inputs": {"image": ["3", 0], "colors": 4, "dither": "bayer-2"}},
          "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}}}
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p", prompt=wf)
    assert result.success, result.error
    solid = torch.tensor([0x33, 0x66, 0x99]) / 255
    # a solid colour stays solid through blur and sharpen (both kernels sum to 1)
    assert torch.allclose(result.values["3"].outputs[0][0], solid.expand(1, 6, 8, 3), atol=1e-6)
    assert result.values["4"].outputs[0][0].shape == (1, 6, 8, 3)
    missing = {**wf, "4": {"class_type": "ImageQuantize", "inputs": {"image": ["3", 0], "colors": 4}}}
    errors = validate(parse_workflow(missing), builtin_registry(), env).to_comfy()["node_errors"]
    assert errors["4"]["errors"][0]["type"] == "required_input_missing"
