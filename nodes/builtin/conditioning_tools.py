"""Conditioning edits (ComfyUI's names and inputs): ConditioningCombine, ConditioningSetTimestepRange,
ConditioningZeroOut.

A CONDITIONING is a list of `[cond, extras]` entries; these nodes build new lists and new extras dicts and never
change the ones they were given (those may sit in the cache). What the entries mean is the sampler's business
(`nodes.sd.denoiser`): entries on one side are averaged by strength, and `start_percent`/`end_percent` limit an
entry to part of the schedule.
"""
from __future__ import annotations

import torch

from nodes.api import Context, Input, Node, node
from nodes.types import Conditioning


@node(category="conditioning", version="1.0.0", display_name="Conditioning (Combine)")
class ConditioningCombine(Node):
    """Use both conditionings: the sampler averages their predictions."""

    conditioning_1: Conditioning = Input()
    conditioning_2: Conditioning = Input()

    def run(self, ctx: Context) -> Conditioning:
        return [*self.conditioning_1, *self.conditioning_2]


@node(category="advanced/conditioning", version="1.0.0", display_name="ConditioningSetTimestepRange")
class ConditioningSetTimestepRange(Node):
    """Apply the conditioning only between two fractions of the sampling schedule (0 = first step)."""

    conditioning: Conditioning = Input()
    start: float = Input(0.0, ge=0.0, le=1.0, step=0.001)
    end: float = Input(1.0, ge=0.0, le=1.0, step=0.001)

    def run(self, ctx: Context) -> Conditioning:
        return [[cond, {**extras, "start_percent": self.start, "end_percent": self.end}]
                for cond, extras in self.conditioning]


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
