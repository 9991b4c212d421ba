"""Small samplers beyond the usual set.

* `lcm`: Latent Consistency sampling: x ← x0, then re-noised to σ_{i+1} with fresh noise (seeded device
  generator): x ← x0 + ε·σ_{i+1} (eps/v noise scaling).
"""

from __future__ import annotations

import torch

from .common import Callback, DenoiseFn, NoiseSampler, batch_sigma, default_noise_sampler, report


@torch.no_grad()
def sample_lcm(
    denoise_fn: DenoiseFn, x: torch.Tensor, sigmas: torch.Tensor, *, seed: int | None = None,
    callback: Callback | None = None, noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    """Latent consistency sampling: jump to the denoised estimate, then re-noise to the next σ with fresh noise."""
    noise_sampler = noise_sampler or default_noise_sampler(x, seed)
    for i in range(len(sigmas) - 1):
        denoised = denoise_fn(x, batch_sigma(x, sigmas[i]))
        report(callback, i, x, sigmas[i], denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] + x
    return x
