"""Running a model over overlapping tiles and blending the seams, as ComfyUI's tiled VAE encode and decode do.

`tiled_apply(samples, fn, tile, overlap, scale, out_channels)` runs `fn` on tiles of each batch item of `samples`
[B, C, H, W] and assembles an output [B, out_channels, round(H·scale), round(W·scale)]:

- An item that fits in one tile (H ≤ tile height and W ≤ tile width) goes through `fn` whole.
- Otherwise, along each axis of length L longer than its tile t, tiles start at 0, t − o, 2(t − o), … below
  L − o (o = overlap), the last one cut at the edge: ⌈(L − o)/(t − o)⌉ tiles along the axis (`tile_count`).
- Each tile's output lands at round(start·scale) and is weighted by a feathered mask: with f = round(o·scale),
  the cell k from either end of the tile (0-based, k < f) is multiplied by (k + 1)/f on each axis, edges of the
  image included (no feathering along an axis where f is not smaller than the tile's output size). The output is
  Σ weight·tile / Σ weight, so each cell is a weighted mean of the tiles covering it.

`on_tile()` is called after every tile; the caller knows the total from `tile_count` (ComfyUI's tiled VAE
reports one count over the three tilings it averages).
"""
from __future__ import annotations

import itertools
import math
from typing import Callable

import torch

def tile_count(length: int, tile: int, overlap: int) -> int:
    """How many tiles cover an axis of `length` cells (1 when it fits in one tile)."""
    if length <= tile:
        return 1
    if tile <= overlap:
        raise ValueError(f"an overlap of {overlap} needs tiles larger than that, got tiles of {tile} "
                         "(tiled VAE nodes also try half the tile size)")
    return math.ceil((length - overlap) / (tile - overlap))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    return [k * (tile - overlap) for k in range(tile_count(length, tile, overlap))]


def feather_mask(height: int, width: int, feather: int) -> torch.Tensor:
    """[height, width] weights: cell k from an end of each axis, k < feather, scaled by (k + 1)/feather."""
    def ramp(size: int) -> torch.Tensor:
        weights = torch.ones(size)
        if feather >= size:
            return weights
        steps = torch.arange(1, feather + 1) / feather
        weights[:feather] *= steps
        weights[size - feather:] *= steps.flip(0)
        return weights

    return torch.outer(ramp(height), ramp(width))


def tiled_apply(samples: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], tile: tuple[int, int],
                overlap: int, scale: float, out_channels: int,
                on_tile: Callable[[], None] | None = None) -> torch.Tensor:
    """`fn` over overlapping tiles of `samples` [B, C, H, W] (module paragraph). `tile` is (height, width)."""
    height, width = samples.shape[2:]
    rows, columns = tile_starts(height, tile[0], overlap), tile_starts(width, tile[1], overlap)
    out_size = (round(height * scale), round(width * scale))
    feather = round(overlap * scale)
    output = torch.empty((samples.shape[0], out_channels, *out_size))
    for index in range(samples.shape[0]):
        item = samples[index:index + 1]
        if height <= tile[0] and width <= tile[1]:
            output[index:index + 1] = fn(item).float().cpu()
            if on_tile is not None:
                on_tile()
            continue
        total = torch.zeros((1, out_channels, *out_size))
        weights = torch.zeros((1, 1, *out_size))
        for top, left in itertools.product(rows, columns):
            piece = fn(item[:, :, top:top + tile[0], left:left + tile[1]]).float().cpu()
            mask = feather_mask(piece.shape[2], piece.shape[3], feather)
            y, x = round(top * scale), round(left * scale)
            total[:, :, y:y + piece.shape[2], x:x + piece.shape[3]] += piece * mask
            weights[:, :, y:y + piece.shape[2], x:x + piece.shape[3]] += mask
            if on_tile is not None:
                on_tile()
        output[index:index + 1] = total / weights
    return output
