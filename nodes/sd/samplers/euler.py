"""Euler-family samplers (Karras et al. 2022, Algorithms 1–2 with s_churn = 0, and their ancestral variants).

Each function follows the calling convention of `common.py` and reproduces k-diffusion's sampler of the same
ComfyUI name step for step, including the order of the float32 operations:

* `euler`: x ← x + d·(σ_{i+1} − σ_i), d = (x − x0)/σ_i.
* `euler_ancestral`: Euler to σ_down, then + ε·σ_up (ε from the seeded device generator); x ← x0 when σ_down = 0.
* `heun`: Euler predictor, then the trapezoid of the two slopes; a plain Euler step into σ = 0.
* `dpm_2`: midpoint in log σ (Karras' "DPM-Solver-2"); a plain Euler step into σ = 0.
* `dpm_2_ancestral`: `dpm_2` towards σ_down, then + ε·σ_up.
"""

from __future__ import annotations

import torch

from .common import Callback, DenoiseFn, NoiseSampler, ancestral_step, batch_sigma, default_noise_sampler, report, to_d


@torch.no_grad()
def sample_euler(
    denoise_fn: DenoiseFn, x: torch.Tensor, sigmas: torch.Tensor, *, seed: int | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Euler's method on the probability-flow ODE: one model call per step, deterministic."""
    for i in range(len(sigmas) - 1):
        denoised = denoise_fn(x, batch_sigma(x, sigmas[i]))
        d = to_d(x, sigmas[i], denoised)
        report(callback, i, x, sigmas[i], denoised)
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_euler_ancestral(
    denoise_fn: DenoiseFn, x: torch.Tensor, sigmas: torch.Tensor, *, seed: int | None = None,
    callback: Callback | None = None, eta: float = 1.0, s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    """Euler steps down to σ_down, then fresh noise up to σ_up (`eta` scales it; 0 is plain Euler)."""
    noise_sampler = noise_sampler or default_noise_sampler(x, seed)
    for i in range(len(sigmas) - 1):
        denoised = denoise_fn(x, batch_sigma(x, sigmas[i]))
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        report(callback, i, x, sigmas[i], denoised)
        if sigma_down == 0:
            x = denoised
        else:
            d = to_d(x, sigmas[i], denoised)
            x = x + d * (sigma_down - sigmas[i]) + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_heun(
    denoise_fn: DenoiseFn, x: torch.Tensor, sigmas: torch.Tensor, *, seed: int | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Heun's method: an Euler step corrected by the slope at its end (two calls a step, one on the last)."""
    for i in range(len(sigmas) - 1):
        denoised = denoise_fn(x, batch_sigma(x, sigmas[i]))
        d = to_d(x, sigmas[i], denoised)
        report(callback, i, x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = denoise_fn(x_2, batch_sigma(x, sigmas[i + 1]))
            d_2 = to_d(x_2, sigmas[i + 1], denoised_2)
            x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_dpm_2(
    denoise_fn: DenoiseFn, x: torch.Tensor, sigmas: torch.Tensor, *, seed: int | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DPM-Solver-2 (k-diffusion's midpoint variant): a step through the geometric midpoint σ (two calls per step)."""
    for i in range(len(sigmas) - 1):
        denoised = denoise_fn(x, batch_sigma(x, sigmas[i]))
        d = to_d(x, sigmas[i], denoised)
        report(callback, i, x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigmas[i])
        else:
            x = _dpm_2_step(denoise_fn, x, d, sigmas[i], sigmas[i + 1])
    return x


def _dpm_2_step(denoise_fn, x, d, sigma, sigma_next):
    """One midpoint step σ → σ_next, the midpoint taken at the geometric mean of the two σ."""
    sigma_mid = sigma.log().lerp(sigma_next.log(), 0.5).exp()
    x_2 = x + d * (sigma_mid - sigma)
    denoised_2 = denoise_fn(x_2, batch_sigma(x, sigma_mid))
    d_2 = to_d(x_2, sigma_mid, denoised_2)
    return x + d_2 * (sigma_next - sigma)


@torch.no_grad()
def sample_dpm_2_ancestral(
    denoise_fn: DenoiseFn, x: torch.Tensor, sigmas: torch.Tensor, *, seed: int | None = None,
    callback: Callback | None = None, eta: float = 1.0, s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    """DPM-Solver-2 down to σ_down, then fresh noise up to σ_up."""
    noise_sampler = noise_sampler or default_noise_sampler(x, seed)
    for i in range(len(sigmas) - 1):
        denoised = denoise_fn(x, batch_sigma(x, sigmas[i]))
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        report(callback, i, x, sigmas[i], denoised)
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            x = _dpm_2_step(denoise_fn, x, d, sigmas[i], sigma_down)
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x
