"""DPM-Solver++ samplers (Lu et al. 2022) in k-diffusion's σ parameterisation, for eps and v models.

Time is λ = −log σ (half the log-SNR of the VE latent), h = λ_next − λ. Names are ComfyUI's:

* `dpmpp_2m`: multistep second order; first order on the first step and into σ = 0.
* `dpmpp_2s_ancestral`: single-step second order towards σ_down, then + ε·σ_up (seeded device generator).
* `dpmpp_sde`: single-step second order SDE with midpoint r = 1/2 and η = 1, Brownian-tree noise.
* `dpmpp_2m_sde`: multistep second order SDE (midpoint correction), η = 1, Brownian-tree noise.
* `dpmpp_3m_sde`: multistep third order SDE, η = 1, Brownian-tree noise.

The SDE samplers step into σ = 0 by returning the denoised prediction. Their Brownian tree spans
[min nonzero σ, max σ], is seeded with the KSampler seed and lives on the CPU unless `cpu_tree=False`
(the `_gpu` variants). The α_t = σ_t·e^{λ_t} factors of the current k-diffusion formulation are kept (they are
1 up to rounding for eps/v models) so that the float32 arithmetic follows it.
"""

from __future__ import annotations

import torch

from .brownian import BrownianTreeNoiseSampler
from .common import Callback, DenoiseFn, NoiseSampler, ancestral_step, batch_sigma, default_noise_sampler, report, to_d


def _lambda(sigma: torch.Tensor) -> torch.Tensor:
    return sigma.log().neg()


def _sigma(lam: torch.Tensor) -> torch.Tensor:
    return lam.neg().exp()


