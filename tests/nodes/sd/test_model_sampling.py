"""Model-sampling variants against diffusers' schedulers: SD Turbo's timesteps, zero-terminal-SNR, LCM.

References: diffusers' `EulerDiscreteScheduler(timestep_spacing="trailing")` (SD Turbo's 999, 899, … timesteps),
its `rescale_zero_terminal_snr` (Lin et al. 2024, Algorithm 1), and `LCMScheduler`'s 50 original timesteps and
boundary-condition scalings c_skip / c_out.
"""
import math

import pytest
import torch
from diffusers import EulerDiscreteScheduler, LCMScheduler
from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr as diffusers_zsnr

from nodes.sd.denoiser import calculate_denoised, calculate_input
from nodes.sd.schedules import DistilledSchedule, ZSNR_LAST_ALPHA_CUMPROD, normal_scheduler, sd_schedule, sd_turbo_sigmas

SD = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def trailing_sigmas() -> torch.Tensor:
    scheduler = EulerDiscreteScheduler(**SD, timestep_spacing="trailing")
    scheduler.set_timesteps(10)
    assert scheduler.timesteps.tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    return scheduler.sigmas[:-1]


@pytest.mark.parametrize("steps, denoise, start", [(1, 1.0, 0), (4, 1.0, 0), (10, 1.0, 0), (2, 0.5, 5), (3, 0.75, 3),
                                                   (10, 0.3, 7)])
def test_sd_turbo_sigmas_are_diffusers_trailing_timesteps(steps, denoise, start):
    sigmas = sd_turbo_sigmas(sd_schedule(), steps, denoise)
    expected = trailing_sigmas()[start:start + steps]
    assert sigmas.dtype == torch.float32 and sigmas[-1] == 0 and len(sigmas) == len(expected) + 1
    torch.testing.assert_close(sigmas[:-1], expected, rtol=1e-5, atol=0)


def test_sd_turbo_with_no_denoise_is_only_the_final_zero():
    assert sd_turbo_sigmas(sd_schedule(), 4, 0.0).tolist() == [0.0]


def test_zero_terminal_snr_matches_diffusers_rescale():
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - diffusers_zsnr(betas), dim=0)
    expected = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5  # its last value is infinite (ᾱ_T = 0)
    schedule = sd_schedule().zero_terminal_snr()
    torch.testing.assert_close(schedule.sigmas[:-1].double(), expected[:-1], rtol=1e-6, atol=0)
    assert math.isinf(expected[-1]) and schedule.sigmas[-1] == pytest.approx(
        math.sqrt((1 - ZSNR_LAST_ALPHA_CUMPROD) / ZSNR_LAST_ALPHA_CUMPROD), rel=1e-6)
    assert schedule.sigmas[0] == pytest.approx(float(sd_schedule().sigmas[0]), rel=1e-6)  # first level kept


def test_lcm_schedule_speaks_lcm_timesteps():
    lcm = LCMScheduler(**SD, original_inference_steps=50)
    lcm.set_timesteps(4)
    distilled = DistilledSchedule(sd_schedule())
    assert len(distilled.sigmas) == 50 and distilled.num_timesteps == 1000
    base = sd_schedule()
    for t in lcm.timesteps.tolist():  # 999, 759, 499, 259: on the 50-step grid
        assert int(distilled.timestep(base.sigmas[t].reshape(1))) == t
        assert float(distilled.sigma(torch.tensor(float(t)))) == pytest.approx(float(base.sigmas[t]), rel=1e-6)
    # a σ between grid points goes to the nearest grid timestep (19 + 20k), never to another integer
    assert int(distilled.timestep(torch.tensor([1.0]))) % 20 == 19
    assert normal_scheduler(distilled, 1)[0] == pytest.approx(float(base.sigma_max), rel=1e-6)


@pytest.mark.parametrize("timestep", [999, 759, 259, 19])
def test_lcm_denoised_uses_diffusers_boundary_condition(timestep):
    c_skip, c_out = LCMScheduler(**SD).get_scalings_for_boundary_condition_discrete(timestep)
    sigma = torch.tensor([2.5])
    x, eps = torch.randn(2, 1, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    got = calculate_denoised("lcm", sigma, eps, x, torch.tensor([float(timestep)]))
    torch.testing.assert_close(got, c_out * (x - eps * 2.5) + c_skip * x)


def test_x0_and_img_to_img_predictions():
    sigma, x, out = torch.tensor([2.0]), torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    assert torch.equal(calculate_denoised("x0", sigma, out, x), out)
    assert torch.equal(calculate_denoised("img_to_img", sigma, out, x), out)
    assert torch.equal(calculate_input(sigma, x, "img_to_img"), x)
    torch.testing.assert_close(calculate_input(sigma, x, "x0"), x / math.sqrt(5))
    with pytest.raises(ValueError, match="timestep"):
        calculate_denoised("lcm", sigma, out, x)
