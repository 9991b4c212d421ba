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

State dicts: `load_torch_file(path)` reads through our checkpoint reader, so pickle files (.ckpt, .pt, .pth) load
only when the environment allows pickle (`--allow-pickle`), as for our own loaders; `save_torch_file` writes
safetensors; `state_dict_prefix_replace` renames key prefixes as ComfyUI's does. `tiled_scale` runs a function
(an upscaler) over overlapping tiles and feathers the overlaps together; `repeat_to_batch_size` cuts or repeats a
batch.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from nodes.comfy_compat import STATE, current_context

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


def repeat_to_batch_size(tensor: torch.Tensor, batch_size: int, dim: int = 0) -> torch.Tensor:
    """`tensor` cut or repeated along `dim` to `batch_size` entries."""
    size = tensor.shape[dim]
    if size > batch_size:
        return tensor.narrow(dim, 0, batch_size)
    if size < batch_size:
        repeats = [1] * tensor.ndim
        repeats[dim] = -(-batch_size // size)
        return tensor.repeat(repeats).narrow(dim, 0, batch_size)
    return tensor


def load_torch_file(ckpt: str, safe_load: bool = False, device: Any = None,
                    return_metadata: bool = False) -> Any:
    """The tensors of a checkpoint file (on `device`, default the CPU); with `return_metadata`, also its metadata."""
    from nodes.sd.statedict import open_state_dict

    ctx = current_context()
    env = ctx.env if ctx is not None else STATE.environment()
    state = open_state_dict(ckpt, allow_pickle=env.allow_pickle)
    tensors = state.tensors()
    if device is not None:
        tensors = {k: v.to(device) for k, v in tensors.items()}
    return (tensors, dict(state.metadata) or None) if return_metadata else tensors


def save_torch_file(sd: dict[str, torch.Tensor], ckpt: str, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, ckpt, metadata=metadata)


def state_dict_prefix_replace(state_dict: dict[str, Any], replace_prefix: dict[str, str],
                              filter_keys: bool = False) -> dict[str, Any]:
    """Keys starting with an old prefix get the new one; with `filter_keys` only those keys are returned (in a new
    dict), else `state_dict` is renamed in place and returned."""
    out = {} if filter_keys else state_dict
    for old, new in replace_prefix.items():
        for key in [k for k in state_dict if k.startswith(old)]:
            out[new + key[len(old):]] = state_dict.pop(key)
    return out


def tiled_scale(samples: torch.Tensor, function: Callable[[torch.Tensor], torch.Tensor], tile_x: int = 64,
                tile_y: int = 64, overlap: int = 8, upscale_amount: float = 4, out_channels: int = 3,
                output_device: Any = "cpu", pbar: ProgressBar | None = None) -> torch.Tensor:
    """`function` applied to overlapping `tile_y` × `tile_x` tiles of `samples` [B, C, H, W], each result
    (`upscale_amount` times larger, `out_channels` channels) blended in with weights that ramp up over the overlap."""
    batch, _, height, width = samples.shape
    out_h, out_w = round(height * upscale_amount), round(width * upscale_amount)
    output = torch.empty((batch, out_channels, out_h, out_w), device=output_device)
    ys = _tile_starts(height, tile_y, overlap)
    xs = _tile_starts(width, tile_x, overlap)
    for b in range(batch):
        total = torch.zeros((1, out_channels, out_h, out_w), device=output_device)
        weight = torch.zeros_like(total)
        for y in ys:
            for x in xs:
                tile = samples[b:b + 1, :, y:y + tile_y, x:x + tile_x]
                result = function(tile).to(output_device)
                mask = _feather(result.shape[-2], result.shape[-1], round(overlap * upscale_amount),
                                top=y > 0, left=x > 0, bottom=y + tile_y < height, right=x + tile_x < width)
                oy, ox = round(y * upscale_amount), round(x * upscale_amount)
                total[..., oy:oy + result.shape[-2], ox:ox + result.shape[-1]] += result * mask
                weight[..., oy:oy + result.shape[-2], ox:ox + result.shape[-1]] += mask
                if pbar is not None:
                    pbar.update(1)
        output[b:b + 1] = total / weight
    return output


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, size - tile, step))
    return starts + [size - tile]


def _feather(height: int, width: int, ramp: int, *, top: bool, left: bool, bottom: bool, right: bool) -> torch.Tensor:
    """Weights 1 inside, rising linearly from near 0 over `ramp` pixels at each edge that overlaps another tile."""
    mask = torch.ones((1, 1, height, width))
    for i in range(min(ramp, height, width)):
        value = (i + 1) / (ramp + 1)
        if top:
            mask[..., i, :] = torch.minimum(mask[..., i, :], torch.tensor(value))
        if bottom:
            mask[..., height - 1 - i, :] = torch.minimum(mask[..., height - 1 - i, :], torch.tensor(value))
        if left:
            mask[..., :, i] = torch.minimum(mask[..., :, i], torch.tensor(value))
        if right:
            mask[..., :, width - 1 - i] = torch.minimum(mask[..., :, width - 1 - i], torch.tensor(value))
    return mask
