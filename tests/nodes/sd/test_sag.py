"""Self-Attention Guidance on the tiny UNet against a hand computation of one step: the middle block's attention
probabilities from its q/k projections, the mask rule, a reflect-padded Gaussian blur written as sums, and the
extra pass on the degraded latent."""
import math

import pytest
import torch

from nodes.sd.denoiser import CFGDenoiser, UNetModel, prepare_conditioning
from nodes.sd.model_options import ModelOptions
from nodes.sd.sag import SelfAttentionGuidance, gaussian_blur
from tests.nodes.sd._sampling_helpers import conditioning, tiny_unet
from tests.nodes.sd.test_denoiser import direct

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blur_by_hand(x: torch.Tensor, sigma: float, size: int = 9) -> torch.Tensor:
    half = size // 2
    w = torch.tensor([math.exp(-0.5 * (i / sigma) ** 2) for i in range(-half, half + 1)])
    w = w / w.sum()
    height, width = x.shape[-2:]
    reflect = lambda i, n: -i if i < 0 else (2 * (n - 1) - i if i >= n else i)
    out = torch.zeros_like(x)
    for i in range(height):
        for j in range(width):
            for a in range(size):
                for b in range(size):
                    out[..., i, j] += w[a] * w[b] * x[..., reflect(i + a - half, height), reflect(j + b - half, width)]
    return out


def test_gaussian_blur_is_the_reflect_padded_kernel():
    x = torch.randn(1, 2, 6, 7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gaussian_blur(x, 1.7), blur_by_hand(x, 1.7), rtol=1e-5, atol=1e-5)
    assert torch.equal(gaussian_blur(x, 0.0), x)


def test_one_sag_step_by_hand():
    unet = tiny_unet(seed=1)
    pos, neg = conditioning(1), conditioning(2)
    prepare = lambda c, **kw: prepare_conditioning(c, unet.config, batch_size=1, latent_hw=(8, 8), **kw)
    sag = SelfAttentionGuidance(scale=0.8, blur_sigma=1.5)
    options = ModelOptions(post_cfg_functions=(sag,), disable_cfg1_optimization=True)
    denoiser = CFGDenoiser(UNetModel(unet), prepare(pos), prepare(neg, negative=True), 5.0, options)
    x, sigma = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * 2, 2.0
    with sag.attach(unet):
        got = denoiser(x, torch.tensor([sigma]))

    attn = unet.mid_block.attentions[0].transformer_blocks[0].attn1
    inputs = []
    hook = attn.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    c, u = direct(unet, x, sigma, pos[0][0]), direct(unet, x, sigma, neg[0][0])
    hook.remove()
    hidden = inputs[1]  # the negative's pass
    with torch.no_grad():
        q, k = attn.to_q(hidden), attn.to_k(hidden)
    heads, d = attn.heads, q.shape[-1] // attn.heads
    q, k = (t.reshape(1, 16, heads, d).permute(0, 2, 1, 3) for t in (q, k))
    probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)  # [1, heads, 16, 16]: 4×4 middle block
    mask = (probs.mean(1).sum(1) > 1.0).float().reshape(1, 1, 4, 4)
    assert 0 < mask.sum() < 16  # both kinds of pixel occur
    mask = mask.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    degraded = blur_by_hand(u, 1.5) * mask + u * (1 - mask)
    extra = direct(unet, degraded + x - u, sigma, neg[0][0])
    expected = u + 5.0 * (c - u) + (degraded - extra) * 0.8
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not any(module._forward_hooks for module in unet.modules())


def test_small_latents_and_cfg_one():
    unet = tiny_unet(seed=1)
    pos, neg = conditioning(1), conditioning(2)
    prepare = lambda c, hw, **kw: prepare_conditioning(c, unet.config, batch_size=1, latent_hw=hw, **kw)
    sag = SelfAttentionGuidance(scale=0.8, blur_sigma=1.5)
    options = ModelOptions(post_cfg_functions=(sag,), disable_cfg1_optimization=True)
    x = torch.randn(1, 4, 4, 4)
    small = CFGDenoiser(UNetModel(unet), prepare(pos, (4, 4)), prepare(neg, (4, 4), negative=True), 5.0, options)
    with sag.attach(unet):
        got = small(x, torch.tensor([2.0]))
    c, u = direct(unet, x, 2.0, pos[0][0]), direct(unet, x, 2.0, neg[0][0])
    torch.testing.assert_close(got, u + 5.0 * (c - u), rtol=1e-4, atol=1e-4)  # 4×4: SAG leaves it
    # cfg 1: the negative is still evaluated (SAG needs it), and the result is the positive plus SAG's term
    x = torch.randn(1, 4, 8, 8)
    one = CFGDenoiser(UNetModel(unet), prepare(pos, (8, 8)), prepare(neg, (8, 8), negative=True), 1.0, options)
    with sag.attach(unet):
        got = one(x, torch.tensor([2.0]))
    assert (got - direct(unet, x, 2.0, pos[0][0])).abs().max() > 1e-4
