"""Resizing latents and images: LatentUpscale, LatentUpscaleBy, ImageScale, ImageScaleBy (ComfyUI's names, inputs
and rules), e.g. for a "hires fix" (sample small, upscale the latent, sample again with denoise < 1).

Rules, as ComfyUI applies them:
- A target of width 0 and height 0 leaves the input as it is; one of them 0 follows the input's aspect ratio
  (rounded). Latent targets are in pixels (at least 64) and divided by 8; image targets are at least 1.
- `crop="center"` first cuts the input to the target's aspect ratio, centred (the offset on the longer side is
  round((old − old·new_aspect/old_aspect)/2)), then resizes.
- Methods are `torch.nn.functional.interpolate` modes (no antialiasing, `align_corners=False`), except `lanczos`
  (images only): each image through PIL's Lanczos filter as 8-bit RGB, as ComfyUI does; and `bislerp` (latents
  only), ComfyUI's bilinear slerp: first along the width, then along the height, each output cell takes the two
  input cells around bilinear's source position p = clamp((k + 0.5)·old/new − 0.5, 0, old − 1) (⌊p⌋ and
  min(⌊p⌋ + 1, old − 1)) and blends their channel vectors a, b with ratio r = p − ⌊p⌋: the unit vectors are
  slerped, (sin((1 − r)ω)·â + sin(rω)·b̂)/sin ω with cos ω = â·b̂, and scaled to the lerped length
  (1 − r)|a| + r|b|. A zero vector's unit vector counts as 0; when â·b̂ > 1 − 1e−5 the result is a itself, when
  â·b̂ < 1e−5 − 1 the plain lerp (1 − r)a + rb.
- A LATENT's other keys (noise mask, batch index) are kept; the noise mask is resized by the sampler anyway.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage

from nodes.api import Context, Input, Node, node
from nodes.types import MAX_RESOLUTION, Image, Latent

LatentMethod = Literal["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
ImageMethod = Literal["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
Crop = Literal["disabled", "center"]


def centre_crop_to_aspect(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """`samples` ([..., H, W]) cut to the aspect ratio width:height, centred."""
    old_height, old_width = samples.shape[-2:]
    old_aspect, new_aspect = old_width / old_height, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_width - old_width * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_height - old_height * (old_aspect / new_aspect)) / 2)
    return samples[..., y:old_height - y, x:old_width - x]


def resize(samples: torch.Tensor, width: int, height: int, method: str, crop: str = "disabled") -> torch.Tensor:
    """[B, C, H, W] → [B, C, height, width]."""
    if crop == "center":
        samples = centre_crop_to_aspect(samples, width, height)
    if method == "lanczos":
        return _lanczos(samples, width, height)
    if method == "bislerp":
        return bislerp(samples, width, height)
    return F.interpolate(samples, size=(height, width), mode=method)


def _lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    out = []
    for image in samples:
        pixels = np.clip(255.0 * image.movedim(0, -1).cpu().numpy(), 0, 255).astype(np.uint8)
        resized = PILImage.fromarray(pixels).resize((width, height), resample=PILImage.Resampling.LANCZOS)
        out.append(torch.from_numpy(np.asarray(resized).astype(np.float32) / 255.0).movedim(-1, 0))
    return torch.stack(out).to(samples.device, samples.dtype)


def _slerp(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """The channel vectors (dim 1) of `a` and `b` blended by `ratio` as the module paragraph says."""
    length_a, length_b = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    unit_a = torch.where(length_a > 0, a / length_a, 0.0)
    unit_b = torch.where(length_b > 0, b / length_b, 0.0)
    dot = (unit_a * unit_b).sum(dim=1, keepdim=True)
    omega = torch.acos(dot)  # NaN only where dot leaves [−1, 1], and there one of the two cases below applies
    out = (torch.sin((1.0 - ratio) * omega) * unit_a + torch.sin(ratio * omega) * unit_b) / torch.sin(omega)
    out = out * (length_a * (1.0 - ratio) + length_b * ratio)
    out = torch.where(dot < 1e-5 - 1.0, a * (1.0 - ratio) + b * ratio, out)
    return torch.where(dot > 1.0 - 1e-5, a, out)


def _slerp_axis(samples: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """`samples` [B, C, H, W] resized along `dim` (2 or 3) to `size` cells by slerping neighbouring cells."""
    old = samples.shape[dim]
    # Bilinear interpolation of the cell indices gives bilinear's source positions, rounded as torch rounds them.
    indices = torch.arange(old, dtype=torch.float32, device=samples.device).reshape(1, 1, old)
    position = F.interpolate(indices, size=size, mode="linear")[0, 0]
    lower = position.floor()
    ratio = position - lower
    lower = lower.long()
    upper = (lower + 1).clamp(max=old - 1)
    shape = (size, 1) if dim == 2 else (size,)
    return _slerp(samples.index_select(dim, lower), samples.index_select(dim, upper), ratio.reshape(shape))


def bislerp(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """ComfyUI's `bislerp`: [B, C, H, W] → [B, C, height, width], computed in float32."""
    out = _slerp_axis(_slerp_axis(samples.float(), width, 3), height, 2)
    return out.to(samples.dtype)


