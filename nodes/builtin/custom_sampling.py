"""Custom sampling nodes: KSampler taken apart into sampler, sigmas, noise and guider sockets (reference §6.2–6.5).

ComfyUI's `comfy_extras.nodes_custom_sampler` nodes under their names, inputs, defaults and categories. The values
on the new sockets are small frozen objects of ours:

* SAMPLER → `SamplerChoice(name)`: a ComfyUI sampler name;
* SIGMAS → a 1-D float32 CPU tensor (usually ending in 0); an empty one means "return the input latent";
* NOISE → `NoiseSource(seed, enabled)`: the seeded initial noise of §6.2, or zeros (DisableNoise, seed 0 as in
  ComfyUI, which also seeds the sampler's own noise);
* GUIDER → `Guider(model, positive, negative, cfg)`: CFG over both conditionings, or (BasicGuider) the positive
  alone at cfg 1 (`negative` None).

Sampling goes through `nodes.sd.ksampler.sample_sigmas`, the tail of KSampler itself, so SamplerCustom with the
sigmas KSampler would compute gives KSampler's result bit for bit. `denoised_output` is the x0 prediction of the
last step (what the per-step callback reports), unscaled like the output; with nothing sampled it is the output.
BasicScheduler applies ComfyUI's own denoise rule (schedule(int(steps / denoise)), last steps + 1 values), without
KSampler's discard-penultimate rule, as ComfyUI does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from nodes.api import Context, Input, Node, node
from nodes.builtin.sampling import SamplerName, SchedulerName, step_reporter
from nodes.sd.handles import ModelHandle
from nodes.sd.ksampler import sample_sigmas
from nodes.sd.noise import MAX_SEED, prepare_noise, zero_noise
from nodes.sd.schedules import calculate_sigmas, exponential_sigmas, karras_sigmas, sd_turbo_sigmas
from nodes.types import Conditioning, Latent, Model, socket

Sampler = socket("SAMPLER")
Sigmas = socket("SIGMAS")
Noise = socket("NOISE")
GuiderSocket = socket("GUIDER")

MODULE = "comfy_extras.nodes_custom_sampler"
CATEGORY = "sampling/custom_sampling"
SIGMA_RANGE = dict(ge=0.0, le=5000.0, step=0.01, round=False)


@dataclass(frozen=True)
class SamplerChoice:
    """SAMPLER: a sampler by ComfyUI name."""

    name: str


@dataclass(frozen=True)
class NoiseSource:
    """NOISE: the initial noise for a LATENT — seeded standard normal (§6.2), or zeros when not `enabled`."""

    seed: int
    enabled: bool = True

    def generate(self, latent: dict[str, Any]) -> torch.Tensor:
        samples = latent["samples"].to(torch.float32).cpu()
        if not self.enabled:
            return zero_noise(samples)
        return prepare_noise(samples, self.seed, latent.get("batch_index"))


@dataclass(frozen=True, eq=False)  # identity equality: conditioning holds tensors, which do not compare to bool
class Guider:
    """GUIDER: the model and conditioning that turn a noisy latent into a prediction; `negative` None = none."""

    model: ModelHandle
    positive: Any
    negative: Any | None
    cfg: float


def sample_custom(ctx: Context | None, guider: Guider, noise: NoiseSource, sampler: SamplerChoice,
                  sigmas: torch.Tensor, latent: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sample `latent` with progress, previews and interrupt through `ctx`; returns (output, denoised_output)."""
    model = guider.model
    samples = latent["samples"].to(torch.float32).cpu()
    last: dict[str, torch.Tensor] = {}
    report = step_reporter(ctx, model) if ctx is not None else None

    def on_step(info: dict[str, Any]) -> None:
        last["x0"] = info["denoised"]
        if report is not None:
            report(info)

    with model.manager.use(model.unet):
        result = sample_sigmas(
            model.unet, latent=samples, noise=noise.generate(latent), sigmas=sigmas, sampler_name=sampler.name,
            seed=noise.seed, cfg=guider.cfg, positive=guider.positive, negative=guider.negative,
            latent_scale=model.family.latent_scale, prediction=model.prediction, schedule=model.schedule,
            options=model.options, noise_mask=latent.get("noise_mask"), callback=on_step,
        )
    out = {**latent, "samples": result}
    if "x0" not in last:
        return out, out
    denoised = (last["x0"].to(torch.float32) / model.family.latent_scale).cpu()
    return out, {**latent, "samples": denoised}


class SamplerOutputs(NamedTuple):
    output: Latent
    denoised_output: Latent


class SplitOutputs(NamedTuple):
    high_sigmas: Sigmas
    low_sigmas: Sigmas


@node(category=CATEGORY, version="1.0.0", python_module=MODULE)
class SamplerCustom(Node):
    """Sample a latent with a chosen sampler and sigmas, classifier-free guided by positive and negative."""

    model: Model = Input()
    add_noise: bool = Input(True)
    noise_seed: int = Input(0, ge=0, le=MAX_SEED, control_after_generate=True)
    cfg: float = Input(8.0, ge=0.0, le=100.0, step=0.1, round=0.01)
    positive: Conditioning = Input()
    negative: Conditioning = Input()
    sampler: Sampler = Input()
    sigmas: Sigmas = Input()
    latent_image: Latent = Input()

    def run(self, ctx: Context) -> SamplerOutputs:
        guider = Guider(self.model, self.positive, self.negative, self.cfg)
        noise = NoiseSource(self.noise_seed, self.add_noise)
        return SamplerOutputs(*sample_custom(ctx, guider, noise, self.sampler, self.sigmas, self.latent_image))


