"""Cheap live previews: a linear latent → RGB projection (no VAE), as ComfyUI's `latent2rgb` does.

The factors map the four latent channels of the denoised estimate to RGB in −1..1; the result is mapped to
0..255 and shrunk to fit `max_size`. Only the first image of a batch is previewed.
"""
from __future__ import annotations

import torch
from PIL import Image as PILImage

from nodes.sd.configs import SDXL_FAMILIES

# Published latent-to-RGB factors (rows: latent channels; columns: R, G, B) and biases per latent family.
SD1_FACTORS = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721),
               (-0.2120, -0.2616, -0.7177))
SDXL_FACTORS = ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362),
                (-0.3165, -0.2492, -0.2188))
SDXL_BIAS = (0.1084, -0.0175, -0.0011)
MAX_PREVIEW = 512


def latent_preview(x0: torch.Tensor, family_name: str, max_size: int = MAX_PREVIEW) -> PILImage.Image:
    """A PIL image of the first latent of a batch ([B, 4, h, w], the sampler's denoised estimate)."""
    sdxl = family_name in SDXL_FAMILIES  # the refiner shares the base model's latent space
    factors = torch.tensor(SDXL_FACTORS if sdxl else SD1_FACTORS, dtype=torch.float32)
    bias = torch.tensor(SDXL_BIAS if sdxl else (0.0, 0.0, 0.0), dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", x0[0, :4].detach().float().cpu(), factors) + bias
    pixels = (((rgb + 1.0) / 2.0).clamp(0, 1) * 255).to(torch.uint8).numpy()
    image = PILImage.fromarray(pixels)
    image.thumbnail((max_size, max_size), PILImage.Resampling.BILINEAR)
    return image
