"""VAE encode and decode with ComfyUI's conventions (reference §6.9), whole or in tiles.

Encode: RGB of [B, H, W, C] pixels in 0..1, centre-cropped to multiples of 8, mapped to −1..1, encoder +
quant_conv, the posterior's **mode** (its mean: deterministic), unscaled latent [B, 4, H/8, W/8] on the CPU.
Decode: post_quant_conv + decoder, clamp((x + 1)/2, 0, 1), [B, H, W, 3] float32 on the CPU. The latent scale
(0.18215 / 0.13025) is not applied here: latents between nodes are VAE-native, scaling happens inside sampling.

Tiled (ComfyUI's VAEDecodeTiled / VAEEncodeTiled): the same maps run over overlapping tiles (`nodes.sd.tiling`)
three times — tiles of t × t, (t/2 wide) × (2t high) and (2t wide) × (t/2 high) — and the three results are
averaged, so no seam lies in the same place in all three. Decoding averages the decoder's −1..1 output before the
clamp; encoding averages the latents. `tile` and `overlap` are in the input's cells (latent cells for decoding,
pixels for encoding).

TAESD (diffusers' `AutoencoderTiny`) works in the *scaled* latent space and on pixels in −1..1 like the KL
autoencoder (its encoder maps them to 0..1 itself, its decoder clamps the latent with tanh(x/3)·3 and returns
−1..1): `encode_tiny` divides its latent by the family's scale, `decode_tiny` multiplies it back first, so TAESD
latents are interchangeable with the full VAE's as in ComfyUI.
"""
from __future__ import annotations

from typing import Callable

import torch
from diffusers import AutoencoderKL, AutoencoderTiny

from nodes.sd.tiling import tile_count, tiled_apply

DOWNSCALE = 8  # pixels per latent cell, along each axis, in every SD1/SD2/SDXL VAE


def crop_to_multiple_of_8(pixels: torch.Tensor) -> torch.Tensor:
    height, width = pixels.shape[1], pixels.shape[2]
    top, left = (height % 8) // 2, (width % 8) // 2
    return pixels[:, top:top + height - height % 8, left:left + width - width % 8, :]


def _encoder_input(pixels: torch.Tensor) -> torch.Tensor:
    return crop_to_multiple_of_8(pixels[..., :3]).movedim(-1, 1)


def _encode(vae: AutoencoderKL, rgb: torch.Tensor) -> torch.Tensor:
    sample = (rgb * 2.0 - 1.0).to(device=vae.device, dtype=vae.dtype)
    return vae.encode(sample).latent_dist.mode().float().cpu()


def _decode(vae: AutoencoderKL, latent: torch.Tensor) -> torch.Tensor:
    return vae.decode(latent.to(device=vae.device, dtype=vae.dtype)).sample.float().cpu()


def _to_image(sample: torch.Tensor) -> torch.Tensor:
    return ((sample + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1)


@torch.inference_mode()
def encode(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    return _encode(vae, _encoder_input(pixels))


@torch.inference_mode()
def decode(vae: AutoencoderKL, latent: torch.Tensor) -> torch.Tensor:
    return _to_image(_decode(vae, latent))


def tilings(tile: int) -> tuple[tuple[int, int], ...]:
    """The three (height, width) tile shapes whose results are averaged."""
    return (tile * 2, tile // 2), (tile // 2, tile * 2), (tile, tile)


def tiled_steps(batch: int, height: int, width: int, tile: int, overlap: int) -> int:
    """How many tiles a tiled encode or decode of `batch` × `height` × `width` cells runs (its progress total)."""
    return batch * sum(tile_count(height, h, overlap) * tile_count(width, w, overlap) for h, w in tilings(tile))


def encoder_size(pixels: torch.Tensor) -> tuple[int, int]:
    """The (height, width) in pixels that encoding uses (after the crop to multiples of 8)."""
    return pixels.shape[1] - pixels.shape[1] % 8, pixels.shape[2] - pixels.shape[2] % 8


@torch.inference_mode()
def encode_tiled(vae: AutoencoderKL, pixels: torch.Tensor, tile: int, overlap: int,
                 on_tile: Callable[[], None] | None = None) -> torch.Tensor:
    rgb = _encoder_input(pixels)
    channels = vae.config.latent_channels
    runs = [tiled_apply(rgb, lambda piece: _encode(vae, piece), shape, overlap, 1 / DOWNSCALE, channels, on_tile)
            for shape in tilings(tile)]
    return sum(runs) / 3.0


@torch.inference_mode()
def decode_tiled(vae: AutoencoderKL, latent: torch.Tensor, tile: int, overlap: int,
                 on_tile: Callable[[], None] | None = None) -> torch.Tensor:
    runs = [tiled_apply(latent, lambda piece: _decode(vae, piece), shape, overlap, DOWNSCALE, 3, on_tile)
            for shape in tilings(tile)]
    return _to_image(sum(runs) / 3.0)


@torch.inference_mode()
def encode_tiny(vae: AutoencoderTiny, pixels: torch.Tensor, latent_scale: float) -> torch.Tensor:
    sample = (_encoder_input(pixels) * 2.0 - 1.0).to(device=vae.device, dtype=vae.dtype)
    return (vae.encode(sample).latents.float() / latent_scale).cpu()


@torch.inference_mode()
def decode_tiny(vae: AutoencoderTiny, latent: torch.Tensor, latent_scale: float) -> torch.Tensor:
    return _to_image(vae.decode(latent.to(device=vae.device, dtype=vae.dtype) * latent_scale).sample.float().cpu())