@node(category=CATEGORY, version="1.0.0", python_module=MODULE)
class SamplerCustomAdvanced(Node):
    """Sample a latent from separate noise, guider, sampler and sigmas."""

    noise: Noise = Input()
    guider: GuiderSocket = Input()
    sampler: Sampler = Input()
    sigmas: Sigmas = Input()
    latent_image: Latent = Input()

    def run(self, ctx: Context) -> SamplerOutputs:
        return SamplerOutputs(*sample_custom(ctx, self.guider, self.noise, self.sampler, self.sigmas,
                                             self.latent_image))


@node(category=f"{CATEGORY}/samplers", version="1.0.0", python_module=MODULE)
class KSamplerSelect(Node):
    """Choose a sampling algorithm by name."""

    sampler_name: SamplerName = Input()

    def run(self, ctx: Context) -> Sampler:
        return SamplerChoice(self.sampler_name)


@node(category=f"{CATEGORY}/schedulers", version="1.0.0", python_module=MODULE)
class BasicScheduler(Node):
    """The sigmas of a named scheduler for the model; denoise below 1 keeps the tail of a longer schedule."""

    model: Model = Input()
    scheduler: SchedulerName = Input()
    steps: int = Input(20, ge=1, le=10_000)
    denoise: float = Input(1.0, ge=0.0, le=1.0, step=0.01)

    def run(self, ctx: Context) -> Sigmas:
        total_steps = self.steps
        if self.denoise < 1.0:
            if self.denoise <= 0.0:
                return torch.zeros([0], dtype=torch.float32)
            total_steps = int(self.steps / self.denoise)
        return calculate_sigmas(self.model.schedule, self.scheduler, total_steps)[-(self.steps + 1):]


@node(category=f"{CATEGORY}/schedulers", version="1.0.0", python_module=MODULE)
class KarrasScheduler(Node):
    """Karras et al. ρ-spaced sigmas between sigma_max and sigma_min, then 0."""

    steps: int = Input(20, ge=1, le=10_000)
    sigma_max: float = Input(14.614642, **SIGMA_RANGE)
    sigma_min: float = Input(0.0291675, **SIGMA_RANGE)
    rho: float = Input(7.0, ge=0.0, le=100.0, step=0.01, round=False)

    def run(self, ctx: Context) -> Sigmas:
        return karras_sigmas(self.steps, self.sigma_min, self.sigma_max, rho=self.rho)


@node(category=f"{CATEGORY}/schedulers", version="1.0.0", python_module=MODULE)
class ExponentialScheduler(Node):
    """Sigmas evenly spaced in log σ between sigma_max and sigma_min, then 0."""

    steps: int = Input(20, ge=1, le=10_000)
    sigma_max: float = Input(14.614642, **SIGMA_RANGE)
    sigma_min: float = Input(0.0291675, **SIGMA_RANGE)

    def run(self, ctx: Context) -> Sigmas:
        return exponential_sigmas(self.steps, self.sigma_min, self.sigma_max)


@node(category=f"{CATEGORY}/schedulers", version="1.0.0", python_module=MODULE)
class SDTurboScheduler(Node):
    """SD Turbo's sigmas: timesteps 999, 899, … (one step by default); denoise below 1 starts further down."""

    model: Model = Input()
    steps: int = Input(1, ge=1, le=10)
    denoise: float = Input(1.0, ge=0.0, le=1.0, step=0.01)

    def run(self, ctx: Context) -> Sigmas:
        return sd_turbo_sigmas(self.model.schedule, self.steps, self.denoise)


@node(category=f"{CATEGORY}/sigmas", version="1.0.0", python_module=MODULE)
class SplitSigmas(Node):
    """Split sigmas at a step: high = sigmas[0 … step], low = sigmas[step …] (they share that sigma)."""

    sigmas: Sigmas = Input()
    step: int = Input(0, ge=0, le=10_000)

    def run(self, ctx: Context) -> SplitOutputs:
        return SplitOutputs(self.sigmas[: self.step + 1], self.sigmas[self.step:])


@node(category=f"{CATEGORY}/noise", version="1.0.0", python_module=MODULE)
class RandomNoise(Node):
    """Seeded standard-normal initial noise, drawn on the CPU."""

    noise_seed: int = Input(0, ge=0, le=MAX_SEED, control_after_generate=True)

    def run(self, ctx: Context) -> Noise:
        return NoiseSource(self.noise_seed)


@node(category=f"{CATEGORY}/noise", version="1.0.0", python_module=MODULE)
class DisableNoise(Node):
    """No initial noise: the latent is sampled as it is."""

    def run(self, ctx: Context) -> Noise:
        return NoiseSource(0, enabled=False)


@node(category=f"{CATEGORY}/guiders", version="1.0.0", python_module=MODULE)
class BasicGuider(Node):
    """Guide by one conditioning alone (no negative, cfg 1)."""

    model: Model = Input()
    conditioning: Conditioning = Input()

    def run(self, ctx: Context) -> GuiderSocket:
        return Guider(self.model, self.conditioning, None, 1.0)


@node(category=f"{CATEGORY}/guiders", version="1.0.0", python_module=MODULE)
class CFGGuider(Node):
    """Classifier-free guidance between a positive and a negative conditioning."""

    model: Model = Input()
    positive: Conditioning = Input()
    negative: Conditioning = Input()
    cfg: float = Input(8.0, ge=0.0, le=100.0, step=0.1, round=0.01)

    def run(self, ctx: Context) -> GuiderSocket:
        return Guider(self.model, self.positive, self.negative, self.cfg)
