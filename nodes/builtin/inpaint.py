"""Inpainting nodes: SetLatentNoiseMask, VAEEncodeForInpaint and InpaintModelConditioning (reference §6.8).

They attach a LATENT's `noise_mask` ([B, 1, H, W], 1 = regenerate, 0 = keep) and, for InpaintModelConditioning,
the conditioning's `concat_latent_image` / `concat_mask`; the sampler does the rest (`nodes.sd.denoiser`: pinning
the kept region, and the [mask, masked-image latent] concat channels of 9-channel inpainting UNets). Masks stay
at pixel resolution here; the sampler resizes them to the latent bilinearly.

VAEEncodeForInpaint follows §6.8 step for step: mask resized bilinearly to the pixel size, pixels and mask
centre-cropped to multiples of 8, pixels under the rounded mask set to 0.5 grey before encoding, and the noise
mask dilated by a k×k box sum (k = grow_mask_by, padding ceil((k − 1)/2)) of the rounded mask, clamped to 0..1,
cut back to the pixel size (an even k pads one row/column more than it removes) and rounded.

InpaintModelConditioning prepares pixels and mask the same way but keeps the image whole: the LATENT is the
encoding of the original pixels (with the mask, unrounded and not grown, as its noise mask when `noise_mask` is
on), and every conditioning entry gets the encoding of the greyed pixels as `concat_latent_image` and the mask as
`concat_mask` — what inpainting checkpoints see in their extra channels, while the sampler starts from the real
image (so `denoise` < 1 works).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from nodes.api import Context, Input, Node, node
from nodes.builtin.latent import usable
from nodes.sd.vae import crop_to_multiple_of_8
from nodes.types import Conditioning, Image, Latent, Mask, Vae


def as_mask_batch(mask: torch.Tensor) -> torch.Tensor:
    """A MASK ([H, W], [B, H, W] or [B, 1, H, W]) as [B, 1, H, W] float32."""
    return mask.reshape((-1, 1) + tuple(mask.shape[-2:])).to(torch.float32)


def grey_masked_pixels(pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RGB of `pixels` ([B, H, W, C]) with 0.5 where round(mask) ([B or 1, 1, H, W]) is 1."""
    keep = (1.0 - mask.round()).squeeze(1).unsqueeze(-1)
    return (pixels[..., :3] - 0.5) * keep + 0.5


def grow_mask(mask: torch.Tensor, grow_by: int) -> torch.Tensor:
    """round(clamp(k×k box sum of round(mask), 0, 1)), same size as `mask` ([B, 1, H, W]); k = 0 only rounds."""
    if grow_by == 0:
        return mask.round()
    kernel = torch.ones((1, 1, grow_by, grow_by), dtype=mask.dtype)
    grown = F.conv2d(mask.round(), kernel, padding=math.ceil((grow_by - 1) / 2)).clamp(0.0, 1.0)
    return grown[:, :, : mask.shape[2], : mask.shape[3]].round()


@node(category="latent/inpaint", version="1.0.0", display_name="Set Latent Noise Mask")
class SetLatentNoiseMask(Node):
    """Limit sampling to the masked area (mask 1 = regenerate, 0 = keep the latent as it is)."""

    samples: Latent = Input()
    mask: Mask = Input()

    def run(self, ctx: Context) -> Latent:
        return {**self.samples, "noise_mask": as_mask_batch(self.mask)}


@node(category="latent/inpaint", version="1.0.0", display_name="VAE Encode (for Inpainting)")
class VAEEncodeForInpaint(Node):
    """Encode images for inpainting: the masked area is greyed out and regenerated, the mask grown a little."""

    pixels: Image = Input()
    vae: Vae = Input()
    mask: Mask = Input()
    grow_mask_by: int = Input(6, ge=0, le=64, step=1)

    def run(self, ctx: Context) -> Latent:
        vae = usable(self.vae)
        pixels, mask = inpaint_inputs(self.pixels, self.mask)
        samples = vae.encode(grey_masked_pixels(pixels, mask))
        return {"samples": samples, "noise_mask": grow_mask(mask, self.grow_mask_by)}


class InpaintConditioningOutputs(NamedTuple):
    positive: Conditioning
    negative: Conditioning
    latent: Latent


@node(category="conditioning/inpaint", version="1.0.0", display_name="Inpaint Model Conditioning")
class InpaintModelConditioning(Node):
    """Condition an inpainting model on an image and mask; the latent starts from the whole image."""

    positive: Conditioning = Input()
    negative: Conditioning = Input()
    vae: Vae = Input()
    pixels: Image = Input()
    mask: Mask = Input()
    noise_mask: bool = Input(True, tooltip="also limit sampling to the masked area (a noise mask on the latent)")

    def run(self, ctx: Context) -> InpaintConditioningOutputs:
        vae = usable(self.vae)
        pixels, mask = inpaint_inputs(self.pixels, self.mask)
        concat = {"concat_latent_image": vae.encode(grey_masked_pixels(pixels, mask)), "concat_mask": mask}
        latent = {"samples": vae.encode(pixels[..., :3])}
        if self.noise_mask:
            latent["noise_mask"] = mask
        return InpaintConditioningOutputs([[cond, {**extras, **concat}] for cond, extras in self.positive],
                                          [[cond, {**extras, **concat}] for cond, extras in self.negative], latent)


def inpaint_inputs(pixels: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels and mask ([B, 1, H, W], resized to the pixels bilinearly) centre-cropped to multiples of 8."""
    height, width = pixels.shape[1], pixels.shape[2]
    mask = as_mask_batch(mask)
    if tuple(mask.shape[-2:]) != (height, width):
        mask = F.interpolate(mask, size=(height, width), mode="bilinear")
    top, left = (height % 8) // 2, (width % 8) // 2
    mask = mask[:, :, top:top + height - height % 8, left:left + width - width % 8]
    return crop_to_multiple_of_8(pixels), mask
