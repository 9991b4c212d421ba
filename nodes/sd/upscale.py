"""Upscale models (ESRGAN, SwinIR, SPAN, Compact, … : every architecture spandrel detects) and tiled upscaling.

Loading: the file is read like a checkpoint (`open_state_dict`: safetensors always, pickles only with
`allow_pickle`), then spandrel recognises the architecture from the state dict's keys and shapes and builds the
model. Only single-image models are accepted (spandrel also detects inpainting models, which need a mask).

Upscaling runs tile by tile so that a 4× upscale of a large image needs device memory for one tile only; the
result is assembled on the CPU. Tiles are `tile` input pixels square (ComfyUI's 512) and overlap by `overlap`
(ComfyUI's 32); on out-of-memory the tile is halved, down to 128. Blending (our rule, not ComfyUI's linear
feather over the whole overlap): each tile's output is weighted 0 over the outer quarter of the overlap at its
inner edges, ramps linearly to 1 over the middle half, and the weights are normalised. Pixels that close to a cut
are the ones a network sees with zero padding instead of their real neighbours, so a model whose receptive field
reaches at most overlap/4 input pixels gives exactly (up to float rounding) what it gives on the whole image, and
larger models get seams blended away where they are weakest.

spandrel needs torchvision at import; it is imported when a model is first loaded, so the rest of the engine
works without it.

Public API: `UpscaleModel` (the UPSCALE_MODEL value), `load_upscale_model(path, manager, *, allow_pickle)`,
`tile_starts(size, tile, overlap)`, `tiled_upscale(run, image, scale, *, tile, overlap, on_tile)`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nodes.sd.devices import ModelManager
from nodes.sd.errors import CheckpointError
from nodes.sd.statedict import open_state_dict

TILE = 512
OVERLAP = 32
MIN_TILE = 128


@dataclass(frozen=True)
class UpscaleModel:
    """UPSCALE_MODEL: a spandrel `ImageModelDescriptor` and the manager that puts it on the device."""

    descriptor: Any  # spandrel.ImageModelDescriptor (spandrel is imported lazily)
    manager: ModelManager = field(repr=False)
    source: str = ""

    @property
    def scale(self) -> int:
        return self.descriptor.scale

    def upscale(self, image: torch.Tensor, on_tile: Callable[[int, int], None] | None = None,
                tile: int = TILE, overlap: int = OVERLAP) -> torch.Tensor:
        """Upscale `image` [B, C, H, W] in 0..1 tile by tile; on out-of-memory retry with half the tile."""
        if image.shape[1] != self.descriptor.input_channels:
            raise ValueError(f"the upscale model takes images of {self.descriptor.input_channels} channels, "
                             f"not {image.shape[1]}")
        with self.manager.use(self.descriptor.model) as module:
            device = next(module.parameters()).device
            dtype = next(module.parameters()).dtype

            def run(part: torch.Tensor) -> torch.Tensor:
                return self.descriptor(part.to(device, dtype)).float().cpu()

            while True:
                try:
                    return tiled_upscale(run, image, self.scale, tile=tile, overlap=overlap, on_tile=on_tile)
                except torch.OutOfMemoryError:
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    tile //= 2
                    if tile < MIN_TILE:
                        raise


def _spandrel() -> Any:
    try:
        import spandrel
    except ImportError as exc:  # spandrel itself, or the torchvision it imports
        raise RuntimeError(f"upscale models need the spandrel package and torchvision matching torch ({exc})") from exc
    return spandrel


def load_upscale_model(path: Path, manager: ModelManager, *, allow_pickle: bool = False,
                       source: str = "") -> UpscaleModel:
    """Read `path` and build the model spandrel detects; `CheckpointError` says why a file is refused."""
    tensors = open_state_dict(path, allow_pickle=allow_pickle).tensors()
    spandrel = _spandrel()
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(tensors)
    except spandrel.UnsupportedModelError:
        raise CheckpointError(path, "not an upscale model of an architecture spandrel knows") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise CheckpointError(path, f"{descriptor.architecture.name} is not a single-image model (it needs a mask)")
    return UpscaleModel(descriptor.eval(), manager, source)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of `tile` pixels covering `size` with at least `overlap` shared; the last ends flush."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def _ramp(length: int, scale: int, overlap: int, ramp_in: bool, ramp_out: bool) -> torch.Tensor:
    """Blend weights along one axis of one tile's output (`length` output pixels); see the module paragraph."""
    position = torch.arange(length, dtype=torch.float32) + 0.5
    weight = torch.ones(length)
    quarter, half = overlap * scale / 4, overlap * scale / 2
    if ramp_in:
        weight = torch.minimum(weight, ((position - quarter) / half).clamp(0, 1))
    if ramp_out:
        weight = torch.minimum(weight, ((length - position - quarter) / half).clamp(0, 1))
    return weight


def tiled_upscale(run: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, scale: int, *,
                  tile: int = TILE, overlap: int = OVERLAP,
                  on_tile: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Apply `run` ([1, C, h, w] → [1, C', h·scale, w·scale]) to `image` [B, C, H, W] tile by tile.

    `on_tile(done, total)` is called after each tile (total: tiles of the whole batch).
    """
    batch, _, height, width = image.shape
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    total, done = batch * len(rows) * len(cols), 0
    results = []
    for item in image.split(1):
        out = weights = None
        for top in rows:
            for left in cols:
                h, w = min(tile, height - top), min(tile, width - left)
                part = run(item[:, :, top:top + h, left:left + w])
                if out is None:
                    out = torch.zeros((1, part.shape[1], height * scale, width * scale))
                    weights = torch.zeros((1, 1, height * scale, width * scale))
                mask = (_ramp(h * scale, scale, overlap, top > 0, top + h < height)[:, None]
                        * _ramp(w * scale, scale, overlap, left > 0, left + w < width)[None, :])
                region = (..., slice(top * scale, (top + h) * scale), slice(left * scale, (left + w) * scale))
                out[region] += part * mask
                weights[region] += mask
                done += 1
                if on_tile is not None:
                    on_tile(done, total)
        results.append(out / weights)
    return torch.cat(results)
