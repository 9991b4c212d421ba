"""Linear multistep (LMS) sampler, order 4, as k-diffusion's `sample_lms`.

x ← x + Σ_j c_j·d_{i−j}, where c_j = ∫_{σ_i}^{σ_{i+1}} ℓ_j(τ) dτ and ℓ_j is the Lagrange basis polynomial through
the last `order` sigmas. The integral is taken numerically (QUADPACK through `scipy.integrate.quad`, epsrel 1e-4)
with the basis evaluated on the float32 sigmas, as k-diffusion does under NumPy 2: the coefficients then agree
with ComfyUI's to the last bit (an exact float64 integral differs from them by ~1e-7 relative). The step into
σ = 0 returns the denoised prediction.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import integrate

from .common import Callback, DenoiseFn, batch_sigma, report, to_d


def lms_coefficient(order: int, sigmas: np.ndarray, i: int, j: int) -> float:
    """∫ over [sigmas[i], sigmas[i+1]] of the Lagrange basis polynomial of node sigmas[i−j] among sigmas[i−order+1 … i]."""
    if order - 1 > i:
        raise ValueError(f"order {order} too high for step {i}")

    def basis(tau):
        prod = 1.0
        for k in range(order):
            if j == k:
                continue
            prod *= (tau - sigmas[i - k]) / (sigmas[i - j] - sigmas[i - k])
        return prod

    return integrate.quad(basis, sigmas[i], sigmas[i + 1], epsrel=1e-4)[0]


@torch.no_grad()
def sample_lms(
    denoise_fn: DenoiseFn, x: torch.Tensor, sigmas: torch.Tensor, *, seed: int | None = None,
    callback: Callback | None = None, order: int = 4,
) -> torch.Tensor:
    """Linear multistep of `order` (4): past slopes weighted by integrals over each σ interval."""
    sigmas_cpu = sigmas.detach().cpu().numpy()
    ds: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = denoise_fn(x, batch_sigma(x, sigmas[i]))
        ds = (ds + [to_d(x, sigmas[i], denoised)])[-order:]
        report(callback, i, x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            cur_order = min(i + 1, order)
            coeffs = [lms_coefficient(cur_order, sigmas_cpu, i, j) for j in range(cur_order)]
            x = x + sum(coeff * d for coeff, d in zip(coeffs, reversed(ds)))
    return x
