"""Conditioning edits (ComfyUI's names and inputs): ConditioningCombine, ConditioningConcat, ConditioningAverage,
ConditioningSetArea, ConditioningSetAreaPercentage, ConditioningSetAreaStrength, ConditioningSetMask,
ConditioningSetTimestepRange, ConditioningZeroOut.

A CONDITIONING is a list of `[cond, extras]` entries; these nodes build new lists and new extras dicts and never
change the ones they were given (those may sit in the cache). What the entries mean is the sampler's business
(`nodes.sd.denoiser`, `nodes.sd.regions`): entries on one side are blended by their weights, `area` (latent
pixels, `(h // 8, w // 8, y // 8, x // 8)` of the pixel inputs, or `("percentage", h, w, y, x)`) and `mask` limit
an entry to part of the image, and `start_percent`/`end_percent` to part of the schedule. Concat and Average use
only the first entry of `conditioning_from` (with a warning when there are more), as ComfyUI does.
"""
from __future__ import annotations

import logging
from typing import Any, Literal

import torch

from nodes.api import Context, Input, Node, node
from nodes.types import MAX_RESOLUTION, Conditioning, Mask

log = logging.getLogger(__name__)


def with_values(conditioning: Conditioning, **values: Any) -> Conditioning:
    """A copy of `conditioning` with `values` set in every entry's extras."""
    return [[cond, {**extras, **values}] for cond, extras in conditioning]


def first_entry(conditioning: Conditioning, node_name: str) -> tuple[torch.Tensor, dict]:
    """The first entry of `conditioning_from`, warning (as ComfyUI does) that any others are ignored."""
    if not conditioning:
        raise ValueError(f"{node_name}: conditioning_from is empty")
    if len(conditioning) > 1:
        log.warning("%s: conditioning_from holds %d entries; only the first is applied to conditioning_to",
                    node_name, len(conditioning))
    cond, extras = conditioning[0]
    return cond, extras


@node(category="conditioning", version="1.0.0", display_name="Conditioning (Combine)")
class ConditioningCombine(Node):
    """Use both conditionings: the sampler averages their predictions."""

    conditioning_1: Conditioning = Input()
    conditioning_2: Conditioning = Input()

    def run(self, ctx: Context) -> Conditioning:
        return [*self.conditioning_1, *self.conditioning_2]


@node(category="conditioning", version="1.0.0", display_name="Conditioning (Concat)")
class ConditioningConcat(Node):
    """Append the tokens of `conditioning_from` (its first entry) to those of every entry of `conditioning_to`."""

    conditioning_to: Conditioning = Input()
    conditioning_from: Conditioning = Input()

    def run(self, ctx: Context) -> Conditioning:
        source, _ = first_entry(self.conditioning_from, "ConditioningConcat")
        out = []
        for cond, extras in self.conditioning_to:
            if cond.shape[2] != source.shape[2]:
                raise ValueError(f"ConditioningConcat: token widths differ ({cond.shape[2]} and {source.shape[2]}): "
                                 "the conditionings come from different text encoders")
            out.append([torch.cat((cond, source.to(cond)), dim=1), dict(extras)])
        return out


@node(category="conditioning", version="1.0.0", display_name="ConditioningAverage")
class ConditioningAverage(Node):
    """Blend every entry of `conditioning_to` with the first of `conditioning_from`: to·s + from·(1 − s), token by
    token (`from` cut or zero-padded to `to`'s length), and the pooled outputs alike."""

    conditioning_to: Conditioning = Input()
    conditioning_from: Conditioning = Input()
    conditioning_to_strength: float = Input(1.0, ge=0.0, le=1.0, step=0.01)

    def run(self, ctx: Context) -> Conditioning:
        source, source_extras = first_entry(self.conditioning_from, "ConditioningAverage")
        source_pooled = source_extras.get("pooled_output")
        s = self.conditioning_to_strength
        out = []
        for cond, extras in self.conditioning_to:
            if cond.shape[2] != source.shape[2]:
                raise ValueError(f"ConditioningAverage: token widths differ ({cond.shape[2]} and "
                                 f"{source.shape[2]}): the conditionings come from different text encoders")
            other = source[:, :cond.shape[1]].to(cond)
            missing = cond.shape[1] - other.shape[1]
            if missing > 0:
                other = torch.cat([other, other.new_zeros((other.shape[0], missing, other.shape[2]))], dim=1)
            extras = dict(extras)
            if source_pooled is not None:
                pooled = extras.get("pooled_output", source_pooled)
                extras["pooled_output"] = source_pooled if pooled is None else pooled * s + source_pooled * (1.0 - s)
            out.append([cond * s + other * (1.0 - s), extras])
        return out


