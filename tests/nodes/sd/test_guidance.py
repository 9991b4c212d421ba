"""Guidance functions against their references: RescaleCFG against diffusers' `rescale_noise_cfg` (applied in v
space, where ComfyUI applies it), PerpNeg against the paper's formula written here, on the tiny UNet."""
import math

import pytest
import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

from nodes.sd.denoiser import CFGDenoiser, UNetModel, prepare_conditioning
from nodes.sd.guidance import PerpNeg, RescaleCFG
from nodes.sd.model_options import CfgArgs, ModelOptions
from tests.nodes.sd._sampling_helpers import conditioning, tiny_unet
from tests.nodes.sd.test_denoiser import direct

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def to_v(x, x0, sigma):
    """v = α·ε − s·x0 for x = x0 + σ·ε, with α = 1/sqrt(σ² + 1), s = σ/sqrt(σ² + 1) (the DDPM scaling of x)."""
    alpha, s = 1 / (sigma**2 + 1) ** 0.5, sigma / (sigma**2 + 1) ** 0.5
    return alpha * (x - x0) / sigma - s * x0


def from_v(x, v, sigma):
    alpha, s = 1 / (sigma**2 + 1) ** 0.5, sigma / (sigma**2 + 1) ** 0.5
    return alpha * (alpha * x) - s * v


def no_predict(conditioning):
    raise AssertionError("RescaleCFG needs no extra model pass")


@pytest.mark.parametrize("multiplier", [0.0, 0.7, 1.0])
def test_rescale_cfg_is_diffusers_rescale_in_v_space(multiplier):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 6, 6, generator=g) * 3
    cond, uncond = torch.randn(2, 2, 4, 6, 6, generator=g)
    sigma = torch.tensor([3.0, 0.5])
    view = sigma.reshape(2, 1, 1, 1)
    v_cond, v_uncond = to_v(x, cond, view), to_v(x, uncond, view)
    expected = from_v(x, rescale_noise_cfg(v_uncond + 7.0 * (v_cond - v_uncond), v_cond, multiplier), view)
    got = RescaleCFG(multiplier)(CfgArgs(x, sigma, cond, uncond, 7.0, no_predict, no_predict))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    if multiplier == 0.0:
        torch.testing.assert_close(got, uncond + 7.0 * (cond - uncond), rtol=1e-5, atol=1e-5)


def test_perp_neg_on_the_tiny_unet():
    unet = tiny_unet(seed=1)
    pos, neg, empty = conditioning(1), conditioning(2), conditioning(3)
    prepare = lambda c, **kw: prepare_conditioning(c, unet.config, batch_size=1, latent_hw=(8, 8), **kw)
    denoiser = CFGDenoiser(UNetModel(unet), prepare(pos), prepare(neg, negative=True), 5.0,
                           ModelOptions(cfg_function=PerpNeg(empty, neg_scale=0.8)), lambda c: prepare(c, negative=True))
    x, sigma = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4)) * 2, 2.0
    got = denoiser(x, torch.tensor([sigma]))

    e, c, u = (direct(unet, x, sigma, entry[0][0]) for entry in (empty, pos, neg))
    p, n = (c - e).flatten(), (u - e).flatten()
    perp = n - (torch.dot(n, p) / torch.dot(p, p)) * p
    assert abs(float(torch.dot(perp, p))) < 1e-3 * float(p.norm() * n.norm())  # perpendicular indeed
    expected = e + 5.0 * ((c - e) - 0.8 * perp.reshape(e.shape))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
