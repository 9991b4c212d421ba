"""`comfy_extras.nodes_mask`: our mask nodes' ComfyUI classes, and ComfyUI's `composite` helper."""
from __future__ import annotations

import torch

from nodes.builtin.image_tools import composite as _composite
from nodes.comfy_face import module_members

globals().update(module_members(__name__))


def composite(destination: torch.Tensor, source: torch.Tensor, x: int, y: int, mask: torch.Tensor | None = None,
              multiplier: int = 8, resize_source: bool = False) -> torch.Tensor:
    """Paste `source` [b, C, h, w] onto a copy of `destination` [B, C, H, W] at pixel (x, y), through `mask` when
    given; `multiplier` is the pixels per cell (8 for latents, 1 for images)."""
    return _composite(destination, source, x, y, mask, multiplier, resize_source)
