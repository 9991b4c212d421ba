"""Helpers for the sampling tests: tiny random-weight diffusers UNets, analytic denoisers, formula transcriptions."""

from __future__ import annotations

import math

import torch
from diffusers import UNet2DConditionModel

#: SD1-shaped UNet, tiny: two levels, cross-attention on the first.
TINY_UNET_CONFIG = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32,
    layers_per_block=1,
    attention_head_dim=8,
    norm_num_groups=32,
)

#: SDXL-shaped additions: pooled text embedding (32) + 6 size embeddings of 8 → 80 inputs.
TINY_SDXL_EXTRA = dict(
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=32 + 6 * 8,
)


def tiny_unet(seed: int = 0, **overrides) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**{**TINY_UNET_CONFIG, **overrides})
    # Default init leaves some layers at zero; perturb everything so every input path changes the output.
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return unet.eval()


def conditioning(seed: int, tokens: int = 77, dim: int = 32, pooled_dim: int | None = None, **extras):
    """A ComfyUI CONDITIONING value with random embeddings."""
    g = torch.Generator().manual_seed(seed)
    extras = dict(extras)
    if pooled_dim is not None:
        extras["pooled_output"] = torch.randn(1, pooled_dim, generator=g)
    return [[torch.randn(1, tokens, dim, generator=g), extras]]


class ConstantDenoiser:
    """D(x, σ) = a fixed target: every consistent sampler must land on it."""

    def __init__(self, target: torch.Tensor):
        self.target = target
        self.calls = 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.target.expand_as(x).clone()


