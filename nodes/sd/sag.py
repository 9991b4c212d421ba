"""Self-Attention Guidance (Hong et al. 2023, "Improving Sample Quality of Diffusion Models Using Self-Attention
Guidance"), as ComfyUI applies it to SD UNets: a post-CFG function plus a UNet patch (nodes/sd/model_options.py).

At each model evaluation, after CFG:
1. the self-attention probabilities of the UNet's middle block (first transformer block, `attn1`) are taken from
   the negative's pass at x: A [B·heads, n, n], n the middle block's pixel count;
2. mask = (mean over heads of A, summed over the queries) > 1 — the pixels that draw more than their share of
   attention — laid out on the middle block's grid (latent size ÷ r, r the power of two ComfyUI derives from n)
   and upsampled (nearest) to the latent;
3. degraded = the negative's x0 Gaussian-blurred (9×9 kernel, σ = blur_sigma, reflect padding) where the mask is 1;
4. sag = the negative's x0 at the latent degraded + (x − x0_negative), same σ;
5. result = CFG result + (degraded − sag)·scale.
Latents of 4 pixels or fewer on a side are returned unchanged (too small for the blur's padding), as in ComfyUI.

One difference in cost, not in result: ComfyUI records the attention during the CFG batch; here the patch records
it during a pass of the negative alone at x (step 1), so SAG costs two extra UNet passes per step instead of one.
The recording hooks exist only while the patch is attached.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F

from nodes.sd.model_options import CfgArgs

BLUR_KERNEL = 9
ATTENTION_THRESHOLD = 1.0


def gaussian_blur(x: torch.Tensor, sigma: float, kernel_size: int = BLUR_KERNEL) -> torch.Tensor:
    """x ([B, C, H, W]) convolved with a normalised kernel_size² Gaussian, reflect-padded; σ 0 leaves x as is."""
    if sigma <= 0:
        return x
    half = (kernel_size - 1) / 2
    taps = torch.exp(-0.5 * (torch.linspace(-half, half, kernel_size) / sigma) ** 2)
    taps = (taps / taps.sum()).to(x.device, x.dtype)
    kernel = (taps[:, None] * taps[None, :]).expand(x.shape[1], 1, kernel_size, kernel_size)
    pad = kernel_size // 2
    return F.conv2d(F.pad(x, [pad] * 4, mode="reflect"), kernel, groups=x.shape[1])


def blur_map(x0: torch.Tensor, attention: torch.Tensor, sigma: float) -> torch.Tensor:
    """Steps 2–3: x0 blurred where the middle block's self-attention (`attention` [B·heads, n, n]) concentrates."""
    batch, _, height, width = x0.shape
    n = attention.shape[1]
    mask = attention.reshape(batch, -1, n, n).mean(1).sum(1) > ATTENTION_THRESHOLD
    ratio = 2 ** (math.ceil(math.sqrt(height * width / n)) - 1).bit_length()
    mask = mask.reshape(batch, 1, math.ceil(height / ratio), math.ceil(width / ratio)).to(x0.dtype)
    mask = F.interpolate(mask, (height, width))
    return gaussian_blur(x0, sigma) * mask + x0 * (1 - mask)


def middle_self_attention(unet: torch.nn.Module) -> torch.nn.Module:
    try:
        return unet.mid_block.attentions[0].transformer_blocks[0].attn1
    except (AttributeError, IndexError):
        raise ValueError("Self-Attention Guidance needs a UNet with a transformer in its middle block") from None


@dataclass(frozen=True, eq=False)  # holds the attention recorded during a sampling run
class SelfAttentionGuidance:
    """Both a `UNetPatch` (records the middle block's self-attention) and a post-CFG function."""

    scale: float
    blur_sigma: float
    _recorded: dict = field(default_factory=dict, repr=False)

    @contextmanager
    def attach(self, unet: torch.nn.Module) -> Iterator[None]:
        attn = middle_self_attention(unet)

        def keep_query(module, args, output):
            self._recorded["query"] = output

        def record(module, args, output):
            query = self._recorded.pop("query")
            batch, _, inner = query.shape
            heads = attn.heads
            q, k = (t.reshape(batch, -1, heads, inner // heads).transpose(1, 2) for t in (query, output))
            # [N, heads, n, n]; N = batch × the conditioning entries in this call
            self._recorded["attention"] = (q.float() @ k.float().transpose(-1, -2) * attn.scale).softmax(dim=-1)

        hooks = [attn.to_q.register_forward_hook(keep_query), attn.to_k.register_forward_hook(record)]
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()
            self._recorded.clear()

    def __call__(self, args: CfgArgs, denoised: torch.Tensor) -> torch.Tensor:
        if min(denoised.shape[2:]) <= 4:
            return denoised
        self._recorded.pop("attention", None)
        args.predict_negative(args.x)  # records the attention (step 1); its x0 is args.uncond_denoised
        if "attention" not in self._recorded:
            raise RuntimeError("Self-Attention Guidance recorded no attention (is there a negative conditioning?)")
        # the first entry's batch, as ComfyUI takes the first negative slice of the call
        attention = self._recorded.pop("attention")[: args.x.shape[0]].flatten(0, 1)
        degraded = blur_map(args.uncond_denoised, attention, self.blur_sigma)
        sag = args.predict_negative(degraded + args.x - args.uncond_denoised)
        return denoised + (degraded - sag) * self.scale
