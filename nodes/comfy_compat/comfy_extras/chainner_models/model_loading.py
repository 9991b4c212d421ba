"""`comfy_extras.chainner_models.model_loading`: `load_state_dict(state_dict)` → the upscale network (a torch
module in eval mode) that spandrel recognises in the state dict."""
from __future__ import annotations

from typing import Any

import torch


def load_state_dict(state_dict: dict[str, torch.Tensor]) -> Any:
    try:
        from spandrel import ModelLoader
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("loading upscale models needs spandrel (a latentloom dependency): "
                                  "pip install spandrel", name="spandrel") from exc
    return ModelLoader().load_from_state_dict(state_dict).model.eval()
