"""Image post-processing nodes of ComfyUI's `comfy_extras.nodes_post_processing`: ImageBlur, ImageSharpen,
ImageQuantize (ComfyUI's class names, inputs, defaults, ranges and category).

Rules, as ComfyUI applies them:
- The Gaussian kernel of radius r is (2r + 1) × (2r + 1) samples of exp(−d²/(2σ²)) on a grid spanning −1…1 on
  both axes (not pixel units: σ is relative to the radius), normalised to sum 1.
- ImageBlur convolves each channel with it over the image padded by r with reflection (edge pixel not repeated);
  the radius must be smaller than the image's width and height.
- ImageSharpen uses the kernel K = −10·alpha·G with its centre raised so that K sums to 1 (an unsharp mask),
  the same reflection padding, then clamps to 0…1.
- ImageQuantize, per image, on 8-bit RGB (value·255 truncated): PIL picks a palette of `colors` colours
  (`quantize(colors)`, median cut), then maps the image onto it without dithering ("none"), with PIL's
  Floyd–Steinberg dithering, or with an ordered "bayer-n" dither: each pixel value v becomes
  clamp(v + s·M[i mod n, j mod n] + 0.5, 0, 255) truncated to 8 bits before the mapping, where s = 512 / (number
  of palette entries) and M is the n × n Bayer matrix normalised to (index + 0.5)/n² − 0.5.
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage

from nodes.api import Context, Input, Node, node
from nodes.types import Image

MODULE = "comfy_extras.nodes_post_processing"


def gaussian_kernel(radius: int, sigma: float) -> torch.Tensor:
    """The (2·radius + 1)² kernel of the module paragraph."""
    coords = torch.linspace(-1.0, 1.0, 2 * radius + 1, dtype=torch.float64)
    line = torch.exp(-(coords * coords) / (2.0 * sigma * sigma))
    kernel = torch.outer(line, line)  # exp(−(x² + y²)/2σ²) factors into the two axes
    return (kernel / kernel.sum()).float()


def filter_channels(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """[B, H, W, C] image convolved channel by channel with a square kernel, over reflection padding."""
    radius = kernel.shape[0] // 2
    height, width = image.shape[1], image.shape[2]
    if radius >= height or radius >= width:
        raise ValueError(f"a radius of {radius} px needs an image larger than that on both sides, got "
                         f"{width}×{height}")
    channels = image.shape[-1]
    weight = kernel.to(image).expand(channels, 1, *kernel.shape)
    padded = F.pad(image.movedim(-1, 1), (radius, radius, radius, radius), mode="reflect")
    return F.conv2d(padded, weight, groups=channels).movedim(1, -1)


@node(category="image/postprocessing", version="1.0.0", display_name="Image Blur", python_module=MODULE)
class ImageBlur(Node):
    """Gaussian blur; sigma is relative to the radius (the kernel spans −1…1)."""

    image: Image = Input()
    blur_radius: int = Input(1, ge=1, le=31, step=1)
    sigma: float = Input(1.0, ge=0.1, le=10.0, step=0.1)

    def run(self, ctx: Context) -> Image:
        return filter_channels(self.image, gaussian_kernel(self.blur_radius, self.sigma))


@node(category="image/postprocessing", version="1.0.0", display_name="Image Sharpen", python_module=MODULE)
class ImageSharpen(Node):
    """Sharpen by subtracting alpha × 10 of a Gaussian blur (an unsharp mask), clamped to 0…1."""

    image: Image = Input()
    sharpen_radius: int = Input(1, ge=1, le=31, step=1)
    sigma: float = Input(1.0, ge=0.1, le=10.0, step=0.01)
    alpha: float = Input(1.0, ge=0.0, le=5.0, step=0.01)

    def run(self, ctx: Context) -> Image:
        kernel = gaussian_kernel(self.sharpen_radius, self.sigma) * -(self.alpha * 10)
        centre = self.sharpen_radius
        kernel[centre, centre] += 1.0 - kernel.sum()
        return filter_channels(self.image, kernel).clamp(0.0, 1.0)


def bayer_matrix(order: int) -> np.ndarray:
    """The order × order Bayer matrix (order a power of 2) normalised to (index + 0.5)/order² − 0.5."""
    matrix = np.zeros((1, 1))
    while matrix.shape[0] < order:
        # Bayer's recursion B₂ₙ = [[4Bₙ, 4Bₙ + 2], [4Bₙ + 3, 4Bₙ + 1]], written on the normalised values.
        step = 1.0 / (4 * matrix.size)
        matrix = np.block([[matrix - 1.5 * step, matrix + 0.5 * step], [matrix + 1.5 * step, matrix - 0.5 * step]])
    return matrix


def ordered_dither(rgb: PILImage.Image, palette: PILImage.Image, order: int) -> PILImage.Image:
    entries = len(palette.getpalette()) // 3
    threshold = 2 * 256 / entries * bayer_matrix(order) + 0.5
    pixels = np.asarray(rgb).astype(np.float32)
    reps = (math.ceil(pixels.shape[0] / order), math.ceil(pixels.shape[1] / order))
    tiled = np.tile(threshold, reps)[:pixels.shape[0], :pixels.shape[1], None]
    shifted = np.clip(pixels + tiled.astype(np.float32), 0, 255).astype(np.uint8)
    return PILImage.fromarray(shifted, "RGB").quantize(palette=palette, dither=PILImage.Dither.NONE)


Dither = Literal["none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16"]


@node(category="image/postprocessing", version="1.0.0", display_name="Image Quantize", python_module=MODULE)
class ImageQuantize(Node):
    """Reduce each image to a palette of `colors` colours, optionally dithered."""

    image: Image = Input()
    colors: int = Input(256, ge=1, le=256, step=1)
    dither: Dither = Input()

    def run(self, ctx: Context) -> Image:
        if self.image.shape[-1] != 3:
            raise ValueError(f"ImageQuantize needs RGB images, got {self.image.shape[-1]} channels")
        pixels = (self.image.clamp(0.0, 1.0) * 255).to(torch.uint8).cpu().numpy()
        out = []
        for item in pixels:
            rgb = PILImage.fromarray(item, "RGB")
            palette = rgb.quantize(colors=self.colors)
            if self.dither.startswith("bayer"):
                mapped = ordered_dither(rgb, palette, int(self.dither.split("-")[1]))
            else:
                dither = PILImage.Dither.FLOYDSTEINBERG if self.dither == "floyd-steinberg" else PILImage.Dither.NONE
                mapped = rgb.quantize(palette=palette, dither=dither)
            out.append(torch.from_numpy(np.asarray(mapped.convert("RGB")).astype(np.float32) / 255.0))
        return torch.stack(out).to(self.image.device)