def keep_aspect(width: int, height: int, old_width: int, old_height: int, least: int) -> tuple[int, int]:
    """Fill in a zero width or height from the input's aspect ratio; both at least `least`."""
    if width == 0:
        return max(least, round(old_width * height / old_height)), max(least, height)
    if height == 0:
        return max(least, width), max(least, round(old_height * width / old_width))
    return max(least, width), max(least, height)


@node(category="latent", version="1.0.0", display_name="Upscale Latent")
class LatentUpscale(Node):
    """Resize latents to a size in pixels (a multiple of 8); 0 for one side keeps the aspect ratio."""

    samples: Latent = Input()
    upscale_method: LatentMethod = Input("nearest-exact")
    width: int = Input(512, ge=0, le=MAX_RESOLUTION, step=8)
    height: int = Input(512, ge=0, le=MAX_RESOLUTION, step=8)
    crop: Crop = Input("disabled")

    def run(self, ctx: Context) -> Latent:
        if self.width == 0 and self.height == 0:
            return self.samples
        latent = self.samples["samples"]
        width, height = keep_aspect(self.width, self.height, latent.shape[-1] * 8, latent.shape[-2] * 8, 64)
        return {**self.samples, "samples": resize(latent, width // 8, height // 8, self.upscale_method, self.crop)}


@node(category="latent", version="1.0.0", display_name="Upscale Latent By")
class LatentUpscaleBy(Node):
    """Resize latents by a factor."""

    samples: Latent = Input()
    upscale_method: LatentMethod = Input("nearest-exact")
    scale_by: float = Input(1.5, ge=0.01, le=8.0, step=0.01)

    def run(self, ctx: Context) -> Latent:
        latent = self.samples["samples"]
        width, height = round(latent.shape[-1] * self.scale_by), round(latent.shape[-2] * self.scale_by)
        return {**self.samples, "samples": resize(latent, width, height, self.upscale_method)}


@node(category="image/upscaling", version="1.0.0", display_name="Upscale Image")
class ImageScale(Node):
    """Resize images to a size in pixels; 0 for one side keeps the aspect ratio."""

    image: Image = Input()
    upscale_method: ImageMethod = Input("nearest-exact")
    width: int = Input(512, ge=0, le=MAX_RESOLUTION, step=1)
    height: int = Input(512, ge=0, le=MAX_RESOLUTION, step=1)
    crop: Crop = Input("disabled")

    def run(self, ctx: Context) -> Image:
        if self.width == 0 and self.height == 0:
            return self.image
        width, height = keep_aspect(self.width, self.height, self.image.shape[2], self.image.shape[1], 1)
        scaled = resize(self.image.movedim(-1, 1), width, height, self.upscale_method, self.crop)
        return scaled.movedim(1, -1)


@node(category="image/upscaling", version="1.0.0", display_name="Upscale Image By")
class ImageScaleBy(Node):
    """Resize images by a factor."""

    image: Image = Input()
    upscale_method: ImageMethod = Input("nearest-exact")
    scale_by: float = Input(1.0, ge=0.01, le=8.0, step=0.01)

    def run(self, ctx: Context) -> Image:
        width = round(self.image.shape[2] * self.scale_by)
        height = round(self.image.shape[1] * self.scale_by)
        return resize(self.image.movedim(-1, 1), width, height, self.upscale_method).movedim(1, -1)
