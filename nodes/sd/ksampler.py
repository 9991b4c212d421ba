"""KSampler / KSamplerAdvanced as one function: noise, sigmas, scaling, sampling, unscaling (reference §6.1–6.5).

`sample(unet, latent=…, seed=…, …)` runs ComfyUI's procedure on a diffusers `UNet2DConditionModel`:

(a) initial noise: standard normal for (latent, seed) from a CPU generator (`noise.prepare_noise`), or zeros
    with `add_noise=False`;
(b) sigmas: the scheduler's schedule with KSampler's denoise and discard-penultimate rules, then
    KSamplerAdvanced's `start_step` / `last_step` / `force_full_denoise` window (`schedules`); an empty window
    returns the input latent unchanged;
(c) x_lat = latent × latent_scale if the latent has any non-zero value, else the zero latent;
(d) x = noise·sqrt(1 + σ0²) + x_lat when σ0 is σ_max (relative tolerance 1e-5) or above, else noise·σ0 + x_lat;
(e) x = sampler(CFG denoiser, x, sigmas), with the inpainting mask wrapper when `noise_mask` is given; a MODEL's
    `ModelOptions` (`options`) may replace CFG by its guidance function and hook into the UNet meanwhile;
(f) the result divided by latent_scale, float32, on the CPU.

The latent and the noise live on the CPU; the UNet's device is used for everything else. The per-step callback
receives `{"i", "denoised", "x", "sigma", "total_steps"}` (latents in scaled model space, on the UNet's device;
`i` counts from 0, `total_steps` = len(sigmas) − 1); it may raise to interrupt sampling.

For the KSampler node: `sample(…, denoise=d)`. For KSamplerAdvanced: `denoise=1.0`, `add_noise = (add_noise ==
"enable")`, `start_step=start_at_step`, `last_step=end_at_step`, `force_full_denoise = (return_with_leftover_noise
== "disable")`.

`sample_sigmas(unet, latent=…, noise=…, sigmas=…, sampler_name=…, …)` is steps (c)–(f) alone, for the custom
sampling nodes (SamplerCustom), which bring their own sigmas and noise; `sample` ends by calling it.

Public API: `sample(...)`, `sample_sigmas(...)`, `sampling_sigmas(...)`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from .denoiser import CFGDenoiser, MaskedDenoiser, UNetModel, noise_scaling, prepare_conditioning, prepare_mask
from .model_options import ModelOptions, unet_patches_attached
from .noise import MAX_SEED, cpu_generator, prepare_noise, zero_noise
from .samplers import get_sampler
from .schedules import DiscreteSchedule, ksampler_sigmas, sd_schedule, slice_sigmas


def sampling_sigmas(
    sampler_name: str,
    scheduler: str,
    steps: int,
    denoise: float | None = 1.0,
    start_step: int | None = None,
    last_step: int | None = None,
    force_full_denoise: bool = False,
    schedule: DiscreteSchedule | None = None,
) -> torch.Tensor | None:
    """The float32 sigmas KSampler / KSamplerAdvanced would sample; None or empty means "return the input"."""
    schedule = schedule or sd_schedule()
    spec = get_sampler(sampler_name)
    sigmas = ksampler_sigmas(schedule, scheduler, steps, denoise, spec.discard_penultimate)
    return slice_sigmas(sigmas, start_step, last_step, force_full_denoise)


@torch.no_grad()
def sample(
    unet,
    *,
    latent: torch.Tensor,
    seed: int,
    steps: int,
    cfg: float,
    sampler_name: str,
    scheduler: str,
    positive: Sequence[Sequence[Any]],
    negative: Sequence[Sequence[Any]],
    denoise: float = 1.0,
    latent_scale: float = 0.18215,
    prediction: str = "eps",
    add_noise: bool = True,
    start_step: int | None = None,
    last_step: int | None = None,
    force_full_denoise: bool = False,
    noise_mask: torch.Tensor | None = None,
    batch_index: Sequence[int] | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    schedule: DiscreteSchedule | None = None,
    options: ModelOptions | None = None,
) -> torch.Tensor:
    """Denoise `latent` (unscaled, [B, 4, h, w]) and return the unscaled result on the CPU.

    `positive` / `negative` are ComfyUI CONDITIONING values; `noise_mask` is the LATENT's `noise_mask`
    (1 = regenerate); `batch_index` the LATENT's `batch_index`; `prediction` one of `denoiser.PREDICTIONS`;
    `schedule` the model's training schedule (default: SD's); `options` the MODEL's guidance function and UNet
    patches (their prediction and schedule are not read here: pass them as `prediction` and `schedule`).
    """
    schedule = schedule or sd_schedule()
    latent = latent.to(torch.float32).cpu()
    noise = prepare_noise(latent, seed, batch_index) if add_noise else zero_noise(latent)
    sigmas = sampling_sigmas(sampler_name, scheduler, steps, denoise, start_step, last_step, force_full_denoise, schedule)
    if sigmas is None:
        return latent
    return sample_sigmas(
        unet, latent=latent, noise=noise, sigmas=sigmas, sampler_name=sampler_name, seed=seed, cfg=cfg,
        positive=positive, negative=negative, latent_scale=latent_scale, prediction=prediction,
        noise_mask=noise_mask, callback=callback, schedule=schedule, options=options,
    )


@torch.no_grad()
def sample_sigmas(
    unet,
    *,
    latent: torch.Tensor,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    sampler_name: str,
    seed: int,
    cfg: float,
    positive: Sequence[Sequence[Any]],
    negative: Sequence[Sequence[Any]] | None,
    latent_scale: float = 0.18215,
    prediction: str = "eps",
    noise_mask: torch.Tensor | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    schedule: DiscreteSchedule | None = None,
    options: ModelOptions | None = None,
) -> torch.Tensor:
    """Steps (c)–(f) with given sigmas and initial noise (SamplerCustom); returns the unscaled result on the CPU.

    `latent` and `noise` are CPU float32 tensors of the same shape; empty `sigmas` return `latent` unchanged.
    `negative=None` means no negative (BasicGuider): it requires cfg == 1, where the negative is never used.
    `seed` seeds the sampler's own noise (ancestral/SDE samplers, ddim's inpainting noise).
    """
    schedule = schedule or sd_schedule()
    spec = get_sampler(sampler_name)
    if len(sigmas) == 0:
        return latent
    if negative is None and not math.isclose(float(cfg), 1.0):
        raise ValueError("sampling without a negative conditioning needs cfg 1")
    device = unet.device
    sigmas = sigmas.to(torch.float32).to(device)
    latent_image = latent.to(device)
    if torch.count_nonzero(latent_image) > 0:  # the empty latent is not scaled
        latent_image = latent_image * latent_scale
    noise = noise.to(device)
    mask = None if noise_mask is None else prepare_mask(noise_mask, noise.shape).to(device)

    denoise_fn = _denoiser(
        unet, prediction, schedule, positive, negative if negative is not None else [], cfg, latent_image,
        latent_scale, mask, _inpaint_noise(noise, seed, spec.inpaint_random_noise) if mask is not None else None,
        options or ModelOptions(),
    )

    sigma_max = float(schedule.sigma_max)
    max_denoise = math.isclose(sigma_max, float(sigmas[0]), rel_tol=1e-5) or float(sigmas[0]) > sigma_max
    x = noise_scaling(sigmas[0], noise, latent_image, max_denoise)
    with unet_patches_attached(unet, options):
        samples = spec.fn(denoise_fn, x, sigmas, seed=seed, callback=_step_callback(callback, len(sigmas) - 1))
    return (samples.to(torch.float32) / latent_scale).cpu()


def _denoiser(unet, prediction, schedule, positive, negative, cfg, latent_image, latent_scale, mask, inpaint_noise,
              options: ModelOptions):
    """CFG (or the MODEL's guidance function) over both conditionings, wrapped in the inpainting mask if any."""
    common = dict(
        batch_size=latent_image.shape[0], latent_hw=tuple(latent_image.shape[-2:]), latent_scale=latent_scale,
        latent_image=latent_image, noise_mask=mask, schedule=schedule,
    )
    denoise_fn = CFGDenoiser(
        UNetModel(unet, prediction, schedule),
        prepare_conditioning(positive, unet.config, negative=False, **common),
        prepare_conditioning(negative, unet.config, negative=True, **common),
        cfg,
        options,
        lambda conditioning: prepare_conditioning(conditioning, unet.config, negative=True, **common),
    )
    return denoise_fn if mask is None else MaskedDenoiser(denoise_fn, mask, latent_image, inpaint_noise)


def _inpaint_noise(noise: torch.Tensor, seed: int, random: bool) -> torch.Tensor:
    """The noise that re-noises the kept region: the initial noise, or (ddim) a CPU draw seeded with seed + 1."""
    if not random:
        return noise
    # seed + 1 wraps at 2**64 (ComfyUI would fail on the largest seed).
    generator = cpu_generator((seed + 1) % (MAX_SEED + 1))
    return torch.randn(noise.shape, generator=generator, device="cpu").to(noise.dtype).to(noise.device)


def _step_callback(callback, total_steps: int):
    if callback is None:
        return None

    def step(info: dict[str, Any]) -> None:
        callback({**info, "total_steps": total_steps})

    return step
