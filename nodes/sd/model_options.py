"""What model-patch nodes attach to a MODEL: a sampling override, a guidance function and UNet hooks.

Rule: a patch never changes the module it patches. A `ModelOptions` value rides on the MODEL handle (immutable;
each patch node returns a new handle with new options), and the sampler reads it:

* `prediction` / `schedule` replace the family's model sampling (ModelSamplingDiscrete): what the UNet predicts
  (`denoiser.PREDICTIONS`) and the training schedule that maps σ to timesteps (zero-terminal-SNR, LCM's 50 steps).
* `cfg_function` replaces classifier-free guidance, ComfyUI's `sampler_cfg_function` (RescaleCFG, PerpNeg). It
  gets a `CfgArgs` and returns the guided x0 (ComfyUI's returns x − x0; ours speaks x0 throughout). Setting it
  again replaces the previous one, as in ComfyUI.
* `post_cfg_functions` then adjust the guided x0 in order (ComfyUI's `sampler_post_cfg_function`: Self-Attention
  Guidance); `disable_cfg1_optimization` makes the negative be evaluated even at cfg 1, for those that need it.
* `unet_patches` hook into the UNet's modules while a sampler runs and only then (FreeU, hypernetworks): each is
  a `UNetPatch` whose `attach(unet)` context manager registers PyTorch hooks and removes them on exit, so the
  shared module is the unpatched one again afterwards. Patches stack in the order they were added.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

import torch

from nodes.sd.schedules import DiscreteSchedule


@dataclass(frozen=True)
class CfgArgs:
    """What a guidance function sees at one model evaluation (tensors in scaled latent space, on the UNet's device).

    `predict(conditioning)` runs the model on another CONDITIONING at the same x and σ and returns its x0;
    `predict_negative(x)` runs it on the negative at another latent, same σ. With cfg 1 the negative is not
    evaluated and `uncond_denoised` is zeros (unless `disable_cfg1_optimization`), as in ComfyUI.
    """

    x: torch.Tensor
    sigma: torch.Tensor  # [B]
    cond_denoised: torch.Tensor
    uncond_denoised: torch.Tensor
    cond_scale: float
    predict: Callable[[Any], torch.Tensor]
    predict_negative: Callable[[torch.Tensor], torch.Tensor]


CfgFunction = Callable[[CfgArgs], torch.Tensor]
#: (args, the guided x0) → the adjusted x0.
PostCfgFunction = Callable[[CfgArgs, torch.Tensor], torch.Tensor]


class UNetPatch(Protocol):
    """A change to a UNet's computation that lasts as long as `attach(unet)` is entered."""

    def attach(self, unet: torch.nn.Module) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class ModelOptions:
    """A MODEL handle's patches; the defaults change nothing (None: the family's own sampling)."""

    prediction: str | None = None
    schedule: DiscreteSchedule | None = None
    cfg_function: CfgFunction | None = None
    post_cfg_functions: tuple[PostCfgFunction, ...] = ()
    disable_cfg1_optimization: bool = False
    unet_patches: tuple[UNetPatch, ...] = ()


@contextmanager
def unet_patches_attached(unet: torch.nn.Module, options: ModelOptions | None) -> Iterator[None]:
    """Attach every UNet patch of `options` (in order) for the duration of the block."""
    with ExitStack() as stack:
        for patch in options.unet_patches if options is not None else ():
            stack.enter_context(patch.attach(unet))
        yield
