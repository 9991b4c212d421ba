"""`latent_preview`: the sampler callback that shows progress and previews (imported only under that name).

`prepare_callback(model, steps, x0_output_dict=None)` returns ComfyUI's callback `(step, x0, x, total_steps)`: it
reports step + 1 of `total_steps` as the running node's progress (a `comfy.utils.ProgressBar`, which also checks
the interrupt), with a preview of `x0` when previews are on (our latent → RGB approximation for the model's family),
and keeps the last `x0` in `x0_output_dict["x0"]`.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from comfy.utils import ProgressBar
from nodes.comfy_compat import current_context
from nodes.sd.preview import MAX_PREVIEW, latent_preview

MAX_PREVIEW_RESOLUTION = MAX_PREVIEW


def prepare_callback(model: Any, steps: int, x0_output_dict: dict[str, Any] | None = None
                     ) -> Callable[[int, torch.Tensor, torch.Tensor, int], None]:
    bar = ProgressBar(steps)
    family = getattr(getattr(model, "family", None), "name", None)

    def callback(step: int, x0: torch.Tensor, x: torch.Tensor, total_steps: int) -> None:
        if x0_output_dict is not None:
            x0_output_dict["x0"] = x0
        ctx = current_context()
        previews = ctx is not None and ctx.env.previews and family is not None
        bar.update_absolute(step + 1, total_steps, latent_preview(x0, family) if previews else None)

    return callback
