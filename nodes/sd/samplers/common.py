"""Shared pieces of the samplers: the calling convention, the ancestral step split and the noise sources.

Calling convention (k-diffusion's): a sampler is `fn(denoise_fn, x, sigmas, *, seed=None, callback=None, …) -> x`.

* `x` is the noisy latent at `sigmas[0]` (model space: scaled latent, float32) and `sigmas` a 1-d float32 tensor
  on x's device, descending, usually ending in 0. The result is the latent at `sigmas[-1]`.
* `denoise_fn(x, sigma)` returns the denoised (x0) prediction for `x` at noise level `sigma`, a `[B]` tensor
  (one σ per batch item, all equal).
* `callback`, if given, is called once per step with `{"i": step index, "denoised": x0 prediction, "x": latent
  before the step, "sigma": sigmas[i]}`. It may raise to interrupt sampling (the exception propagates).
* `seed` seeds the extra noise of ancestral samplers (a `torch.Generator` on x's device, one draw of x's shape
  per step) and the Brownian tree of SDE samplers. None means the global RNG / a random tree.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch


class DenoiseFn(Protocol):
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor: ...


Callback = Callable[[dict[str, Any]], None]
NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE derivative dx/dσ = (x − x0)/σ."""
    return (x - denoised) / sigma.reshape(sigma.shape + (1,) * (x.dim() - sigma.dim()))


def ancestral_step(sigma_from: torch.Tensor, sigma_to: torch.Tensor, eta: float = 1.0):
    """Split a step σ_from → σ_to into a deterministic step to σ_down and fresh noise of size σ_up.

    σ_up = min(σ_to, η·sqrt(σ_to²(σ_from² − σ_to²)/σ_from²)), σ_down = sqrt(σ_to² − σ_up²).
    """
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def default_noise_sampler(x: torch.Tensor, seed: int | None = None) -> NoiseSampler:
    """Standard-normal draws of x's shape from a generator on x's device seeded with `seed`.

    Because the generator lives on the model device, ancestral results differ between CPU and CUDA (as in
    ComfyUI); the initial noise, drawn on the CPU, does not.
    """
    generator = None
    if seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(seed)

    def sample(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.size(), dtype=x.dtype, layout=x.layout, device=x.device, generator=generator)

    return sample


def batch_sigma(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """σ repeated once per batch item, the form `denoise_fn` receives."""
    return sigma * x.new_ones([x.shape[0]])


def report(callback: Callback | None, i: int, x: torch.Tensor, sigma: torch.Tensor, denoised) -> None:
    if callback is not None:
        callback({"i": i, "denoised": denoised, "x": x, "sigma": sigma})
