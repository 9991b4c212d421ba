"""UniPC (Zhao et al. 2023): multistep predictor–corrector, data prediction, variants bh1 (`uni_pc`) and bh2.

ComfyUI runs the original UniPC implementation on the variance-preserving view of the σ schedule, and so does
this module, so that the float32 arithmetic follows the same path:

* VP quantities of a VE noise level σ: log α = ½·log(1/(σ² + 1)), α = e^{log α}, σ_VP = sqrt(1 − α²),
  λ = log α − log σ_VP. The latent is divided by sqrt(1 + σ_0²) on entry and by α(σ_last) on exit.
* A final σ of 0 is replaced by 0.001 (the solver needs a finite λ); the result therefore keeps a residual noise
  level of 0.001, as in ComfyUI.
* The data prediction goes through ε: ε = (x_VE − D(x_VE, σ))/σ, x0 = (x_VP − σ_VP·ε)/α.
* order = min(3, len(sigmas) − 2), warm-up with orders 1, 2, lower orders on the last steps, corrector on every
  step but the last (one model call per step). One step (two sigmas) runs a single first-order predictor
  (ComfyUI fails there).

Per-step callback: i = step index, "x" the VE latent before the step, "denoised" the newest x0 prediction.
"""

from __future__ import annotations

import torch

from .common import Callback, DenoiseFn, report


def _log_alpha(sigma):
    return 0.5 * torch.log(1 / ((sigma * sigma) + 1))


def _alpha(sigma):
    return torch.exp(_log_alpha(sigma))


def _std(sigma):
    return torch.sqrt(1.0 - torch.exp(2.0 * _log_alpha(sigma)))


def _lambda(sigma):
    log_alpha = _log_alpha(sigma)
    return log_alpha - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_alpha))


def _expand(v: torch.Tensor, dims: int) -> torch.Tensor:
    return v[(...,) + (None,) * (dims - 1)]


def _data_prediction(denoise_fn: DenoiseFn, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x0 from the VP latent at VE noise level t ([B]), through the ε the model implies."""
    sigma = t.view(t.shape[:1] + (1,) * (x.dim() - 1))
    x_ve = x * ((sigma**2 + 1.0) ** 0.5)
    eps = (x_ve - denoise_fn(x_ve, t)) / sigma
    return (x - _expand(_std(t), x.dim()) * eps) / _expand(_alpha(t), x.dim())


def _coefficients(rks: torch.Tensor, hh: torch.Tensor, order: int, variant: str):
    """UniPC's linear system: R[k, j] = r_j^k and b_k = k!·φ_{k+1}(hh)/B(hh)."""
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    factorial, rows, b = 1, [], []
    for i in range(1, order + 1):
        rows.append(torch.pow(rks, i - 1))
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    return torch.stack(rows), torch.stack(b), h_phi_1, b_h


def _update(denoise_fn, x, model_prev, t_prev, t, order, use_corrector, variant):
    """One predictor(–corrector) step from t_prev[-1] to t; returns (x_t, x0 at x_t or None)."""
    dims = x.dim()
    lambda_prev_0, lambda_t = _lambda(t_prev[-1]), _lambda(t)
    model_prev_0 = model_prev[-1]
    sigma_prev_0, sigma_t = _std(t_prev[-1]), _std(t)
    alpha_t = torch.exp(_log_alpha(t))
    h = lambda_t - lambda_prev_0

    rks, d1s = [], []
    for i in range(1, order):
        rk = ((_lambda(t_prev[-(i + 1)]) - lambda_prev_0) / h)[0]
        rks.append(rk)
        d1s.append((model_prev[-(i + 1)] - model_prev_0) / rk)
    rks = torch.stack(rks + [torch.ones_like(h[0])])
    big_r, b, h_phi_1, b_h = _coefficients(rks, -h[0], order, variant)

    d1s = torch.stack(d1s, dim=1) if d1s else None
    x_t_ = _expand(sigma_t / sigma_prev_0, dims) * x - _expand(alpha_t * h_phi_1, dims) * model_prev_0
    pred_res = 0
    if d1s is not None:
        rhos_p = b.new_tensor([0.5]) if order == 2 else torch.linalg.solve(big_r[:-1, :-1], b[:-1])
        pred_res = torch.einsum("k,bk...->b...", rhos_p, d1s)
    x_t = x_t_ - _expand(alpha_t * b_h, dims) * pred_res
    if not use_corrector:
        return x_t, None

    rhos_c = b.new_tensor([0.5]) if order == 1 else torch.linalg.solve(big_r, b)
    model_t = _data_prediction(denoise_fn, x_t, t)
    corr_res = torch.einsum("k,bk...->b...", rhos_c[:-1], d1s) if d1s is not None else 0
    x_t = x_t_ - _expand(alpha_t * b_h, dims) * (corr_res + rhos_c[-1] * (model_t - model_prev_0))
    return x_t, model_t


@torch.no_grad()
def sample_unipc(
    denoise_fn: DenoiseFn, x: torch.Tensor, sigmas: torch.Tensor, *, seed: int | None = None,
    callback: Callback | None = None, variant: str = "bh1",
) -> torch.Tensor:
    """UniPC (bh1): predictor-corrector multistep in log-σ, one model call per step."""
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"variant must be 'bh1' or 'bh2', got {variant!r}")
    if len(sigmas) <= 1:
        return x
    timesteps = sigmas.clone()
    if timesteps[-1] == 0:
        timesteps[-1] = 0.001
    steps = len(timesteps) - 1
    order = max(min(3, len(timesteps) - 2), 1)
    x = x / torch.sqrt(1.0 + timesteps[0] ** 2.0)

    vec_t = timesteps[0].expand(x.shape[0])
    model_prev, t_prev = [_data_prediction(denoise_fn, x, vec_t)], [vec_t]
    for step in range(1, steps + 1):
        vec_t = timesteps[step].expand(x.shape[0])
        step_order = min(step, order, steps + 1 - step)
        if callback is not None:
            report(callback, step - 1, x / _alpha(timesteps[step - 1]), sigmas[step - 1], model_prev[-1])
        x, model_x = _update(denoise_fn, x, model_prev, t_prev, vec_t, step_order, step < steps, variant)
        if step < steps:
            model_prev = (model_prev + [model_x])[-order:]
            t_prev = (t_prev + [vec_t])[-order:]
    return x / _alpha(timesteps[-1])


def sample_unipc_bh2(denoise_fn, x, sigmas, *, seed=None, callback=None):
    """UniPC with the bh2 variant of its B(h) coefficient."""
    return sample_unipc(denoise_fn, x, sigmas, seed=seed, callback=callback, variant="bh2")
