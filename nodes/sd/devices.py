"""Compute device, precision policy and a small GPU model manager.

Policy (reference §6.9, §6.12, §7.3, in a simplified form):
- device: CUDA, else Apple MPS, else the CPU;
- dtypes: on CUDA the UNet and the text encoders run in fp16 and the VAE in bf16 where the GPU supports it
  (Ampere and later), else fp32; on MPS fp16 UNet and text encoders with an fp32 VAE; on the CPU everything
  is fp32 (fp16/bf16 weights are converted once, when loaded);
- attention: PyTorch's scaled_dot_product_attention, which is what diffusers' default `AttnProcessor2_0`
  calls; `use_sdpa` puts it back on a module whose processors were changed;
- memory: models live in RAM; `ModelManager.use(module)` moves one to the compute device for the duration of
  the work and leaves it there, and when the modules resident on the device would exceed the VRAM budget it
  sends the least recently used ones back to the CPU first. On the CPU there is nothing to move.

Public API: `compute_device()`, `DtypePolicy`, `dtype_policy(device)`, `use_sdpa(module)`, `module_bytes(module)`,
`ModelManager(device=None, vram_budget=None)` with `.use(module)`, `.resident()`, `.offload_all()`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

# Kept free on the device for activations (ComfyUI keeps ~0.8 GB plus a reserve; SDXL at 1024² needs more).
DEFAULT_VRAM_RESERVE = 2 * 1024**3


def compute_device() -> torch.device:
    """CUDA if present, else MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class DtypePolicy:
    """The dtype each component is kept and run in."""

    unet: torch.dtype
    text_encoder: torch.dtype
    vae: torch.dtype

    @classmethod
    def uniform(cls, dtype: torch.dtype) -> DtypePolicy:
        return cls(dtype, dtype, dtype)


def dtype_policy(device: torch.device | str | None = None) -> DtypePolicy:
    """The default dtypes on `device` (the compute device when None)."""
    device = torch.device(device) if device is not None else compute_device()
    if device.type == "cuda":
        vae = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return DtypePolicy(torch.float16, torch.float16, vae)
    if device.type == "mps":
        return DtypePolicy(torch.float16, torch.float16, torch.float32)
    return DtypePolicy.uniform(torch.float32)


def use_sdpa(module: torch.nn.Module) -> None:
    """Route every attention layer of a diffusers model through PyTorch's SDPA (diffusers' default)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    module.set_attn_processor(AttnProcessor2_0())


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes held by a module's parameters and buffers."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _device_of(module: torch.nn.Module) -> torch.device:
    first = next(iter(module.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


class ModelManager:
    """Keeps models in RAM and on the compute device only while (and after) they are used.

    `vram_budget` is the number of bytes models may occupy on the device together; by default the device's
    total memory minus a reserve for activations. A model larger than the budget still runs, and modules
    inside an open `use` block are never evicted, so nested uses may exceed the budget for their duration.
    """

    def __init__(self, device: torch.device | str | None = None, vram_budget: int | None = None):
        self.device = torch.device(device) if device is not None else compute_device()
        if vram_budget is None and self.device.type == "cuda":
            vram_budget = torch.cuda.get_device_properties(self.device).total_memory - DEFAULT_VRAM_RESERVE
        self.vram_budget = vram_budget
        self._resident: OrderedDict[int, torch.nn.Module] = OrderedDict()  # least recently used first
        self._in_use: dict[int, int] = {}  # id -> open `use` blocks; never evicted while in use
        self._lock = threading.RLock()

    @contextmanager
    def use(self, module: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Make `module` resident on the compute device and yield it."""
        with self._lock:
            self._load(module)
            self._in_use[id(module)] = self._in_use.get(id(module), 0) + 1
        try:
            yield module
        finally:
            with self._lock:
                self._in_use[id(module)] -= 1
                if not self._in_use[id(module)]:
                    del self._in_use[id(module)]

    def resident(self) -> list[torch.nn.Module]:
        """The modules on the compute device, least recently used first."""
        return list(self._resident.values())

    def offload_all(self) -> None:
        """Send every resident module that is not in use back to the CPU."""
        with self._lock:
            for key in [key for key in self._resident if key not in self._in_use]:
                self._evict(key)

    def _load(self, module: torch.nn.Module) -> None:
        key = id(module)
        if key in self._resident:
            self._resident.move_to_end(key)
            self._make_room(0, keep=key)  # a budget exceeded by nested uses is restored once they have ended
            return
        self._make_room(module_bytes(module), keep=key)  # free the device before copying onto it
        module.to(self.device)  # a no-op for modules already there (the CPU case)
        self._resident[key] = module

    def _make_room(self, needed: int, keep: int) -> None:
        """Evict least recently used modules (not in use, not `keep`) until resident + `needed` fits."""
        if self.vram_budget is None:
            return
        used = sum(module_bytes(m) for m in self._resident.values())
        for victim in [key for key in self._resident if key not in self._in_use and key != keep]:
            if used + needed <= self.vram_budget:
                break
            used -= module_bytes(self._resident[victim])
            self._evict(victim)

    def _evict(self, key: int) -> None:
        module = self._resident.pop(key)
        if _device_of(module).type != "cpu":
            module.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
