"""`comfy.utils`: `ProgressBar`, reporting through the running node's Context (imported only under that name).

`ProgressBar(total)` reports for the V1 node running where it is updated, else for the one running when it was
made (a bar updated from a pack's own thread); `update_absolute(value, total, preview)` checks the interrupt (raising
`comfy.model_management.InterruptProcessingException`), then reports `value` of `total` as the node's progress:
the `progress` and `progress_state` websocket messages, and a live preview when previews are on. A preview is a
PIL image or ComfyUI's `(format, PIL image, max size)` tuple; anything else is dropped. A bar made outside a
running V1 node reports nothing. `node_id` (reporting for another node) is accepted and ignored: progress always
belongs to the node that runs.

`common_upscale(samples, width, height, upscale_method, crop)` is our ImageScale/LatentUpscale resize
(`nodes.builtin.scale.resize`): [B, C, H, W] tensors, the interpolate modes, `lanczos` and `bislerp`.
"""
from __future__ import annotations

from typing import Any

from nodes.comfy_compat import current_context

from .model_management import InterruptProcessingException


class ProgressBar:
    def __init__(self, total: int, node_id: str | None = None) -> None:
        self.total = total
        self.current = 0
        self.node_id = node_id
        self._ctx = current_context()

    def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        ctx = current_context() or self._ctx
        if ctx is None:
            return
        if ctx.interrupted:
            raise InterruptProcessingException(f"interrupted in node {ctx.node_id}")
        ctx.progress(self.current, self.total, _preview_image(preview))

    def update(self, value: int) -> None:
        self.update_absolute(self.current + value)


def _preview_image(preview: Any) -> Any:
    from PIL import Image

    if isinstance(preview, (tuple, list)) and len(preview) >= 2:
        preview = preview[1]
    return preview if isinstance(preview, Image.Image) else None


def common_upscale(samples: Any, width: int, height: int, upscale_method: str, crop: str) -> Any:
    """`samples` [B, C, H, W] resized to `height` × `width`; `crop="center"` first cuts to the target's aspect."""
    from nodes.builtin.scale import resize

    return resize(samples, width, height, upscale_method, crop)
