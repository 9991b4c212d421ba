"""Guidance functions that replace plain CFG (a MODEL's `cfg_function`, see nodes/sd/model_options.py).

Each takes `CfgArgs` (x, σ, the cond and uncond x0 predictions, the cfg scale) and returns the guided x0:

* `RescaleCFG` — Lin et al. (2024), "Common Diffusion Noise Schedules and Sample Steps are Flawed", §3.4: CFG in
  v space (v = (x/(σ² + 1) − x0)·sqrt(σ² + 1)/σ, where ComfyUI applies it), then the result's standard deviation
  rescaled to the cond prediction's: v_rescaled = v_cfg·std(v_cond)/std(v_cfg), mixed back as
  φ·v_rescaled + (1 − φ)·v_cfg, with stds per batch item over channels and pixels (unbiased, as torch.std).
* `PerpNeg` — Armandpour et al. (2023), perpendicular negative guidance: with the empty prompt's x0 `e`,
  pos = cond − e and neg = uncond − e, the negative's component perpendicular to pos,
  perp = neg − (⟨neg, pos⟩/‖pos‖²)·pos (sums over the whole batch, as ComfyUI does), gives
  x0 = e + cfg·(pos − neg_scale·perp).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from nodes.sd.model_options import CfgArgs


def _view(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return sigma.reshape(sigma.shape[:1] + (1,) * (like.dim() - 1))


@dataclass(frozen=True)
class RescaleCFG:
    """CFG with its result's std rescaled towards the cond prediction's; `multiplier` φ ∈ [0, 1] (0: plain CFG)."""

    multiplier: float

    def __call__(self, args: CfgArgs) -> torch.Tensor:
        sigma = _view(args.sigma, args.x)
        scale_in = 1.0 / (sigma * sigma + 1.0)
        v_factor = (sigma * sigma + 1.0) ** 0.5 / sigma
        v_cond = (args.x * scale_in - args.cond_denoised) * v_factor
        v_uncond = (args.x * scale_in - args.uncond_denoised) * v_factor
        v_cfg = v_uncond + args.cond_scale * (v_cond - v_uncond)
        dims = tuple(range(1, v_cfg.dim()))
        v_rescaled = v_cfg * (v_cond.std(dim=dims, keepdim=True) / v_cfg.std(dim=dims, keepdim=True))
        v_final = self.multiplier * v_rescaled + (1.0 - self.multiplier) * v_cfg
        return args.x * scale_in - v_final / v_factor


@dataclass(frozen=True, eq=False)  # conditioning holds tensors
class PerpNeg:
    """Perpendicular negative guidance around the prediction for `empty_conditioning` (a CONDITIONING)."""

    empty_conditioning: Any
    neg_scale: float

    def __call__(self, args: CfgArgs) -> torch.Tensor:
        empty = args.predict(self.empty_conditioning)
        pos = args.cond_denoised - empty
        neg = args.uncond_denoised - empty
        perp = neg - ((neg * pos).sum() / torch.linalg.vector_norm(pos) ** 2) * pos
        return empty + args.cond_scale * (pos - self.neg_scale * perp)
