"""Latent nodes: empty latents, VAE encode/decode (whole or tiled, `nodes.sd.vae`), and batch edits.

VAEDecodeTiled and VAEEncodeTiled take tile_size and overlap in pixels (decoding divides both by 8); decoding
uses tile_size // 4 as the overlap when the overlap is larger than that, as ComfyUI does. The temporal inputs
only matter for video VAEs, which latentloom does not load: they are accepted and unused. Progress is reported
per tile, over the three tilings averaged.

RepeatLatentBatch and LatentFromBatch keep ComfyUI's `batch_index` bookkeeping: each batch item remembers which
noise draw of its seed it gets (`nodes.sd.noise`), so an item taken from a batch, or a repeated batch, samples
exactly as it did in the whole batch. A noise mask with one item applies to all and is kept; one per item is
sliced or repeated with the samples.
"""
from __future__ import annotations

import itertools
from typing import Callable

import torch

from nodes.api import Context, Input, Node, node
from nodes.sd import vae as vae_ops
from nodes.sd.handles import VaeHandle
from nodes.types import MAX_RESOLUTION, Image, Latent, Vae


@node(category="latent", version="1.0.0", display_name="Empty Latent Image", aliases=("EmptyLatent",))
class EmptyLatentImage(Node):
    """A batch of empty (zero) latents to start txt2img from."""

    width: int = Input(512, ge=16, le=MAX_RESOLUTION, step=8)
    height: int = Input(512, ge=16, le=MAX_RESOLUTION, step=8)
    batch_size: int = Input(1, ge=1, le=4096)

    def run(self, ctx: Context) -> Latent:
        return {"samples": torch.zeros([self.batch_size, 4, self.height // 8, self.width // 8])}


def usable(vae: VaeHandle | None) -> VaeHandle:
    if vae is None:
        raise ValueError("VAE is invalid: None (the checkpoint has no VAE; load one with VAELoader)")
    return vae


@node(category="latent", version="1.0.0", display_name="VAE Decode")
class VAEDecode(Node):
    """Decode latents into images."""

    samples: Latent = Input(tooltip="the latent to decode")
    vae: Vae = Input(tooltip="the VAE used to decode")

    def run(self, ctx: Context) -> Image:
        return usable(self.vae).decode(self.samples["samples"])


@node(category="latent", version="1.0.0", display_name="VAE Encode")
class VAEEncode(Node):
    """Encode images into latents (for img2img: then sample with denoise below 1)."""

    pixels: Image = Input()
    vae: Vae = Input()

    def run(self, ctx: Context) -> Latent:
        return {"samples": usable(self.vae).encode(self.pixels)}


def tile_reporter(ctx: Context, total: int) -> Callable[[], None]:
    """A callback reporting tile n of `total` as the node's progress each time it is called."""
    done = itertools.count(1)
    return lambda: ctx.progress(next(done), total)


TEMPORAL_SIZE_TIP = "Only used for video VAEs: Amount of frames to {} at a time."
TEMPORAL_OVERLAP_TIP = "Only used for video VAEs: Amount of frames to overlap."


@node(category="_for_testing", version="1.0.0", display_name="VAE Decode (Tiled)")
class VAEDecodeTiled(Node):
    """Decode latents tile by tile, for large images in little memory; seams are blended over the overlap."""

    samples: Latent = Input()
    vae: Vae = Input()
    tile_size: int = Input(512, ge=64, le=4096, step=32)
    overlap: int = Input(64, ge=0, le=4096, step=32)
    temporal_size: int = Input(64, ge=8, le=4096, step=4, tooltip=TEMPORAL_SIZE_TIP.format("decode"))
    temporal_overlap: int = Input(8, ge=4, le=4096, step=4, tooltip=TEMPORAL_OVERLAP_TIP)

    def run(self, ctx: Context) -> Image:
        vae, latent = usable(self.vae), self.samples["samples"]
        overlap = self.overlap if self.tile_size >= 4 * self.overlap else self.tile_size // 4
        tile, overlap = self.tile_size // vae_ops.DOWNSCALE, overlap // vae_ops.DOWNSCALE
        total = vae_ops.tiled_steps(latent.shape[0], latent.shape[2], latent.shape[3], tile, overlap)
        return vae.decode_tiled(latent, tile, overlap, tile_reporter(ctx, total))


@node(category="_for_testing", version="1.0.0", display_name="VAE Encode (Tiled)")
class VAEEncodeTiled(Node):
    """Encode images tile by tile, for large images in little memory; seams are blended over the overlap."""

    pixels: Image = Input()
    vae: Vae = Input()
    tile_size: int = Input(512, ge=64, le=4096, step=64)
    overlap: int = Input(64, ge=0, le=4096, step=32)
    temporal_size: int = Input(64, ge=8, le=4096, step=4, tooltip=TEMPORAL_SIZE_TIP.format("encode"))
    temporal_overlap: int = Input(8, ge=4, le=4096, step=4, tooltip=TEMPORAL_OVERLAP_TIP)

    def run(self, ctx: Context) -> Latent:
        vae = usable(self.vae)
        height, width = vae_ops.encoder_size(self.pixels)
        total = vae_ops.tiled_steps(self.pixels.shape[0], height, width, self.tile_size, self.overlap)
        return {"samples": vae.encode_tiled(self.pixels, self.tile_size, self.overlap, tile_reporter(ctx, total))}


def _batch_index(latent: dict) -> list[int]:
    return list(latent.get("batch_index", range(latent["samples"].shape[0])))


def _mask_per_item(mask: torch.Tensor, batch: int) -> torch.Tensor:
    """A noise mask of several items repeated (cyclically) to one per batch item."""
    if mask.shape[0] < batch:
        mask = mask.repeat((-(-batch // mask.shape[0]), 1, 1, 1))
    return mask[:batch]


@node(category="latent/batch", version="1.0.0", display_name="Repeat Latent Batch")
class RepeatLatentBatch(Node):
    """Repeat a batch of latents `amount` times (each copy gets its own noise)."""

    samples: Latent = Input()
    amount: int = Input(1, ge=1, le=64)

    def run(self, ctx: Context) -> Latent:
        latent = self.samples["samples"]
        out = {**self.samples, "samples": latent.repeat((self.amount, 1, 1, 1))}
        mask = self.samples.get("noise_mask")
        if mask is not None and mask.shape[0] > 1:
            out["noise_mask"] = _mask_per_item(mask, latent.shape[0]).repeat((self.amount, 1, 1, 1))
        if "batch_index" in self.samples:
            index = self.samples["batch_index"]
            offset = max(index) - min(index) + 1
            out["batch_index"] = index + [i + copy * offset for copy in range(1, self.amount) for i in index]
        return out


@node(category="latent/batch", version="1.0.0", display_name="Latent From Batch")
class LatentFromBatch(Node):
    """Take `length` latents from a batch, starting at `batch_index` (they keep their noise)."""

    samples: Latent = Input()
    batch_index: int = Input(0, ge=0, le=63)
    length: int = Input(1, ge=1, le=64)

    def run(self, ctx: Context) -> Latent:
        latent = self.samples["samples"]
        start = min(latent.shape[0] - 1, self.batch_index)
        stop = start + min(latent.shape[0] - start, self.length)
        out = {**self.samples, "samples": latent[start:stop].clone(),
               "batch_index": _batch_index(self.samples)[start:stop]}
        mask = self.samples.get("noise_mask")
        if mask is not None and mask.shape[0] > 1:
            out["noise_mask"] = _mask_per_item(mask, latent.shape[0])[start:stop].clone()
        return out
