"""Initial noise for KSampler (reference §6.2): standard normal from a CPU generator seeded with the seed.

Rules:

* The noise is always drawn on the CPU in float32 (the latent's dtype), so a seed gives the same image on any
  device. The generator is a private `torch.Generator` seeded with `manual_seed(seed)`: it yields exactly the
  stream of ComfyUI's `torch.manual_seed(seed)` global generator without reseeding the process-wide RNG.
* Seeds range over 0 … 2⁶⁴ − 1 (torch's `manual_seed` accepts that range).
* Without `batch_index` the whole `[B, C, h, w]` tensor is one draw, so batch item k is not "seed + k".
* With `batch_index` (LatentFromBatch / RepeatLatentBatch), draws of `[1, C, h, w]` are made in sequence for
  i = 0 … max(batch_index), and item k gets the draw numbered `batch_index[k]`; one batch item can thus be
  reproduced alone.

Public API: `MAX_SEED`, `cpu_generator(seed)`, `prepare_noise(latent, seed, batch_index=None)`,
`zero_noise(latent)`.
"""

from __future__ import annotations

from typing import Sequence

import torch

MAX_SEED = 2**64 - 1


def cpu_generator(seed: int) -> torch.Generator:
    """A CPU generator in the state `torch.manual_seed(seed)` would leave the default one."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be within 0 … 2**64 - 1, got {seed}")
    return torch.Generator(device="cpu").manual_seed(seed)


def prepare_noise(latent: torch.Tensor, seed: int, batch_index: Sequence[int] | None = None) -> torch.Tensor:
    """Standard-normal noise shaped like `latent`, on the CPU, in the latent's dtype."""
    generator = cpu_generator(seed)
    shape, dtype = tuple(latent.shape), latent.dtype
    if batch_index is None:
        return torch.randn(shape, dtype=dtype, generator=generator, device="cpu")
    wanted = {int(i) for i in batch_index}
    draws = {}
    for i in range(max(wanted) + 1):
        draw = torch.randn((1,) + shape[1:], dtype=dtype, generator=generator, device="cpu")
        if i in wanted:
            draws[i] = draw
    return torch.cat([draws[int(i)] for i in batch_index], dim=0)


def zero_noise(latent: torch.Tensor) -> torch.Tensor:
    """The noise used when adding noise is disabled (KSamplerAdvanced add_noise = disable)."""
    return torch.zeros(latent.shape, dtype=latent.dtype, device="cpu")
