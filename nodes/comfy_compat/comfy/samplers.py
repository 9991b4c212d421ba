"""`comfy.samplers`: ComfyUI's sampler and scheduler names, and the few entry points packs call (imported only
under that name).

- `KSampler.SAMPLERS` / `KSampler.SCHEDULERS` (also `SAMPLER_NAMES`, `KSAMPLER_NAMES`, `SCHEDULER_NAMES`): the
  names our sampler offers, the lists packs put in their INPUT_TYPES.
- `KSampler(model, steps, device, sampler, scheduler, denoise)` and its `.sample(noise, positive, negative, cfg,
  …, seed=…)`: `comfy.sample.sample` with those settings (same rules: our MODEL handle, the seed's noise).
- `sampler_object(name)` / `ksampler(name)`: the SAMPLER value KSamplerSelect gives.
- `calculate_sigmas(model_sampling, scheduler_name, steps)`: BasicScheduler's sigmas; `model_sampling` is our MODEL
  handle or a `nodes.sd.schedules.DiscreteSchedule` (ComfyUI's model_sampling objects do not exist here).
ComfyUI's sampler classes (`KSAMPLER`, `CFGGuider`, model wrappers) are not provided.
"""
from __future__ import annotations

from typing import Any

import torch

from nodes.builtin.custom_sampling import SamplerChoice
from nodes.sd.handles import ModelHandle
from nodes.sd.samplers import SAMPLER_NAMES as _SAMPLERS, SAMPLERS as _SAMPLER_SPECS
from nodes.sd.schedules import SCHEDULER_NAMES as _SCHEDULERS, DiscreteSchedule, sd_schedule
from nodes.sd.schedules import calculate_sigmas as _calculate_sigmas

from .sample import sample as _sample

KSAMPLER_NAMES = list(_SAMPLERS)
SAMPLER_NAMES = list(_SAMPLERS)
SCHEDULER_NAMES = list(_SCHEDULERS)


class KSampler:
    """ComfyUI's `comfy.samplers.KSampler` over our sampler; the lists are what packs read most."""

    SAMPLERS = SAMPLER_NAMES
    SCHEDULERS = SCHEDULER_NAMES
    DISCARD_PENULTIMATE_SIGMA_SAMPLERS = {s.name for s in _SAMPLER_SPECS.values() if s.discard_penultimate}

    def __init__(self, model: Any, steps: int, device: Any = None, sampler: str | None = None,
                 scheduler: str | None = None, denoise: float | None = None,
                 model_options: dict[str, Any] | None = None) -> None:
        if sampler not in SAMPLER_NAMES or scheduler not in SCHEDULER_NAMES:
            raise ValueError(f"comfy.samplers.KSampler: unknown sampler {sampler!r} or scheduler {scheduler!r}")
        self.model, self.steps, self.device = model, steps, device
        self.sampler, self.scheduler = sampler, scheduler
        self.denoise = 1.0 if denoise is None else denoise

    def sample(self, noise: torch.Tensor, positive: Any, negative: Any, cfg: float,
               latent_image: torch.Tensor | None = None, start_step: int | None = None,
               last_step: int | None = None, force_full_denoise: bool = False,
               denoise_mask: torch.Tensor | None = None, sigmas: torch.Tensor | None = None, callback: Any = None,
               disable_pbar: bool = False, seed: int | None = None) -> torch.Tensor:
        latent = latent_image if latent_image is not None else torch.zeros_like(noise)
        return _sample(self.model, noise, self.steps, cfg, self.sampler, self.scheduler, positive, negative,
                       latent, denoise=self.denoise, start_step=start_step, last_step=last_step,
                       force_full_denoise=force_full_denoise, noise_mask=denoise_mask, sigmas=sigmas,
                       callback=callback, seed=seed)


def sampler_object(name: str) -> SamplerChoice:
    """The SAMPLER value of a sampler name (what KSamplerSelect outputs)."""
    if name not in SAMPLER_NAMES:
        raise ValueError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLER_NAMES)}")
    return SamplerChoice(name)


def ksampler(sampler_name: str, extra_options: dict[str, Any] | None = None,
             inpaint_options: dict[str, Any] | None = None) -> SamplerChoice:
    if extra_options or inpaint_options:
        raise NotImplementedError("comfy.samplers.ksampler on latentloom takes no extra or inpaint options")
    return sampler_object(sampler_name)


def calculate_sigmas(model_sampling: Any, scheduler_name: str, steps: int) -> torch.Tensor:
    """The scheduler's sigmas (steps + 1 values ending in 0) for our model or noise schedule."""
    if isinstance(model_sampling, ModelHandle):
        model_sampling = sd_schedule()
    if not isinstance(model_sampling, DiscreteSchedule):
        raise TypeError("comfy.samplers.calculate_sigmas on latentloom takes a MODEL (ours) or a DiscreteSchedule, "
                        f"not {type(model_sampling).__name__}")
    return _calculate_sigmas(model_sampling, scheduler_name, steps)
