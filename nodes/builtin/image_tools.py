"""Image utility nodes ComfyUI users expect: ImageInvert, EmptyImage, ImageBatch, ImagePadForOutpaint,
ImageCompositeMasked, ImageCrop, ImageScaleToTotalPixels (ComfyUI's class names, inputs, defaults, ranges and
categories).

Rules, as ComfyUI applies them:
- ImageBatch: an image2 of another size is first resized to image1's, bilinear with a centre crop to image1's
  aspect ratio (`scale.resize(..., "bilinear", "center")`), then the batches are concatenated.
- ImagePadForOutpaint: the new border is 0.5 grey and masked 1. Inside the original H×W image, for pixel (i, j),
  d = min(dt, db, dl, dr) with dt = i if top > 0 else H, db = H − i if bottom > 0 else H, dl = j if left > 0 else
  W, dr = W − j if right > 0 else W (note H − i, not H − 1 − i); the mask is ((f − d) / f)² where d < f
  (f = feathering), else 0. Feathering happens only when f > 0 and 2f < H and 2f < W. The mask is one [1, H', W'].
- Compositing (`composite`, shared with LatentCompositeMasked): x, y are in destination pixels, divided (floor) by
  `multiplier` (8 for latents); the source (resized bilinear to the destination's size first when
  `resize_source`) is repeated or cut to the destination's batch and pasted with its top-left corner there, cut
  where it runs off the destination. An optional mask, resized bilinear to the source's size, blends:
  out = mask·source + (1 − mask)·destination. The inputs are never modified.
- ImageCrop: x and y are pulled back to at most width − 1 and height − 1; the window is cut where it runs off the
  image, so the result may be smaller than asked.
- ImageScaleToTotalPixels: scale = √(⌊megapixels·1024²⌋ / (W·H)); the new size is round(W·scale) ×
  round(H·scale).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from nodes.api import Context, Input, Node, node
from nodes.builtin.scale import ImageMethod, resize
from nodes.sd.denoiser import repeat_to_batch_size
from nodes.types import MAX_RESOLUTION, Image, Mask


@node(category="image", version="1.0.0", display_name="Invert Image")
class ImageInvert(Node):
    """Invert an image's colours (1 − value)."""

    image: Image = Input()

    def run(self, ctx: Context) -> Image:
        return 1.0 - self.image


@node(category="image", version="1.0.0")
class EmptyImage(Node):
    """A batch of images of one solid colour (color is 0xRRGGBB)."""

    width: int = Input(512, ge=1, le=MAX_RESOLUTION, step=1)
    height: int = Input(512, ge=1, le=MAX_RESOLUTION, step=1)
    batch_size: int = Input(1, ge=1, le=4096)
    color: int = Input(0, ge=0, le=0xFFFFFF, step=1, display="color")

    def run(self, ctx: Context) -> Image:
        channels = [((self.color >> shift) & 0xFF) / 0xFF for shift in (16, 8, 0)]
        rgb = torch.tensor(channels, dtype=torch.float32)
        return rgb.expand(self.batch_size, self.height, self.width, 3).clone()


@node(category="image", version="1.0.0", display_name="Batch Images")
class ImageBatch(Node):
    """Join two image batches; image2 is resized (bilinear, centre crop) to image1's size when they differ."""

    image1: Image = Input()
    image2: Image = Input()

    def run(self, ctx: Context) -> Image:
        first, second = self.image1, self.image2
        if first.shape[-1] != second.shape[-1]:
            raise ValueError(f"cannot batch images of {first.shape[-1]} and {second.shape[-1]} channels")
        if first.shape[1:] != second.shape[1:]:
            second = resize(second.movedim(-1, 1), first.shape[2], first.shape[1], "bilinear", "center")
            second = second.movedim(1, -1)
        return torch.cat((first, second.to(first.device, first.dtype)), dim=0)


class ImageAndMask(NamedTuple):
    IMAGE: Image
    MASK: Mask


def outpaint_feather(height: int, width: int, top: int, bottom: int, left: int, right: int,
                     feathering: int) -> torch.Tensor:
    """The mask ramp inside the original image ([height, width]; see the module paragraph for the formula)."""
    if not (feathering > 0 and 2 * feathering < height and 2 * feathering < width):
        return torch.zeros((height, width), dtype=torch.float32)
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    # An unpadded side counts as far away (the full size), so it never wins the minimum below f.
    distances = np.broadcast_arrays(rows if top else np.full_like(rows, height),
                                    height - rows if bottom else np.full_like(rows, height),
                                    cols if left else np.full_like(cols, width),
                                    width - cols if right else np.full_like(cols, width))
    d = np.minimum.reduce(distances).astype(np.float64)
    ramp = np.where(d < feathering, ((feathering - d) / feathering) ** 2, 0.0)
    return torch.from_numpy(ramp.astype(np.float32))


