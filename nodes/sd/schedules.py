"""Noise schedules: the discrete SD training schedule and ComfyUI's schedulers (reference §6.3–6.5).

Everything here decides *which noise levels* a sampler visits; it never touches a model. The rules, in order of
importance for reproducing ComfyUI's images:

* `DiscreteSchedule` is the 1000-step training schedule of SD1.x/SD2/SDXL: betas are the squares of a float64
  linspace of square roots, σ_t = sqrt((1 − ᾱ_t)/ᾱ_t) is computed in float64 and **stored as float32**, and
  log σ is the float64 log cast to float32. `timestep(σ)` is the *integer* t whose log σ_t is nearest to log σ
  (that integer is what the UNet is fed); `sigma(t)` interpolates log σ linearly for fractional t.
* Each scheduler is a small function `(schedule, steps) -> float32 tensor` reproducing the float32 arithmetic
  of its ComfyUI counterpart, because the samplers are sensitive to the last bit of a sigma.
  `SCHEDULER_NAMES` lists them in ComfyUI's order.
* `ksampler_sigmas` applies KSampler's step rules (§6.5): schedule(steps + 1) minus its penultimate value for the
  "discard penultimate" samplers, and img2img truncation for denoise < 1. `slice_sigmas` applies
  KSamplerAdvanced's start/end steps.

Unknown scheduler names raise `ValueError` instead of silently falling back to `simple` as ComfyUI does
(validation rejects them before a run anyway).

Public API: `DiscreteSchedule`, `sd_schedule()`, `SCHEDULER_NAMES`, `calculate_sigmas(schedule, name, steps)`,
`ksampler_sigmas(schedule, name, steps, denoise=1.0, discard_penultimate=False)`,
`slice_sigmas(sigmas, start_step=None, last_step=None, force_full_denoise=False)`, and one function per scheduler
(`normal_scheduler`, `sgm_uniform_scheduler`, `simple_scheduler`, `ddim_uniform_scheduler`, `karras_scheduler`,
`exponential_scheduler`, `beta_scheduler`, `linear_quadratic_scheduler`, `kl_optimal_scheduler`);
`karras_sigmas` / `exponential_sigmas` take σ_min and σ_max directly (KarrasScheduler, ExponentialScheduler);
`sd_turbo_sigmas(schedule, steps, denoise)` (SDTurboScheduler). Model-sampling variants (ModelSamplingDiscrete):
`DiscreteSchedule.zero_terminal_snr()` (`rescale_zero_terminal_snr`) and `DistilledSchedule` (LCM's 50 timesteps).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
import torch


class DiscreteSchedule:
    """A discrete diffusion training schedule seen through its noise levels σ_t, t = 0 … N−1.

    `sigmas` and `log_sigmas` are float32 tensors of length N on the CPU; `sigma_min` / `sigma_max` are 0-d
    float32 tensors (σ_0 and σ_{N−1}).
    """

    def __init__(self, sigmas: torch.Tensor):
        """`sigmas`: σ of each training timestep. Stored as float32; the log is taken in the given dtype first
        (float64 for the SD schedule, as ComfyUI does)."""
        self.sigmas = sigmas.float()
        # log taken before the cast to float32 (not log of the float32 sigmas): this is what the integer timestep
        # search and the fractional interpolation compare against.
        self.log_sigmas = sigmas.log().float()
        self._sigmas_exact = sigmas
        self._log_sigmas_on: dict[torch.device, torch.Tensor] = {}

    @classmethod
    def scaled_linear(cls, beta_start: float = 0.00085, beta_end: float = 0.012, steps: int = 1000):
        """The SD1.x/SD2/SDXL schedule: betas = linspace(√start, √end, steps)² in float64."""
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float64) ** 2
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        return cls(((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5)

    def zero_terminal_snr(self) -> "DiscreteSchedule":
        """This schedule rescaled to zero terminal SNR (`rescale_zero_terminal_snr`); its last σ becomes ~4519."""
        return DiscreteSchedule(rescale_zero_terminal_snr(self._sigmas_exact))

    @property
    def num_timesteps(self) -> int:
        """How many timesteps the model was trained on (the UNet's timestep range is 0 … num_timesteps − 1)."""
        return len(self.sigmas)

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Integer timesteps (int64, same shape as `sigma`) nearest to `sigma` in log space."""
        log_sigmas = self._log_sigmas_for(sigma.device)
        dists = sigma.to(torch.float32).log() - log_sigmas.reshape(-1, *([1] * sigma.dim()))
        return dists.abs().argmin(dim=0)

    def _log_sigmas_for(self, device: torch.device) -> torch.Tensor:
        """The table on `device`, copied once per device (it is consulted at every model call)."""
        if device not in self._log_sigmas_on:
            self._log_sigmas_on[device] = self.log_sigmas.to(device)
        return self._log_sigmas_on[device]

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        """σ at a possibly fractional timestep: log σ interpolated linearly, in float32."""
        t = torch.as_tensor(t, dtype=torch.float32)
        log_sigmas = self._log_sigmas_for(t.device)
        t = t.clamp(0, len(log_sigmas) - 1)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp()

    def percent_to_sigma(self, percent: float) -> float:
        """σ at a fraction of the sampling run (0 = start, 1 = end), as used by start/end percent options."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return float(self.sigma(torch.tensor((1.0 - percent) * (self.num_timesteps - 1), dtype=torch.float32)))


#: ᾱ of the last timestep after the zero-terminal-SNR rescale: ComfyUI's stand-in for 0, which would make σ infinite.
ZSNR_LAST_ALPHA_CUMPROD = 4.8973451890853435e-08


def rescale_zero_terminal_snr(sigmas: torch.Tensor) -> torch.Tensor:
    """Lin et al. (2024), "Common Diffusion Noise Schedules and Sample Steps are Flawed", Algorithm 1, on σ.

    √ᾱ_t is shifted so that its last value is 0 and scaled so that its first value is unchanged; the last ᾱ is
    then set to `ZSNR_LAST_ALPHA_CUMPROD` instead of 0, so that σ_T stays finite. Works in the given dtype.
    """
    sqrt_alphas_cumprod = (1.0 / (sigmas * sigmas + 1.0)).sqrt()
    first, last = sqrt_alphas_cumprod[0].clone(), sqrt_alphas_cumprod[-1].clone()
    sqrt_alphas_cumprod = (sqrt_alphas_cumprod - last) * (first / (first - last))
    alphas_cumprod = sqrt_alphas_cumprod**2
    alphas_cumprod[-1] = ZSNR_LAST_ALPHA_CUMPROD
    return ((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5


class DistilledSchedule(DiscreteSchedule):
    """A schedule distilled onto every k-th timestep (LCM: 50 of 1000, k = 20): σ at timesteps k − 1, 2k − 1, ….

    Its table holds those 50 σ (log taken in float32, as ComfyUI's distilled sampling does); `timestep` and
    `sigma` speak the full model's timesteps (index·k + k − 1), so the UNet and the schedulers see 19 … 999.
    """

    def __init__(self, base: DiscreteSchedule, original_timesteps: int = 50):
        self.skip = base.num_timesteps // original_timesteps
        super().__init__(base.sigmas[self.skip - 1 :: self.skip])
        self._full_timesteps = base.num_timesteps

    @property
    def num_timesteps(self) -> int:
        return self._full_timesteps

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return super().timestep(sigma) * self.skip + (self.skip - 1)

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        return super().sigma((torch.as_tensor(t, dtype=torch.float32) - (self.skip - 1)) / self.skip)


@functools.cache
def sd_schedule() -> DiscreteSchedule:
    """The shared SD1.x/SD2/SDXL schedule (σ_min = 0.0291672, σ_max = 14.6146)."""
    return DiscreteSchedule.scaled_linear()


def _float_tensor(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def normal_scheduler(schedule: DiscreteSchedule, steps: int, sgm: bool = False) -> torch.Tensor:
    """Timesteps evenly spaced from timestep(σ_max) to timestep(σ_min), mapped through `schedule.sigma`.

    With `sgm`, steps + 1 points are spaced and the last one dropped (`sgm_uniform`).
    """
    start = float(schedule.timestep(schedule.sigma_max))
    end = float(schedule.timestep(schedule.sigma_min))
    append_zero = True
    if sgm:
        timesteps = torch.linspace(start, end, steps + 1, dtype=torch.float32)[:-1]
    else:
        # Schedules whose last level is already ~0 take one more point instead of an appended zero.
        if math.isclose(float(schedule.sigma(end)), 0.0, abs_tol=1e-5):
            steps += 1
            append_zero = False
        timesteps = torch.linspace(start, end, steps, dtype=torch.float32)
    sigmas = [float(schedule.sigma(t)) for t in timesteps]
    return _float_tensor(sigmas + [0.0] if append_zero else sigmas)


def sgm_uniform_scheduler(schedule: DiscreteSchedule, steps: int) -> torch.Tensor:
    return normal_scheduler(schedule, steps, sgm=True)


def simple_scheduler(schedule: DiscreteSchedule, steps: int) -> torch.Tensor:
    """Every (N/steps)-th table entry counted down from σ_max, then 0."""
    stride = len(schedule.sigmas) / steps
    sigmas = [float(schedule.sigmas[-(1 + int(i * stride))]) for i in range(steps)]
    return _float_tensor(sigmas + [0.0])


def ddim_uniform_scheduler(schedule: DiscreteSchedule, steps: int) -> torch.Tensor:
    """Table entries 1, 1 + s, 1 + 2s, … (s = N // steps), reversed, ending in 0; starts below σ_max."""
    sigmas = []
    if math.isclose(float(schedule.sigmas[1]), 0.0, abs_tol=1e-5):
        steps += 1
    else:
        sigmas = [0.0]
    stride = max(len(schedule.sigmas) // steps, 1)
    for index in range(1, len(schedule.sigmas), stride):
        sigmas.append(float(schedule.sigmas[index]))
    return _float_tensor(sigmas[::-1])


def karras_scheduler(schedule: DiscreteSchedule, steps: int, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) ρ-spacing between the schedule's σ_max and σ_min, then 0."""
    return karras_sigmas(steps, float(schedule.sigma_min), float(schedule.sigma_max), rho)


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) ρ-spacing between σ_max and σ_min, then 0 (KarrasScheduler's own range)."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float32)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def exponential_scheduler(schedule: DiscreteSchedule, steps: int) -> torch.Tensor:
    """σ evenly spaced in log space from the schedule's σ_max to σ_min, then 0."""
    return exponential_sigmas(steps, float(schedule.sigma_min), float(schedule.sigma_max))


def exponential_sigmas(steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """σ evenly spaced in log space from σ_max to σ_min, then 0 (ExponentialScheduler's own range)."""
    sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), steps, dtype=torch.float32).exp()
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def beta_scheduler(schedule: DiscreteSchedule, steps: int, alpha: float = 0.6, beta: float = 0.6) -> torch.Tensor:
    """Timesteps at the Beta(α, β) quantiles of 1 − i/steps, rounded half-to-even; repeats skipped, then 0.

    May return fewer than steps + 1 values. The quantile is scipy's (`scipy.stats.beta.ppf`): the rounding to
    integer timesteps is sensitive to its last bits, and scipy is what ComfyUI uses.
    """
    from scipy.stats import beta as beta_distribution  # slow import, needed only here

    total_timesteps = len(schedule.sigmas) - 1
    quantiles = 1 - np.linspace(0, 1, steps, endpoint=False)
    timesteps = np.rint(beta_distribution.ppf(quantiles, alpha, beta) * total_timesteps)
    sigmas, last = [], -1.0
    for t in timesteps:
        if t != last:
            sigmas.append(float(schedule.sigmas[int(t)]))
        last = t
    return _float_tensor(sigmas + [0.0])


def linear_quadratic_scheduler(
    schedule: DiscreteSchedule, steps: int, threshold_noise: float = 0.025, linear_steps: int | None = None
) -> torch.Tensor:
    """Mochi's schedule: 1 − (linear ramp to `threshold_noise`, then a quadratic to 1), times σ_max."""
    if steps == 1:
        levels = [1.0, 0.0]
    else:
        if linear_steps is None:
            linear_steps = steps // 2
        linear = [i * threshold_noise / linear_steps for i in range(linear_steps)]
        step_diff = linear_steps - threshold_noise * steps
        quadratic_steps = steps - linear_steps
        quadratic_coef = step_diff / (linear_steps * quadratic_steps**2)
        linear_coef = threshold_noise / linear_steps - 2 * step_diff / (quadratic_steps**2)
        const = quadratic_coef * (linear_steps**2)
        quadratic = [quadratic_coef * (i**2) + linear_coef * i + const for i in range(linear_steps, steps)]
        levels = [1.0 - x for x in linear + quadratic + [1.0]]
    return _float_tensor(levels) * schedule.sigma_max


def kl_optimal_scheduler(schedule: DiscreteSchedule, steps: int) -> torch.Tensor:
    """σ_i = tan(a_i·atan σ_min + (1 − a_i)·atan σ_max), a_i = i/(steps − 1), then 0.

    ComfyUI divides by zero for one step; here one step gives [σ_max, 0].
    """
    sigma_min, sigma_max = float(schedule.sigma_min), float(schedule.sigma_max)
    adj = torch.arange(steps, dtype=torch.float32).div_(max(steps - 1, 1))
    sigmas = adj.new_zeros(steps + 1)
    sigmas[:-1] = (adj * math.atan(sigma_min) + (1 - adj) * math.atan(sigma_max)).tan_()
    return sigmas


def sd_turbo_sigmas(schedule: DiscreteSchedule, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """SD Turbo's σ (SDTurboScheduler): the timesteps 999, 899, …, 99 (diffusers' 10-step "trailing" spacing),
    `steps` of them from the (10 − int(10·denoise))-th on, then 0. Fewer than `steps` when they run out."""
    start = 10 - int(10 * denoise)
    timesteps = torch.arange(999, 0, -100)[start : start + steps]
    return torch.cat([schedule.sigma(timesteps), torch.zeros([1], dtype=torch.float32)])


SchedulerFn = Callable[[DiscreteSchedule, int], torch.Tensor]

#: ComfyUI's scheduler names, in its order (the order of the KSampler combo).
SCHEDULERS: dict[str, SchedulerFn] = {
    "simple": simple_scheduler,
    "sgm_uniform": sgm_uniform_scheduler,
    "karras": karras_scheduler,
    "exponential": exponential_scheduler,
    "ddim_uniform": ddim_uniform_scheduler,
    "beta": beta_scheduler,
    "normal": normal_scheduler,
    "linear_quadratic": linear_quadratic_scheduler,
    "kl_optimal": kl_optimal_scheduler,
}
SCHEDULER_NAMES: tuple[str, ...] = tuple(SCHEDULERS)


def calculate_sigmas(schedule: DiscreteSchedule, scheduler: str, steps: int) -> torch.Tensor:
    """The named scheduler's float32 sigmas for `steps` steps (usually steps + 1 values ending in 0)."""
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; expected one of {', '.join(SCHEDULER_NAMES)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return SCHEDULERS[scheduler](schedule, steps)


def ksampler_sigmas(
    schedule: DiscreteSchedule,
    scheduler: str,
    steps: int,
    denoise: float | None = 1.0,
    discard_penultimate: bool = False,
) -> torch.Tensor:
    """KSampler's sigmas (§6.5): denoise truncation and the discard-penultimate rule.

    denoise None or > 0.9999 → the full schedule; denoise ≤ 0 → an empty tensor (nothing to sample); otherwise
    the last steps + 1 values of the schedule for floor(steps / denoise) steps.
    """
    if denoise is None or denoise > 0.9999:
        return _schedule_for_sampler(schedule, scheduler, steps, discard_penultimate)
    if denoise <= 0.0:
        return torch.zeros([0], dtype=torch.float32)
    sigmas = _schedule_for_sampler(schedule, scheduler, int(steps / denoise), discard_penultimate)
    return sigmas[-(steps + 1) :]


def _schedule_for_sampler(schedule, scheduler, steps, discard_penultimate):
    if not discard_penultimate:
        return calculate_sigmas(schedule, scheduler, steps)
    sigmas = calculate_sigmas(schedule, scheduler, steps + 1)
    return torch.cat([sigmas[:-2], sigmas[-1:]])


def slice_sigmas(
    sigmas: torch.Tensor,
    start_step: int | None = None,
    last_step: int | None = None,
    force_full_denoise: bool = False,
) -> torch.Tensor | None:
    """KSamplerAdvanced's window on the sigmas (§6.5.3–4); None means "return the input latent unsampled".

    `last_step` < len − 1 keeps sigmas[0 … last_step] (its last value set to 0 with `force_full_denoise`);
    then `start_step` < len − 1 drops the first start_step values, and a larger one leaves nothing to do.
    """
    if last_step is not None and last_step < len(sigmas) - 1:
        sigmas = sigmas[: last_step + 1].clone()
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step is not None:
        if start_step >= len(sigmas) - 1:
            return None
        sigmas = sigmas[start_step:]
    return sigmas
