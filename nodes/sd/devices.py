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
- weight patches (LoRA): a module's weights are shared by every handle made from it, so a handle never changes
  them itself. It carries an immutable tuple of `WeightPatch`es instead, and `use(module, patches)` makes the
  module hold exactly those: on the device the module is on, each touched parameter becomes
  `(W.float() + Σ delta).to(W.dtype)` (a new tensor; the original is kept as the backup, in RAM: no copy on the
  CPU, one copy of the touched tensors only when the module is on an accelerator). A use with different patches,
  including none, first restores the originals, and so does sending the module back to the CPU. Patches stay
  on between uses with the same set (no recomputation per sampler call), so read a module's weights through
  `use`, never straight from a module that a patched handle may have used. A module inside an open `use` block
  cannot change patches (one set of weights exists at a time); everything runs under the manager's lock.
- `PatchedManager` is how a handle carries its patches: the manager as that handle sees it, whose
  `use(module)` adds the handle's patches for `module`, so code that only knows `handle.manager.use(module)`
  (the samplers, CLIP encoding) gets the patched weights.

Public API: `compute_device()`, `DtypePolicy`, `dtype_policy(device)`, `as_policy(dtype)`, `use_sdpa(module)`, `module_bytes(module)`,
`WeightPatch`, `ModelManager(device=None, vram_budget=None)` with `.use(module, patches=())`, `.resident()`,
`.offload_all()`, `.patches_for(module)`, `.with_patches(module, patches)`, and `PatchedManager` (same methods).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

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


def as_policy(dtype: torch.dtype | DtypePolicy | None, device: torch.device | str | None = None) -> DtypePolicy:
    """A loader's `dtype` argument as a policy: one dtype for all, a policy as is, None for the device's."""
    if isinstance(dtype, DtypePolicy):
        return dtype
    return DtypePolicy.uniform(dtype) if dtype is not None else dtype_policy(device)


def use_sdpa(module: torch.nn.Module) -> None:
    """Route every attention layer of a diffusers model through PyTorch's SDPA (diffusers' default)."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    module.set_attn_processor(AttnProcessor2_0())


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes held by a module's parameters and buffers."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


class WeightPatch(Protocol):
    """An additive change to one parameter of a module (e.g. one LoRA layer at one strength).

    Equality says whether two patch tuples give the same weights; implementations compare their tensors by
    identity (frozen dataclasses over objects with `eq=False`), so comparing is cheap.
    """

    @property
    def target(self) -> str:
        """The parameter's name in `module.named_parameters()`."""
        ...

    def delta(self, weight: torch.Tensor) -> torch.Tensor:
        """The change to `weight`: float32, `weight`'s shape, on `weight`'s device."""
        ...


Patches = tuple[WeightPatch, ...]


@dataclass(frozen=True)
class _Applied:
    """The patches a module holds now and the original tensors of the parameters they touched."""

    patches: Patches
    backup: dict[str, torch.Tensor]


def apply_patches(module: torch.nn.Module, patches: Patches) -> dict[str, torch.Tensor]:
    """Patch `module`'s parameters where they are; returns the originals of the touched ones (in RAM).

    Each touched parameter gets a new tensor, W + Σ deltas computed in float32 and cast to W's dtype once (stacked
    LoRAs round once, as ComfyUI's). On failure the parameters patched so far are restored.
    """
    params = dict(module.named_parameters())
    grouped: dict[str, list[WeightPatch]] = {}
    for patch in patches:
        if patch.target not in params:
            raise KeyError(f"{type(module).__name__} has no parameter {patch.target!r} to patch")
        grouped.setdefault(patch.target, []).append(patch)
    backup: dict[str, torch.Tensor] = {}
    # A patched weight is a model weight like any other: not an inference tensor (CLIP encoding runs under
    # inference_mode) and never part of an autograd graph.
    with torch.inference_mode(False), torch.no_grad():
        try:
            for name, group in grouped.items():
                param = params[name]
                original = param.data
                merged = original.to(torch.float32, copy=True)
                for patch in group:
                    merged += patch.delta(original)
                # On the CPU the original itself is the backup (often a clean page of the memory-mapped file);
                # an accelerator's copy goes to RAM so that patching costs no VRAM.
                backup[name] = original if original.device.type == "cpu" else original.to("cpu")
                param.data = merged.to(original.dtype)
        except BaseException:
            restore_patches(module, backup)
            raise
    return backup


