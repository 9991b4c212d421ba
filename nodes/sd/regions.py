"""Where on the latent a conditioning entry applies, and how much it weighs there (reference §6.14).

An entry of a CONDITIONING may carry (set by ConditioningSetArea, …SetAreaPercentage, …SetMask):

* `area`: `(height, width, y, x)` in latent pixels (pixels ÷ 8), or `("percentage", h, w, y, x)` in fractions of
  the latent, resolved here as `(max(1, round(h·H)), max(1, round(w·W)), round(y·H), round(x·W))` (Python's
  round, half to even);
* `mask` (`[H, W]` or `[B, H, W]`, any resolution: resized bilinearly to the latent) with `mask_strength`, and
  `set_area_to_bounds`: the area becomes the mask's bounding box over the batch, at least 8 × 8 (an all-zero mask
  gives `(8, 8, 0, 0)`);
* `strength`.

The sampler crops its input to the area (its size clamped to the latent) and weighs the entry's prediction per
pixel by `mult` = mask·mask_strength·strength (mask cropped to the area), or, without a mask, strength with the
area's edges feathered: over `rr = min(8, side // 4)` rows or columns next to each edge that is not the latent's
border, the t-th (0-based from the edge) is multiplied by (t + 1)/rr. An area that does not reach into the latent
is refused with a ValueError (ComfyUI fails on it deep inside the sampler).

Public API: `Area`, `resolve_area(...)`, `resolve_mask(...)`, `mask_bounds(...)`, `clamp_area(...)`,
`area_inside(...)`, `area_size(...)`, `multiplier(...)`.
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import torch

#: (height, width, y, x) in latent pixels.
Area = tuple[int, int, int, int]

#: Edges are feathered over at most this many latent pixels.
FEATHER = 8
#: The smallest side of an area taken from a mask's bounding box.
MIN_BOUNDS = 8


def resolve_area(area: Any, latent_hw: tuple[int, int]) -> Area:
    """An entry's `area` in latent pixels: fractions of a percentage area are resolved against `latent_hw`."""
    if isinstance(area, (tuple, list)) and len(area) == 5 and area[0] == "percentage":
        h, w, y, x = area[1:]
        if not all(isinstance(v, Real) for v in (h, w, y, x)):
            raise ValueError(f"percentage area must hold four numbers, got {area!r}")
        height, width = latent_hw
        return max(1, round(h * height)), max(1, round(w * width)), round(y * height), round(x * width)
    if not (isinstance(area, (tuple, list)) and len(area) == 4 and all(isinstance(v, Integral) for v in area)):
        raise ValueError(f"conditioning area must be (height, width, y, x) in latent pixels or "
                         f"('percentage', h, w, y, x), got {area!r}")
    h, w, y, x = (int(v) for v in area)
    if h < 1 or w < 1 or y < 0 or x < 0:
        raise ValueError(f"conditioning area {area!r} needs a positive size and a non-negative position")
    return h, w, y, x


def resolve_mask(mask: Any, latent_hw: tuple[int, int]) -> torch.Tensor:
    """A conditioning mask as float32 `[B, H, W]` at the latent's size (bilinear, no crop), on the CPU."""
    if not isinstance(mask, torch.Tensor) or mask.dim() not in (2, 3):
        raise ValueError(f"conditioning mask must be a [H, W] or [B, H, W] tensor, got "
                         f"{tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__}")
    mask = mask.to(torch.float32).cpu().reshape((-1,) + tuple(mask.shape[-2:]))
    if tuple(mask.shape[1:]) != tuple(latent_hw):
        mask = torch.nn.functional.interpolate(mask.unsqueeze(1), size=tuple(latent_hw), mode="bilinear").squeeze(1)
    return mask


def mask_bounds(mask: torch.Tensor) -> Area:
    """The bounding box of the non-zero pixels of any item of `mask` ([B, H, W]), each side at least 8."""
    ys, xs = torch.nonzero(mask.abs().amax(dim=0), as_tuple=True)
    if len(ys) == 0:
        return MIN_BOUNDS, MIN_BOUNDS, 0, 0
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    return max(MIN_BOUNDS, y1 - y0 + 1), max(MIN_BOUNDS, x1 - x0 + 1), y0, x0


def clamp_area(area: Area, latent_hw: tuple[int, int]) -> Area:
    """The part of `area` inside the latent: its size cut at the latent's bottom and right edges."""
    h, w, y, x = area
    height, width = latent_hw
    h, w = min(height - y, h), min(width - x, w)
    if h < 1 or w < 1:
        raise ValueError(f"conditioning area {area} (height, width, y, x in latent pixels) lies outside the "
                         f"{height}×{width} latent")
    return h, w, y, x


def area_inside(inner: Area, outer: Area) -> bool:
    """Whether `inner` lies within `outer`."""
    (h, w, y, x), (oh, ow, oy, ox) = inner, outer
    return y >= oy and x >= ox and y + h <= oy + oh and x + w <= ox + ow


def area_size(area: Area) -> int:
    return math.prod(area[:2])


def multiplier(region: Area, latent_hw: tuple[int, int], batch: int, strength: float,
               mask: torch.Tensor | None = None, mask_strength: float = 1.0) -> torch.Tensor:
    """ComfyUI's `mult` for an entry seen on `region` (clamped, in latent pixels): `[batch, 1, h, w]` float32.

    With `mask` (`[batch, H, W]` at the latent's size): mask·mask_strength·strength over the region. Without (an
    entry with an area): strength, feathered at the region's edges inside the latent.
    """
    h, w, y, x = region
    if mask is not None:
        return (mask[:, y:y + h, x:x + w] * mask_strength).unsqueeze(1) * strength
    weight = torch.ones((batch, 1, h, w)) * strength
    for axis, size, offset, full in ((2, h, y, latent_hw[0]), (3, w, x, latent_hw[1])):
        ramp = min(FEATHER, size // 4)
        if offset != 0:
            for t in range(ramp):
                weight.narrow(axis, t, 1).mul_((1.0 / ramp) * (t + 1))
        if offset + size < full:
            for t in range(ramp):
                weight.narrow(axis, size - 1 - t, 1).mul_((1.0 / ramp) * (t + 1))
    return weight
