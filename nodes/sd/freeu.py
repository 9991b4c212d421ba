"""FreeU (Si et al. 2023, "FreeU: Free Lunch in Diffusion U-Net") as a UNet patch (nodes/sd/model_options.py).

Where the decoder joins its features h with a skip connection (each up-block resnet of a diffusers UNet takes
cat(h, skip)), FreeU amplifies the first half of h's channels ("backbone") by b and damps the skip's lowest
spatial frequencies (the centred 2×2 box of its shifted 2-D FFT) by s. Which joins, as ComfyUI decides: those whose
h has 4·c channels get (b1, s1) and those with 2·c get (b2, s2), c being the UNet's first block width (SD1/SDXL:
h of 1280 and 640 channels) — by channel count, not by block index as diffusers' `enable_freeu` does, so the first
join of the next block is patched too.

* FreeU: h[:, :C/2] ← h[:, :C/2]·b.
* FreeU_V2 (`adaptive`): h[:, :C/2] ← h[:, :C/2]·((b − 1)·m + 1), m the channel mean of h min-max normalised per
  image (the paper's structure-related scaling).

The hooks (forward pre-hooks on those resnets) exist only while `attach` is entered.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Iterator

import torch


def fourier_filter(x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
    """x ([B, C, H, W]) with the frequencies within `threshold` of the centre of its shifted FFT scaled by `scale`."""
    freq = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    height, width = freq.shape[-2:]
    mask = torch.ones((height, width), device=x.device)
    rows = slice(height // 2 - threshold, height // 2 + threshold)
    mask[rows, width // 2 - threshold : width // 2 + threshold] = scale
    freq = torch.fft.ifftshift(freq * mask, dim=(-2, -1))
    return torch.fft.ifftn(freq, dim=(-2, -1)).real.to(x.dtype)


def skip_joins(unet: torch.nn.Module) -> list[tuple[torch.nn.Module, int]]:
    """Each up-block resnet of a diffusers UNet with the channel count of the h it gets ahead of its skip."""
    joins, channels = [], unet.config.block_out_channels[-1]  # the middle block keeps the last width
    for block in unet.up_blocks:
        for resnet in block.resnets:
            joins.append((resnet, channels))
            channels = resnet.out_channels
    return joins


@dataclass(frozen=True)
class FreeU:
    """A `UNetPatch`: FreeU (or FreeU_V2 with `adaptive`) with backbone factors b1, b2 and skip factors s1, s2."""

    b1: float
    b2: float
    s1: float
    s2: float
    adaptive: bool = False

    def join(self, h: torch.Tensor, skip: torch.Tensor, b: float, s: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One join's (h, skip) after FreeU with factors b and s."""
        half = h.shape[1] // 2
        factor = b
        if self.adaptive:
            mean = h.mean(1, keepdim=True)
            flat = mean.flatten(1)
            low, high = flat.min(dim=1).values, flat.max(dim=1).values
            mean = (mean - low.view(-1, 1, 1, 1)) / (high - low).view(-1, 1, 1, 1)
            factor = (b - 1) * mean + 1
        h = torch.cat([h[:, :half] * factor, h[:, half:]], dim=1)
        return h, fourier_filter(skip, threshold=1, scale=s)

    @contextmanager
    def attach(self, unet: torch.nn.Module) -> Iterator[None]:
        width = unet.config.block_out_channels[0]
        factors = {4 * width: (self.b1, self.s1), 2 * width: (self.b2, self.s2)}
        hooks = [resnet.register_forward_pre_hook(partial(self._hook, channels, *factors[channels]))
                 for resnet, channels in skip_joins(unet) if channels in factors]
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()

    def _hook(self, channels: int, b: float, s: float, module: torch.nn.Module, args: tuple) -> tuple:
        joined = args[0]
        h, skip = self.join(joined[:, :channels], joined[:, channels:], b, s)
        return (torch.cat([h, skip], dim=1),) + tuple(args[1:])
