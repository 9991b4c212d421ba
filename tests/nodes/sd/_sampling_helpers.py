"""Helpers for the sampling tests: tiny random-weight diffusers UNets and analytic denoisers."""

from __future__ import annotations

import contextlib

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


@contextlib.contextmanager
def one_torch_thread():
    """Tiny models run faster on one thread than fighting over two shared cores; restore the setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
