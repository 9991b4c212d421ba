"""Latent nodes."""
from __future__ import annotations

import torch

from nodes.api import Context, Input, Node, node
from nodes.types import Latent

MAX_RESOLUTION = 16384


@node(category="latent", version="1.0.0", display_name="Empty Latent Image", aliases=("EmptyLatent",))
class EmptyLatentImage(Node):
    """A batch of empty (zero) latents to start txt2img from."""

    width: int = Input(512, ge=16, le=MAX_RESOLUTION, step=8)
    height: int = Input(512, ge=16, le=MAX_RESOLUTION, step=8)
    batch_size: int = Input(1, ge=1, le=4096)

    def run(self, ctx: Context) -> Latent:
        return {"samples": torch.zeros([self.batch_size, 4, self.height // 8, self.width // 8])}