def restore_patches(module: torch.nn.Module, backup: Mapping[str, torch.Tensor],
                    device: torch.device | None = None) -> None:
    """Put the original tensors back, on `device` (None: where each parameter is now)."""
    params = dict(module.named_parameters())
    for name, original in backup.items():
        params[name].data = original.to(device if device is not None else params[name].device)


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
        self._patched: dict[int, _Applied] = {}  # id -> what a resident module holds now
        self._lock = threading.RLock()

    @contextmanager
    def use(self, module: torch.nn.Module, patches: Patches = ()) -> Iterator[torch.nn.Module]:
        """Make `module` resident on the compute device, holding exactly `patches`, and yield it."""
        with self._lock:
            self._load(module)
            self._set_patches(module, tuple(patches))
            self._in_use[id(module)] = self._in_use.get(id(module), 0) + 1
        try:
            yield module
        finally:
            with self._lock:
                self._in_use[id(module)] -= 1
                if not self._in_use[id(module)]:
                    del self._in_use[id(module)]

    def patches_for(self, module: torch.nn.Module) -> Patches:
        """The patches `use(module)` applies: none, for the manager itself."""
        return ()

    def with_patches(self, module: torch.nn.Module, patches: Patches) -> PatchedManager:
        """This manager as seen by a handle whose `module` carries `patches`."""
        return PatchedManager(self, {}).with_patches(module, patches)

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

    def _set_patches(self, module: torch.nn.Module, patches: Patches) -> None:
        key = id(module)
        applied = self._patched.get(key)
        if (applied.patches if applied is not None else ()) == patches:
            return
        if key in self._in_use:
            raise RuntimeError(f"{type(module).__name__} is in use with other weight patches: one set of weights "
                               "exists at a time, so two models sharing it cannot be used at once")
        if applied is not None:
            del self._patched[key]
            restore_patches(module, applied.backup)
        if patches:
            self._patched[key] = _Applied(patches, apply_patches(module, patches))

    def _evict(self, key: int) -> None:
        module = self._resident.pop(key)
        applied = self._patched.pop(key, None)
        if applied is not None:  # the originals go straight back to RAM, where the module is going
            restore_patches(module, applied.backup, torch.device("cpu"))
        if _device_of(module).type != "cpu":
            module.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()


class PatchedManager:
    """A `ModelManager` as one handle sees it: `use(module)` applies that handle's patches for `module`.

    Immutable; `with_patches` returns a new view. The base manager keeps all state (residency, what each module
    holds); views only say what to ask for.
    """

    def __init__(self, base: ModelManager, patches: Mapping[int, tuple[torch.nn.Module, Patches]]):
        self.base = base
        self._patches = dict(patches)  # id(module) -> (module, its patches); the module is kept alive with them

    @property
    def device(self) -> torch.device:
        return self.base.device

    def use(self, module: torch.nn.Module, patches: Patches | None = None):
        """`base.use(module, ...)` with this handle's patches for `module` (or `patches` when given)."""
        return self.base.use(module, self.patches_for(module) if patches is None else patches)

    def patches_for(self, module: torch.nn.Module) -> Patches:
        entry = self._patches.get(id(module))
        return entry[1] if entry is not None else ()

    def with_patches(self, module: torch.nn.Module, patches: Patches) -> PatchedManager:
        """A view that also applies `patches` to `module` (after the ones it already has: LoRA stacking)."""
        combined = dict(self._patches)
        combined[id(module)] = (module, self.patches_for(module) + tuple(patches))
        return PatchedManager(self.base, combined)

    def resident(self) -> list[torch.nn.Module]:
        return self.base.resident()

    def offload_all(self) -> None:
        self.base.offload_all()
