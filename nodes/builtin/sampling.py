"""Sampling nodes: KSampler and KSamplerAdvanced (reference §6.1–6.7)."""
from __future__ import annotations

from typing import Any, Callable, Literal

from nodes.api import Context, Input, Node, node
from nodes.sd.handles import ModelHandle
from nodes.sd.ksampler import sample
from nodes.sd.noise import MAX_SEED
from nodes.sd.preview import latent_preview
from nodes.sd.samplers import SAMPLER_NAMES
from nodes.sd.schedules import SCHEDULER_NAMES
from nodes.types import Conditioning, Latent, Model

SamplerName = Literal[SAMPLER_NAMES]  # type: ignore[valid-type]
SchedulerName = Literal[SCHEDULER_NAMES]  # type: ignore[valid-type]


def step_reporter(ctx: Context, model: ModelHandle) -> Callable[[dict[str, Any]], None]:
    """A sampler callback: each step's progress, with a preview of its x0 when previews are on, through `ctx`
    (which also checks for an interrupt)."""

    def on_step(info: dict[str, Any]) -> None:
        preview = latent_preview(info["denoised"], model.family.name) if ctx.env.previews else None
        ctx.progress(info["i"] + 1, info["total_steps"], preview)

    return on_step


def run_sampler(ctx: Context, model: ModelHandle, latent: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Sample with progress, previews and interrupt through `ctx`; returns a new LATENT dict."""
    with model.manager.use(model.unet):
        samples = sample(model.unet, latent=latent["samples"], latent_scale=model.family.latent_scale,
                         prediction=model.prediction, schedule=model.schedule, options=model.options,
                         noise_mask=latent.get("noise_mask"), batch_index=latent.get("batch_index"),
                         callback=step_reporter(ctx, model), **options)
    return {**latent, "samples": samples}


@node(category="sampling", version="1.0.0")
class KSampler(Node):
    """Denoise a latent step by step, guided by positive and negative conditioning."""

    model: Model = Input(tooltip="the model used for denoising")
    seed: int = Input(0, ge=0, le=MAX_SEED, control_after_generate=True, tooltip="the seed of the noise")
    steps: int = Input(20, ge=1, le=10_000, tooltip="the number of denoising steps")
    cfg: float = Input(8.0, ge=0.0, le=100.0, step=0.1, round=0.01, tooltip="classifier-free guidance scale")
    sampler_name: SamplerName = Input("euler", tooltip="the sampling algorithm")
    scheduler: SchedulerName = Input("normal", tooltip="how the noise levels are spaced")
    positive: Conditioning = Input(tooltip="what to include in the image")
    negative: Conditioning = Input(tooltip="what to exclude from the image")
    latent_image: Latent = Input(tooltip="the latent to denoise")
    denoise: float = Input(1.0, ge=0.0, le=1.0, step=0.01, tooltip="below 1 keeps part of the input (img2img)")

    def run(self, ctx: Context) -> Latent:
        return run_sampler(ctx, self.model, self.latent_image, seed=self.seed, steps=self.steps, cfg=self.cfg,
                           sampler_name=self.sampler_name, scheduler=self.scheduler, positive=self.positive,
                           negative=self.negative, denoise=self.denoise)


@node(category="sampling", version="1.0.0")
class KSamplerAdvanced(Node):
    """KSampler with control over the step window and the noise (for multi-stage sampling)."""

    model: Model = Input()
    add_noise: Literal["enable", "disable"] = Input("enable")
    noise_seed: int = Input(0, ge=0, le=MAX_SEED, control_after_generate=True)
    steps: int = Input(20, ge=1, le=10_000)
    cfg: float = Input(8.0, ge=0.0, le=100.0, step=0.1, round=0.01)
    sampler_name: SamplerName = Input("euler")
    scheduler: SchedulerName = Input("normal")
    positive: Conditioning = Input()
    negative: Conditioning = Input()
    latent_image: Latent = Input()
    start_at_step: int = Input(0, ge=0, le=10_000)
    end_at_step: int = Input(10_000, ge=0, le=10_000)
    return_with_leftover_noise: Literal["disable", "enable"] = Input("disable")

    def run(self, ctx: Context) -> Latent:
        return run_sampler(ctx, self.model, self.latent_image, seed=self.noise_seed, steps=self.steps,
                           cfg=self.cfg, sampler_name=self.sampler_name, scheduler=self.scheduler,
                           positive=self.positive, negative=self.negative, denoise=1.0,
                           add_noise=self.add_noise == "enable", start_step=self.start_at_step,
                           last_step=self.end_at_step,
                           force_full_denoise=self.return_with_leftover_noise == "disable")