@torch.no_grad()
def sample_dpmpp_2m(
    denoise_fn: DenoiseFn, x: torch.Tensor, sigmas: torch.Tensor, *, seed: int | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M): second-order multistep in log-σ, reusing the previous step's denoised (one call per step)."""
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = denoise_fn(x, batch_sigma(x, sigmas[i]))
        report(callback, i, x, sigmas[i], denoised)
        t, t_next = _lambda(sigmas[i]), _lambda(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - _lambda(sigmas[i - 1])) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral(
    denoise_fn: DenoiseFn, x: torch.Tensor, sigmas: torch.Tensor, *, seed: int | None = None,
    callback: Callback | None = None, eta: float = 1.0, s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2S) single-step second order down to σ_down, then fresh noise up to σ_up."""
    noise_sampler = noise_sampler or default_noise_sampler(x, seed)
    for i in range(len(sigmas) - 1):
        denoised = denoise_fn(x, batch_sigma(x, sigmas[i]))
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        report(callback, i, x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = _lambda(sigmas[i]), _lambda(sigma_down)
            h = t_next - t
            s = t + 0.5 * h
            x_2 = (_sigma(s) / _sigma(t)) * x - (-h * 0.5).expm1() * denoised
            denoised_2 = denoise_fn(x_2, batch_sigma(x, _sigma(s)))
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def _brownian(x, sigmas, seed, cpu_tree):
    positive = sigmas[sigmas > 0]
    return BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seed=seed, cpu=cpu_tree)


@torch.no_grad()
def sample_dpmpp_sde(
    denoise_fn: DenoiseFn, x: torch.Tensor, sigmas: torch.Tensor, *, seed: int | None = None,
    callback: Callback | None = None, eta: float = 1.0, s_noise: float = 1.0, r: float = 0.5,
    noise_sampler: NoiseSampler | None = None, cpu_tree: bool = True,
) -> torch.Tensor:
    """DPM-Solver++ SDE: a second-order stochastic step with Brownian-tree noise (two calls per step)."""
    if len(sigmas) <= 1:
        return x
    noise_sampler = noise_sampler or _brownian(x, sigmas, seed, cpu_tree)
    for i in range(len(sigmas) - 1):
        denoised = denoise_fn(x, batch_sigma(x, sigmas[i]))
        report(callback, i, x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = _lambda(sigmas[i]), _lambda(sigmas[i + 1])
        h = lambda_t - lambda_s
        lambda_s_1 = lambda_s + r * h
        fac = 1 / (2 * r)
        sigma_s_1 = _sigma(lambda_s_1)
        alpha_s = sigmas[i] * lambda_s.exp()
        alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
        alpha_t = sigmas[i + 1] * lambda_t.exp()
        noisy = eta > 0 and s_noise > 0

        # Stage 1: to the intermediate point λ_s + r·h, ancestrally.
        sd, su = ancestral_step(_sigma(lambda_s), _sigma(lambda_s_1), eta)
        h_ = _lambda(sd) - lambda_s
        x_2 = (alpha_s_1 / alpha_s) * (-h_).exp() * x - alpha_s_1 * (-h_).expm1() * denoised
        if noisy:
            x_2 = x_2 + alpha_s_1 * noise_sampler(sigmas[i], sigma_s_1) * s_noise * su
        denoised_2 = denoise_fn(x_2, batch_sigma(x, sigma_s_1))

        # Stage 2: the full step with the blended prediction, ancestrally.
        sd, su = ancestral_step(_sigma(lambda_s), _sigma(lambda_t), eta)
        h_ = _lambda(sd) - lambda_s
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (alpha_t / alpha_s) * (-h_).exp() * x - alpha_t * (-h_).expm1() * denoised_d
        if noisy:
            x = x + alpha_t * noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * su
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(
    denoise_fn: DenoiseFn, x: torch.Tensor, sigmas: torch.Tensor, *, seed: int | None = None,
    callback: Callback | None = None, eta: float = 1.0, s_noise: float = 1.0, solver_type: str = "midpoint",
    noise_sampler: NoiseSampler | None = None, cpu_tree: bool = True,
) -> torch.Tensor:
    """DPM-Solver++(2M) SDE: the multistep solver with Brownian-tree noise (`solver_type` midpoint or heun)."""
    if len(sigmas) <= 1:
        return x
    if solver_type not in ("heun", "midpoint"):
        raise ValueError(f"solver_type must be 'heun' or 'midpoint', got {solver_type!r}")
    noise_sampler = noise_sampler or _brownian(x, sigmas, seed, cpu_tree)
    old_denoised, h, h_last = None, None, None
    for i in range(len(sigmas) - 1):
        denoised = denoise_fn(x, batch_sigma(x, sigmas[i]))
        report(callback, i, x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lambda_s, lambda_t = _lambda(sigmas[i]), _lambda(sigmas[i + 1])
            h = lambda_t - lambda_s
            h_eta = h * (eta + 1)
            alpha_t = sigmas[i + 1] * lambda_t.exp()
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    phi = (-h_eta).expm1().neg() / (-h_eta) + 1
                    x = x + alpha_t * phi * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * alpha_t * (-h_eta).expm1().neg() * (1 / r) * (denoised - old_denoised)
            if eta > 0 and s_noise > 0:
                noise = noise_sampler(sigmas[i], sigmas[i + 1])
                x = x + noise * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        old_denoised = denoised
        h_last = h
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde(
    denoise_fn: DenoiseFn, x: torch.Tensor, sigmas: torch.Tensor, *, seed: int | None = None,
    callback: Callback | None = None, eta: float = 1.0, s_noise: float = 1.0,
    noise_sampler: NoiseSampler | None = None, cpu_tree: bool = True,
) -> torch.Tensor:
    """DPM-Solver++(3M) SDE: third-order multistep with Brownian-tree noise."""
    if len(sigmas) <= 1:
        return x
    noise_sampler = noise_sampler or _brownian(x, sigmas, seed, cpu_tree)
    denoised_1, denoised_2, h, h_1, h_2 = None, None, None, None, None
    for i in range(len(sigmas) - 1):
        denoised = denoise_fn(x, batch_sigma(x, sigmas[i]))
        report(callback, i, x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lambda_s, lambda_t = _lambda(sigmas[i]), _lambda(sigmas[i + 1])
            h = lambda_t - lambda_s
            h_eta = h * (eta + 1)
            alpha_t = sigmas[i + 1] * lambda_t.exp()
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            x = _3m_correct(x, alpha_t, h_eta, (denoised, denoised_1, denoised_2), (h, h_1, h_2))
            if eta > 0 and s_noise > 0:
                noise = noise_sampler(sigmas[i], sigmas[i + 1])
                x = x + noise * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


def _3m_correct(x, alpha_t, h_eta, predictions, steps):
    """Add the second/third order terms of DPM-Solver++(3M) from up to two previous predictions."""
    (denoised, denoised_1, denoised_2), (h, h_1, h_2) = predictions, steps
    phi_2 = h_eta.neg().expm1() / h_eta + 1
    if h_2 is not None:
        r0, r1 = h_1 / h, h_2 / h
        d1_0 = (denoised - denoised_1) / r0
        d1_1 = (denoised_1 - denoised_2) / r1
        d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        phi_3 = phi_2 / h_eta - 0.5
        return x + (alpha_t * phi_2) * d1 - (alpha_t * phi_3) * d2
    if h_1 is not None:
        d = (denoised - denoised_1) / (h_1 / h)
        return x + (alpha_t * phi_2) * d
    return x
