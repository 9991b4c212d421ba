"""Mask nodes (ComfyUI's names, inputs and rules): LoadImageMask, ImageToMask, MaskToImage, InvertMask, SolidMask,
ThresholdMask, GrowMask (all but LoadImageMask are in ComfyUI's `comfy_extras.nodes_mask`, which `/object_info`
says as `python_module`).

A MASK is float32 `[B, H, W]` (or `[H, W]`), 1 = selected (for inpainting: regenerate). LoadImageMask reads one
channel of an input image as ComfyUI does: the image is made RGBA first, so `alpha` of an image without
transparency is 0 everywhere, and for `alpha` the mask is 1 − alpha (transparent = selected). GrowMask repeats a
3×3 grey dilation (erosion for a negative `expand`) |expand| times with scipy's `grey_dilation`/`grey_erosion`
(edges reflected); `tapered_corners` leaves the kernel's corners out (a plus shape) so growth stays round.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import torch
from PIL import Image as PILImage
from PIL import ImageOps
from scipy import ndimage

from nodes.api import Context, Environment, Input, Node, node
from nodes.builtin.image import LoadImage, input_images
from nodes.types import MAX_RESOLUTION, Choices, Image, Mask

CHANNELS = ("red", "green", "blue", "alpha")


@node(category="mask", version="1.0.0", display_name="Load Image (as Mask)")
class LoadImageMask(Node):
    """Load one channel of an input image as a mask (alpha: transparent pixels are 1)."""

    image: Annotated[str, Choices(input_images)] = Input(image_upload=True)
    channel: Literal["alpha", "red", "green", "blue"] = Input("alpha")

    def run(self, ctx: Context) -> Mask:
        with PILImage.open(ctx.env.paths.resolve(ctx.env.paths.input, self.image)) as opened:
            picture = ImageOps.exif_transpose(opened)
            if picture.mode == "I":
                picture = picture.point(lambda v: v * (1 / 255))
            band = np.asarray(picture.convert("RGBA").getchannel(self.channel[0].upper()), dtype=np.float32)
        mask = torch.from_numpy(band / 255.0)
        return (1.0 - mask if self.channel == "alpha" else mask).unsqueeze(0)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> str:
        return LoadImage.fingerprint(inputs, env)


@node(category="mask", version="1.0.0", display_name="Convert Image to Mask",
      python_module="comfy_extras.nodes_mask")
class ImageToMask(Node):
    """One channel of an image as a mask."""

    image: Image = Input()
    channel: Literal["red", "green", "blue", "alpha"] = Input("red")

    def run(self, ctx: Context) -> Mask:
        return self.image[..., CHANNELS.index(self.channel)]


@node(category="mask", version="1.0.0", display_name="Convert Mask to Image",
      python_module="comfy_extras.nodes_mask")
class MaskToImage(Node):
    """A mask as a grey image."""

    mask: Mask = Input()

    def run(self, ctx: Context) -> Image:
        mask = self.mask.reshape((-1,) + tuple(self.mask.shape[-2:]))
        return mask.unsqueeze(-1).expand(-1, -1, -1, 3).clone()


@node(category="mask", version="1.0.0", display_name="InvertMask",
      python_module="comfy_extras.nodes_mask")
class InvertMask(Node):
    """1 − mask."""

    mask: Mask = Input()

    def run(self, ctx: Context) -> Mask:
        return 1.0 - self.mask


@node(category="mask", version="1.0.0", display_name="SolidMask",
      python_module="comfy_extras.nodes_mask")
class SolidMask(Node):
    """A mask of one value."""

    value: float = Input(1.0, ge=0.0, le=1.0, step=0.01)
    width: int = Input(512, ge=1, le=MAX_RESOLUTION, step=1)
    height: int = Input(512, ge=1, le=MAX_RESOLUTION, step=1)

    def run(self, ctx: Context) -> Mask:
        return torch.full((1, self.height, self.width), self.value, dtype=torch.float32)


@node(category="mask", version="1.0.0", display_name="ThresholdMask",
      python_module="comfy_extras.nodes_mask")
class ThresholdMask(Node):
    """1 where the mask is above `value`, else 0."""

    mask: Mask = Input()
    value: float = Input(0.5, ge=0.0, le=1.0, step=0.01)

    def run(self, ctx: Context) -> Mask:
        return (self.mask > self.value).to(torch.float32)


@node(category="mask", version="1.0.0", display_name="GrowMask",
      python_module="comfy_extras.nodes_mask")
class GrowMask(Node):
    """Grow (or, negative, shrink) a mask by `expand` pixels."""

    mask: Mask = Input()
    expand: int = Input(0, ge=-MAX_RESOLUTION, le=MAX_RESOLUTION, step=1)
    tapered_corners: bool = Input(True)

    def run(self, ctx: Context) -> Mask:
        corner = 0 if self.tapered_corners else 1
        footprint = np.array([[corner, 1, corner], [1, 1, 1], [corner, 1, corner]], dtype=bool)
        step = ndimage.grey_erosion if self.expand < 0 else ndimage.grey_dilation
        out = []
        for mask in self.mask.reshape((-1,) + tuple(self.mask.shape[-2:])).cpu().numpy():
            for _ in range(abs(self.expand)):
                mask = step(mask, footprint=footprint)
            out.append(torch.from_numpy(np.ascontiguousarray(mask)))
        return torch.stack(out)
