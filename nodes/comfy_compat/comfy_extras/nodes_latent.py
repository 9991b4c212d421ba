"""`comfy_extras.nodes_latent`: our latent nodes' ComfyUI classes kept here by ComfyUI, and its
`reshape_latent_to` helper."""
from __future__ import annotations

import torch

from comfy.utils import common_upscale, repeat_to_batch_size
from nodes.comfy_face import module_members

globals().update(module_members(__name__))


def reshape_latent_to(target_shape: torch.Size, latent: torch.Tensor, repeat_batch: bool = True) -> torch.Tensor:
    """`latent` resized (bilinear, centre crop) to `target_shape`'s height and width, and with `repeat_batch` cut
    or repeated to its batch size."""
    if latent.shape[1:] != target_shape[1:]:
        latent = common_upscale(latent, target_shape[-1], target_shape[-2], "bilinear", "center")
    return repeat_to_batch_size(latent, target_shape[0]) if repeat_batch else latent