@node(category="conditioning", version="1.0.0", display_name="Conditioning (Set Area)")
class ConditioningSetArea(Node):
    """Apply the conditioning to a rectangle of the image (pixels, in steps of 8), weighted by `strength`; its
    edges inside the image are feathered."""

    conditioning: Conditioning = Input()
    width: int = Input(64, ge=64, le=MAX_RESOLUTION, step=8)
    height: int = Input(64, ge=64, le=MAX_RESOLUTION, step=8)
    x: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8)
    y: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8)
    strength: float = Input(1.0, ge=0.0, le=10.0, step=0.01)

    def run(self, ctx: Context) -> Conditioning:
        area = (self.height // 8, self.width // 8, self.y // 8, self.x // 8)
        return with_values(self.conditioning, area=area, strength=self.strength, set_area_to_bounds=False)


@node(category="conditioning", version="1.0.0", display_name="Conditioning (Set Area with Percentage)")
class ConditioningSetAreaPercentage(Node):
    """Apply the conditioning to a rectangle given as fractions (0–1) of the image's size."""

    conditioning: Conditioning = Input()
    width: float = Input(1.0, ge=0, le=1.0, step=0.01)
    height: float = Input(1.0, ge=0, le=1.0, step=0.01)
    x: float = Input(0, ge=0, le=1.0, step=0.01)
    y: float = Input(0, ge=0, le=1.0, step=0.01)
    strength: float = Input(1.0, ge=0.0, le=10.0, step=0.01)

    def run(self, ctx: Context) -> Conditioning:
        area = ("percentage", self.height, self.width, self.y, self.x)
        return with_values(self.conditioning, area=area, strength=self.strength, set_area_to_bounds=False)


@node(category="conditioning", version="1.0.0", display_name="ConditioningSetAreaStrength")
class ConditioningSetAreaStrength(Node):
    """Set the weight of the conditioning against the others it is combined with."""

    conditioning: Conditioning = Input()
    strength: float = Input(1.0, ge=0.0, le=10.0, step=0.01)

    def run(self, ctx: Context) -> Conditioning:
        return with_values(self.conditioning, strength=self.strength)


@node(category="conditioning", version="1.0.0", display_name="Conditioning (Set Mask)")
class ConditioningSetMask(Node):
    """Apply the conditioning where the mask is set, weighted by mask × strength; `mask bounds` also runs the model
    only on the mask's bounding box."""

    conditioning: Conditioning = Input()
    mask: Mask = Input()
    strength: float = Input(1.0, ge=0.0, le=10.0, step=0.01)
    set_cond_area: Literal["default", "mask bounds"] = Input()

    def run(self, ctx: Context) -> Conditioning:
        mask = self.mask.unsqueeze(0) if self.mask.dim() < 3 else self.mask
        return with_values(self.conditioning, mask=mask, set_area_to_bounds=self.set_cond_area != "default",
                           mask_strength=self.strength)


@node(category="advanced/conditioning", version="1.0.0", display_name="ConditioningSetTimestepRange")
class ConditioningSetTimestepRange(Node):
    """Apply the conditioning only between two fractions of the sampling schedule (0 = first step)."""

    conditioning: Conditioning = Input()
    start: float = Input(0.0, ge=0.0, le=1.0, step=0.001)
    end: float = Input(1.0, ge=0.0, le=1.0, step=0.001)

    def run(self, ctx: Context) -> Conditioning:
        return with_values(self.conditioning, start_percent=self.start, end_percent=self.end)


@node(category="advanced/conditioning", version="1.0.0", display_name="ConditioningZeroOut")
class ConditioningZeroOut(Node):
    """The same conditioning with every embedding (and pooled output) set to zero."""

    conditioning: Conditioning = Input()

    def run(self, ctx: Context) -> Conditioning:
        out = []
        for cond, extras in self.conditioning:
            extras = dict(extras)
            if extras.get("pooled_output") is not None:
                extras["pooled_output"] = torch.zeros_like(extras["pooled_output"])
            out.append([torch.zeros_like(cond), extras])
        return out
