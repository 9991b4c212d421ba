"""VAE encode and decode with ComfyUI's conventions (reference §6.9).

Encode: RGB of [B, H, W, C] pixels in 0..1, centre-cropped to multiples of 8, mapped to −1..1, encoder +
quant_conv, the posterior's **mode** (its mean: deterministic), unscaled latent [B, 4, H/8, W/8] on the CPU.
Decode: post_quant_conv + decoder, clamp((x + 1)/2, 0, 1), [B, H, W, 3] float32 on the CPU. The latent scale
(0.18215 / 0.13025) is not applied here: latents between nodes are VAE-native, scaling happens inside sampling.
"""
from __future__ import annotations

import torch
from diffusers import AutoencoderKL


def crop_to_multiple_of_8(pixels: torch.Tensor) -> torch.Tensor:
    height, width = pixels.shape[1], pixels.shape[2]
    top, left = (height % 8) // 2, (width % 8) // 2
    return pixels[:, top:top + height - height % 8, left:left + width - width % 8, :]


@torch.inference_mode()
def encode(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    device, dtype = vae.device, vae.dtype
    rgb = crop_to_multiple_of_8(pixels[..., :3]).movedim(-1, 1)
    sample = (rgb * 2.0 - 1.0).to(device=device, dtype=dtype)
    posterior = vae.encode(sample).latent_dist
    return posterior.mode().float().cpu()


@torch.inference_mode()
def decode(vae: AutoencoderKL, latent: torch.Tensor) -> torch.Tensor:
    sample = vae.decode(latent.to(device=vae.device, dtype=vae.dtype)).sample
    return ((sample.float() + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1).cpu()