class GaussianDenoiser:
    """The exact denoiser of data ~ N(mu, s²) per element: D(x, σ) = mu + s²/(s² + σ²)·(x − mu).

    The probability-flow ODE then has the closed form x(σ) = mu + sqrt((s² + σ²)/(s² + σ0²))·(x0 − mu).
    """

    def __init__(self, mu: float = 0.3, s: float = 0.5):
        self.mu, self.s = mu, s

    def __call__(self, x, sigma):
        sigma = sigma.reshape(-1, *([1] * (x.dim() - 1)))
        return self.mu + self.s**2 / (self.s**2 + sigma**2) * (x - self.mu)

    def exact(self, x0: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
        factor = ((self.s**2 + sigma_to**2) / (self.s**2 + sigma_from**2)) ** 0.5
        return self.mu + factor * (x0 - self.mu)


def nonlinear_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A smooth, σ-dependent, nonlinear x0 prediction, so that each sampler takes a different path."""
    s = sigma.reshape(-1, *([1] * (x.dim() - 1)))
    return 0.8 * torch.tanh(x / (1.0 + s)) + 0.05 * torch.sin(3.0 * s) - 0.1


# Float64 transcriptions of the published sampler formulas (k-diffusion / Karras et al. / DPM-Solver++), written
# independently of nodes/sd/samplers: `noise` is the list of standard-normal draws the sampler consumes in order.


def denoise64(x, sigma):
    return nonlinear_denoiser(x, torch.as_tensor(sigma, dtype=torch.float64).reshape(1))


def ref_euler(x, s, noise):
    for i in range(len(s) - 1):
        d = (x - denoise64(x, s[i])) / s[i]
        x = x + d * (s[i + 1] - s[i])
    return x


def ref_heun(x, s, noise):
    for i in range(len(s) - 1):
        d = (x - denoise64(x, s[i])) / s[i]
        x_2 = x + d * (s[i + 1] - s[i])
        if s[i + 1] == 0:
            x = x_2
        else:
            d_2 = (x_2 - denoise64(x_2, s[i + 1])) / s[i + 1]
            x = x + (d + d_2) / 2 * (s[i + 1] - s[i])
    return x


def ref_dpm_2(x, s, noise, ancestral=False):
    for i in range(len(s) - 1):
        d = (x - denoise64(x, s[i])) / s[i]
        up = math.sqrt(s[i + 1] ** 2 * (s[i] ** 2 - s[i + 1] ** 2) / s[i] ** 2) if ancestral else 0.0
        down = math.sqrt(s[i + 1] ** 2 - up**2)
        if down == 0:
            x = x + d * (down - s[i])
            continue
        mid = math.exp((math.log(s[i]) + math.log(down)) / 2)
        x_2 = x + d * (mid - s[i])
        x = x + (x_2 - denoise64(x_2, mid)) / mid * (down - s[i])
        if ancestral:
            x = x + noise.pop(0) * up
    return x


def ref_euler_ancestral(x, s, noise):
    for i in range(len(s) - 1):
        den = denoise64(x, s[i])
        up = math.sqrt(s[i + 1] ** 2 * (s[i] ** 2 - s[i + 1] ** 2) / s[i] ** 2)
        down = math.sqrt(s[i + 1] ** 2 - up**2)
        x = den if down == 0 else x + (x - den) / s[i] * (down - s[i]) + noise.pop(0) * up
    return x


def ref_dpmpp_2m(x, s, noise):
    old = None
    for i in range(len(s) - 1):
        den = denoise64(x, s[i])
        if s[i + 1] == 0:
            x, old = den, den
            continue
        h = math.log(s[i] / s[i + 1])
        if old is None:
            d = den
        else:
            r = math.log(s[i - 1] / s[i]) / h
            d = (1 + 1 / (2 * r)) * den - 1 / (2 * r) * old
        x = s[i + 1] / s[i] * x - math.expm1(-h) * d
        old = den
    return x


def ref_dpmpp_2s_ancestral(x, s, noise):
    for i in range(len(s) - 1):
        den = denoise64(x, s[i])
        up = math.sqrt(s[i + 1] ** 2 * (s[i] ** 2 - s[i + 1] ** 2) / s[i] ** 2)
        down = math.sqrt(s[i + 1] ** 2 - up**2)
        if down == 0:
            x = den
        else:
            h = math.log(s[i] / down)
            mid = s[i] * math.exp(-h / 2)
            x_2 = mid / s[i] * x - math.expm1(-h / 2) * den
            x = down / s[i] * x - math.expm1(-h) * denoise64(x_2, mid)
        if s[i + 1] > 0:
            x = x + noise.pop(0) * up
    return x


def ref_dpmpp_sde(x, s, noise):
    """DPM-Solver++(2S) SDE, r = 1/2, η = 1, from the paper's ancestral form."""
    for i in range(len(s) - 1):
        den = denoise64(x, s[i])
        if s[i + 1] == 0:
            x = den
            continue
        mid = math.sqrt(s[i] * s[i + 1])
        up = math.sqrt(mid**2 * (s[i] ** 2 - mid**2) / s[i] ** 2)
        down = math.sqrt(mid**2 - up**2)
        x_2 = down / s[i] * x - math.expm1(-math.log(s[i] / down)) * den + noise.pop(0) * up
        den_2 = denoise64(x_2, mid)
        up = math.sqrt(s[i + 1] ** 2 * (s[i] ** 2 - s[i + 1] ** 2) / s[i] ** 2)
        down = math.sqrt(s[i + 1] ** 2 - up**2)
        x = down / s[i] * x - math.expm1(-math.log(s[i] / down)) * den_2 + noise.pop(0) * up
    return x


def ref_dpmpp_2m_sde(x, s, noise):
    """DPM-Solver++(2M) SDE, η = 1, midpoint correction."""
    old, h_last = None, None
    for i in range(len(s) - 1):
        den = denoise64(x, s[i])
        if s[i + 1] == 0:
            x = den
        else:
            h = math.log(s[i] / s[i + 1])
            x = s[i + 1] / s[i] * math.exp(-h) * x - math.expm1(-2 * h) * den
            if old is not None:
                x = x - 0.5 * math.expm1(-2 * h) * (h / h_last) * (den - old)
            x = x + noise.pop(0) * s[i + 1] * math.sqrt(-math.expm1(-2 * h))
            h_last = h
        old = den
    return x


REFERENCES = {
    "euler": ref_euler, "heun": ref_heun, "dpm_2": ref_dpm_2, "euler_ancestral": ref_euler_ancestral,
    "dpm_2_ancestral": lambda x, s, n: ref_dpm_2(x, s, n, ancestral=True), "dpmpp_2m": ref_dpmpp_2m,
    "dpmpp_2s_ancestral": ref_dpmpp_2s_ancestral, "dpmpp_sde": ref_dpmpp_sde, "dpmpp_2m_sde": ref_dpmpp_2m_sde,
}
