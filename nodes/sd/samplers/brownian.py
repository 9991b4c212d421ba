"""Brownian-tree noise for the SDE samplers (torchsde's `BrownianTree`, as k-diffusion uses it).

A Brownian tree W(t) on [σ_min, σ_max] is fixed by its seed, so the noise of a step depends only on the seed
and the two σ it spans, not on how many steps or queries came before. That is what makes `dpmpp_sde` and
`dpmpp_2m_sde` converge to a definite image as the step count grows.

Rules: the tree is built from 0-d σ tensors with w0 = zeros of x's shape; with `cpu=True` (the default of the
non-`_gpu` samplers) the tree and its queries live on the CPU in float32 and the increments are moved to x's
device afterwards, so the result does not depend on the device. A query (σ, σ_next) returns
(W(σ_next) − W(σ)) / sqrt(|σ_next − σ|), a standard-normal tensor of x's shape; the sign follows the direction
of the query (sampling runs from high to low σ).

Public API: `BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=None, cpu=True)`, called as
`sampler(sigma, sigma_next)`.
"""

from __future__ import annotations

import warnings

import torch
import torchsde


class BrownianTreeNoiseSampler:
    def __init__(self, x: torch.Tensor, sigma_min, sigma_max, seed: int | None = None, cpu: bool = True):
        t0, t1 = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        self._cpu = cpu
        self._t0, self._t1, self._sign = _sort(t0, t1)
        w0 = torch.zeros_like(x)
        if seed is None:
            seed = int(torch.randint(0, 2**63 - 1, []).item())
        if cpu:
            self._t0, self._t1, w0 = self._t0.detach().cpu(), self._t1.detach().cpu(), w0.detach().cpu()
        self._tree = torchsde.BrownianTree(self._t0, w0, self._t1, entropy=seed)

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        lo, hi, sign = _sort(t0, t1)
        device, dtype = lo.device, lo.dtype
        if self._cpu:
            lo, hi = lo.detach().cpu().float(), hi.detach().cpu().float()
        with warnings.catch_warnings():
            # σ_max queried against a float32 end point trips torchsde's "Should have tb<=t1" check by one ulp;
            # the query is clamped inside torchsde and the warning (also printed by ComfyUI) means nothing here.
            warnings.filterwarnings("ignore", message="Should have tb<=t1")
            w = self._tree(lo, hi).to(device=device, dtype=dtype) * (self._sign * sign)
        return w / (t1 - t0).abs().sqrt()


def _sort(a: torch.Tensor, b: torch.Tensor):
    return (a, b, 1) if a < b else (b, a, -1)
