"""VAE encode and decode with ComfyUI's conventions (reference §6.9).

Encode: RGB of [B, H, W, C] pixels in 0..1, centre-cropped to multiples of 8, mapped to −1..1, encoder +
quant_conv, the posterior's **mode** (its mean: deterministic), unscaled latent [B, 4, H/8, W/8] on the CPU.
Decode: post_quant_conv + decoder, clamp((x + 1)/2, 0, 1), [B, H, W, 3] float32 on the CPU. The latent scale
(0.18215 / 0.13025) is not applied here: latents between nodes are VAE-native, scaling happens inside sampling.

TAESD (diffusers' `AutoencoderTiny`) works in the *scaled* latent space and on pixels in −1..1 like the KL
autoencoder (its encoder maps them to 0..1 itself, its decoder clamps the latent with tanh(x/3)·3 and returns
−1..1): `encode_tiny` divides its latent by the family's scale, `decode_tiny` multiplies it back first, so TAESD
latents are interchangeable with the full VAE's as in ComfyUI.
"""
from __future__ import annotations

import torch
from diffusers import AutoencoderKL, AutoencoderTiny


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


@torch.inference_mode()
def encode_tiny(vae: AutoencoderTiny, pixels: torch.Tensor, latent_scale: float) -> torch.Tensor:
    rgb = crop_to_multiple_of_8(pixels[..., :3]).movedim(-1, 1)
    sample = (rgb * 2.0 - 1.0).to(device=vae.device, dtype=vae.dtype)
    return (vae.encode(sample).latents.float() / latent_scale).cpu()


@torch.inference_mode()
def decode_tiny(vae: AutoencoderTiny, latent: torch.Tensor, latent_scale: float) -> torch.Tensor:
    sample = vae.decode(latent.to(device=vae.device, dtype=vae.dtype) * latent_scale).sample
    return ((sample.float() + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1).cpu()
