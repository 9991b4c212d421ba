"""`comfy.sample`: `prepare_noise` and `sample`, over our sampler (imported only under that name).

`prepare_noise(latent_image, seed, noise_inds=None)` is ComfyUI's CPU noise (§6.2), ours. `sample(model, noise, …)`
runs KSampler's sampling (`nodes.builtin.sampling.run_sampler`) on our MODEL handle, reporting through the running
node's context. Our sampler draws its noise from the seed, so `seed` is required and `noise` must be the noise of
that seed (or zeros with `disable_noise`); other noise, `sigmas`, or a `callback` are refused with a clear error
rather than silently ignored. The result is the unscaled latent tensor, as in ComfyUI.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from nodes.comfy_compat import current_context
from nodes.sd.noise import prepare_noise as _prepare_noise


def prepare_noise(latent_image: torch.Tensor, seed: int, noise_inds: Sequence[int] | None = None) -> torch.Tensor:
    """The seeded CPU noise for `latent_image` (one draw per batch index in `noise_inds`)."""
    return _prepare_noise(latent_image, seed, noise_inds)


def fix_empty_latent_channels(model: Any, latent_image: torch.Tensor) -> torch.Tensor:
    """Our models all take 4-channel latents: the latent is returned as it is."""
    return latent_image


def sample(model: Any, noise: torch.Tensor, steps: int, cfg: float, sampler_name: str, scheduler: str,
           positive: Any, negative: Any, latent_image: torch.Tensor, denoise: float = 1.0,
           disable_noise: bool = False, start_step: int | None = None, last_step: int | None = None,
           force_full_denoise: bool = False, noise_mask: torch.Tensor | None = None,
           sigmas: torch.Tensor | None = None, callback: Any = None, disable_pbar: bool = False,
           seed: int | None = None) -> torch.Tensor:
    """Denoise `latent_image` as KSampler does; see the module's rules for `noise`, `seed`, `sigmas`, `callback`."""
    from nodes.builtin.sampling import run_sampler
    from nodes.comfy_face import standalone_context

    if seed is None:
        raise NotImplementedError("comfy.sample.sample on latentloom needs seed=: its sampler draws the noise "
                                  "from the seed")
    expected = torch.zeros_like(latent_image) if disable_noise else _prepare_noise(latent_image, seed)
    if noise.shape != expected.shape or not torch.equal(noise.to(expected.dtype), expected):
        raise NotImplementedError("comfy.sample.sample on latentloom takes only the seed's own noise "
                                  "(comfy.sample.prepare_noise(latent, seed)), not other noise")
    if sigmas is not None or callback is not None:
        raise NotImplementedError("comfy.sample.sample on latentloom takes neither sigmas= nor callback= "
                                  "(use SamplerCustom's nodes; progress goes to the running node)")
    latent = {"samples": latent_image} if noise_mask is None else {"samples": latent_image, "noise_mask": noise_mask}
    result = run_sampler(current_context() or standalone_context(), model, latent, seed=seed, steps=steps,
                         cfg=cfg, sampler_name=sampler_name, scheduler=scheduler, positive=positive,
                         negative=negative, denoise=denoise, add_noise=not disable_noise, start_step=start_step,
                         last_step=last_step, force_full_denoise=force_full_denoise)
    return result["samples"]