@node(category="image", version="1.0.0", display_name="Pad Image for Outpainting")
class ImagePadForOutpaint(Node):
    """Add a grey border to outpaint into; the mask is 1 there and fades into the image over `feathering` px."""

    image: Image = Input()
    left: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8)
    top: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8)
    right: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8)
    bottom: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8)
    feathering: int = Input(40, ge=0, le=MAX_RESOLUTION, step=1)

    def run(self, ctx: Context) -> ImageAndMask:
        batch, height, width, channels = self.image.shape
        size = (height + self.top + self.bottom, width + self.left + self.right)
        padded = torch.full((batch, *size, channels), 0.5, dtype=self.image.dtype, device=self.image.device)
        padded[:, self.top:self.top + height, self.left:self.left + width] = self.image
        mask = torch.ones(size, dtype=torch.float32)
        mask[self.top:self.top + height, self.left:self.left + width] = outpaint_feather(
            height, width, self.top, self.bottom, self.left, self.right, self.feathering)
        return ImageAndMask(padded, mask.unsqueeze(0))


def composite(destination: torch.Tensor, source: torch.Tensor, x: int, y: int, mask: torch.Tensor | None,
              multiplier: int, resize_source: bool) -> torch.Tensor:
    """Paste `source` [b, C, h, w] onto a copy of `destination` [B, C, H, W] at pixel (x, y) (module rules)."""
    out = destination.clone()
    source = source.to(out.device, out.dtype)
    if resize_source:
        source = F.interpolate(source, size=tuple(out.shape[-2:]), mode="bilinear")
    source = repeat_to_batch_size(source, out.shape[0])
    left, top = x // multiplier, y // multiplier
    visible_h = max(0, min(source.shape[2], out.shape[2] - top))
    visible_w = max(0, min(source.shape[3], out.shape[3] - left))
    if visible_h == 0 or visible_w == 0:
        return out
    if mask is None:
        weight = torch.ones_like(source)
    else:
        weight = mask.to(out.device, out.dtype).reshape((-1, 1, *mask.shape[-2:]))
        weight = F.interpolate(weight, size=tuple(source.shape[-2:]), mode="bilinear")
        weight = repeat_to_batch_size(weight, source.shape[0])
    weight = weight[:, :, :visible_h, :visible_w]
    region = out[:, :, top:top + visible_h, left:left + visible_w]
    pasted = weight * source[:, :, :visible_h, :visible_w] + (1.0 - weight) * region
    out[:, :, top:top + visible_h, left:left + visible_w] = pasted
    return out


@node(category="image", version="1.0.0", python_module="comfy_extras.nodes_mask")
class ImageCompositeMasked(Node):
    """Paste `source` onto `destination` at (x, y), blended through the optional mask."""

    destination: Image = Input()
    source: Image = Input()
    x: int = Input(0, ge=0, le=MAX_RESOLUTION, step=1)
    y: int = Input(0, ge=0, le=MAX_RESOLUTION, step=1)
    resize_source: bool = Input(False)
    mask: Mask | None = Input(None, optional=True)

    def run(self, ctx: Context) -> Image:
        if self.destination.shape[-1] != self.source.shape[-1]:
            raise ValueError(f"source has {self.source.shape[-1]} channels, destination "
                             f"{self.destination.shape[-1]}")
        out = composite(self.destination.movedim(-1, 1), self.source.movedim(-1, 1), self.x, self.y, self.mask,
                        1, self.resize_source)
        return out.movedim(1, -1)


@node(category="image/transform", version="1.0.0", display_name="Image Crop", python_module="comfy_extras.nodes_images")
class ImageCrop(Node):
    """Cut a width × height window with its top-left corner at (x, y) out of images."""

    image: Image = Input()
    width: int = Input(512, ge=1, le=MAX_RESOLUTION, step=1)
    height: int = Input(512, ge=1, le=MAX_RESOLUTION, step=1)
    x: int = Input(0, ge=0, le=MAX_RESOLUTION, step=1)
    y: int = Input(0, ge=0, le=MAX_RESOLUTION, step=1)

    def run(self, ctx: Context) -> Image:
        left = min(self.x, self.image.shape[2] - 1)
        top = min(self.y, self.image.shape[1] - 1)
        return self.image[:, top:top + self.height, left:left + self.width, :]


@node(category="image/upscaling", version="1.0.0", display_name="Scale Image to Total Pixels",
      python_module="comfy_extras.nodes_post_processing")
class ImageScaleToTotalPixels(Node):
    """Resize images to about `megapixels` million pixels (×1024²), keeping the aspect ratio."""

    image: Image = Input()
    upscale_method: ImageMethod = Input("nearest-exact")
    megapixels: float = Input(1.0, ge=0.01, le=16.0, step=0.01)

    def run(self, ctx: Context) -> Image:
        height, width = self.image.shape[1], self.image.shape[2]
        scale = math.sqrt(int(self.megapixels * 1024 * 1024) / (width * height))
        new_width, new_height = max(1, round(width * scale)), max(1, round(height * scale))
        return resize(self.image.movedim(-1, 1), new_width, new_height, self.upscale_method).movedim(1, -1)
