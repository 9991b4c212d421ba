"""Latent nodes."""
from __future__ import annotations

import torch

from nodes.api import Context, Input, Node, node
from nodes.types import Image, Latent, Vae

MAX_RESOLUTION = 16384


@node(category="latent", version="1.0.0", display_name="Empty Latent Image", aliases=("EmptyLatent",))
class EmptyLatentImage(Node):
    """A batch of empty (zero) latents to start txt2img from."""

    width: int = Input(512, ge=16, le=MAX_RESOLUTION, step=8)
    height: int = Input(512, ge=16, le=MAX_RESOLUTION, step=8)
    batch_size: int = Input(1, ge=1, le=4096)

    def run(self, ctx: Context) -> Latent:
        return {"samples": torch.zeros([self.batch_size, 4, self.height // 8, self.width // 8])}


@node(category="latent", version="1.0.0", display_name="VAE Decode")
class VAEDecode(Node):
    """Decode latents into images."""

    samples: Latent = Input(tooltip="the latent to decode")
    vae: Vae = Input(tooltip="the VAE used to decode")

    def run(self, ctx: Context) -> Image:
        if self.vae is None:
            raise ValueError("VAE is invalid: None (the checkpoint has no VAE; load one with VAELoader)")
        return self.vae.decode(self.samples["samples"])


@node(category="latent", version="1.0.0", display_name="VAE Encode")
class VAEEncode(Node):
    """Encode images into latents (for img2img: then sample with denoise below 1)."""

    pixels: Image = Input()
    vae: Vae = Input()

    def run(self, ctx: Context) -> Latent:
        if self.vae is None:
            raise ValueError("VAE is invalid: None (the checkpoint has no VAE; load one with VAELoader)")
        return {"samples": self.vae.encode(self.pixels)}
