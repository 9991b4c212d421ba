"""Schedules against the reference tables of §6.3–6.5, to the printed precision."""

import math

import pytest
import torch

from nodes.sd.ksampler import sampling_sigmas
from nodes.sd.schedules import (
    SCHEDULER_NAMES,
    calculate_sigmas,
    ksampler_sigmas,
    linear_quadratic_scheduler,
    sd_schedule,
    slice_sigmas,
)

# §6.4, SD1.x schedule, 10 steps, 4 decimals.
TABLE_10 = {
    "normal": "14.6146, 7.8399, 4.6092, 2.9183, 1.9502, 1.3449, 0.9324, 0.625, 0.3687, 0.0292, 0",
    "sgm_uniform": "14.6146, 8.3072, 5.0924, 3.3251, 2.2797, 1.6156, 1.1629, 0.8319, 0.5712, 0.3437, 0",
    "simple": "14.6146, 8.3028, 5.0878, 3.3211, 2.2765, 1.6129, 1.1606, 0.8299, 0.5693, 0.3417, 0",
    "ddim_uniform": "8.3907, 5.1344, 3.3478, 2.2929, 1.6237, 1.1682, 0.8357, 0.5741, 0.3462, 0.0413, 0",
    "beta": "14.6146, 11.5428, 7.3718, 4.3728, 2.6152, 1.6183, 1.0273, 0.6549, 0.3955, 0.1991, 0",
    "karras": "14.6146, 9.1029, 5.4784, 3.1686, 1.7494, 0.9141, 0.4469, 0.2014, 0.0819, 0.0292, 0",
    "exponential": "14.6146, 7.3249, 3.6712, 1.84, 0.9222, 0.4622, 0.2317, 0.1161, 0.0582, 0.0292, 0",
    "kl_optimal": "14.6146, 4.2324, 2.3937, 1.5971, 1.133, 0.8152, 0.5729, 0.3725, 0.1953, 0.0292, 0",
}
NORMAL_20 = (
    "14.6146, 10.7468, 8.08152, 6.20494, 4.85565, 3.86538, 3.12376, 2.55717, 2.11566, 1.76482, 1.48058, 1.24581, "
    "1.04814, 0.878428, 0.729719, 0.596434, 0.473585, 0.355545, 0.232164, 0.0291672, 0"
)
KARRAS_20 = (
    "14.6146, 11.7254, 9.3402, 7.38362, 5.78941, 4.49983, 3.46475, 2.64084, 1.99092, 1.48321, 1.09079, 0.790946, "
    "0.564722, 0.39639, 0.273038, 0.184168, 0.121341, 0.0778601, 0.0484814, 0.0291672, 0"
)
# §6.5: normal, steps = 10, denoise = 0.5.
IMG2IMG_10_HALF = "1.4806, 1.2458, 1.0481, 0.8784, 0.7297, 0.5964, 0.4736, 0.3555, 0.2322, 0.0292, 0"


def assert_printed(values: torch.Tensor, printed: str) -> None:
    """Each value equals the printed one to the printed number of decimals."""
    refs = [s.strip() for s in printed.split(",")]
    assert len(values) == len(refs), (values, refs)
    for value, ref in zip(values.tolist(), refs):
        decimals = len(ref.split(".")[1]) if "." in ref else 0
        assert abs(value - float(ref)) <= 0.5 * 10**-decimals + 1e-9, (value, ref)


def test_discrete_schedule_anchors():
    s = sd_schedule()
    assert s.sigmas.dtype == torch.float32 and s.log_sigmas.dtype == torch.float32 and len(s.sigmas) == 1000
    assert float(s.sigma_min) == pytest.approx(0.0291671585, abs=5e-11)
    assert float(s.sigma_max) == pytest.approx(14.6146412, abs=5e-8)
    assert int(s.timestep(torch.tensor(1.0))) == 354
    assert int(s.timestep(s.sigma_max)) == 999 and int(s.timestep(s.sigma_min)) == 0
    # sqrt(1 + σ_max²) = 14.6488135 (float64 of the float32 σ_max); float32 arithmetic gives the nearest float32.
    assert math.sqrt(1 + float(s.sigma_max) ** 2) == pytest.approx(14.6488135, abs=5e-8)
    assert float(torch.sqrt(1.0 + s.sigma_max**2.0)) == pytest.approx(14.6488135, abs=1e-6)


def test_timestep_is_nearest_in_log_sigma_per_element():
    s = sd_schedule()
    sigma = torch.tensor([14.6146, 1.0, 0.03, 100.0, 1e-4])
    expected = [int((s.log_sigmas.double() - math.log(v)).abs().argmin()) for v in sigma.tolist()]
    assert s.timestep(sigma).tolist() == expected
    assert expected[3] == 999 and expected[4] == 0


def test_sigma_interpolates_log_sigma():
    s = sd_schedule()
    assert float(s.sigma(999)) == pytest.approx(float(s.sigma_max), rel=1e-6)
    assert float(s.sigma(0)) == pytest.approx(float(s.sigma_min), rel=1e-6)
    assert float(s.sigma(2000)) == pytest.approx(float(s.sigma_max), rel=1e-6)  # clamped
    geometric_mean = math.sqrt(float(s.sigmas[10]) * float(s.sigmas[11]))
    assert float(s.sigma(10.5)) == pytest.approx(geometric_mean, rel=1e-6)
    assert s.percent_to_sigma(0.0) == 999999999.9 and s.percent_to_sigma(1.0) == 0.0
    assert s.percent_to_sigma(0.5) == pytest.approx(float(s.sigma(499.5)), rel=1e-7)


def test_scheduler_names_in_comfyui_order():
    assert SCHEDULER_NAMES == (
        "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", "linear_quadratic",
        "kl_optimal",
    )


@pytest.mark.parametrize("name", sorted(TABLE_10))
def test_ten_step_reference_table(name):
    assert_printed(calculate_sigmas(sd_schedule(), name, 10), TABLE_10[name])


def test_twenty_step_reference_lists():
    assert_printed(calculate_sigmas(sd_schedule(), "normal", 20), NORMAL_20)
    assert_printed(calculate_sigmas(sd_schedule(), "karras", 20), KARRAS_20)


def test_beta_rounds_half_to_even_and_skips_repeats():
    # 10 steps: quantile 0.5 of the symmetric Beta(0.6, 0.6) is 0.5, t = rint(499.5) = 500 (even), not 499.
    s = sd_schedule()
    assert float(calculate_sigmas(s, "beta", 10)[5]) == float(s.sigmas[500])
    many = calculate_sigmas(s, "beta", 200)
    assert len(many) < 201  # consecutive duplicate timesteps collapse near the ends
    assert bool((many[:-1] > many[1:]).all()) and float(many[0]) == float(s.sigma_max)


def test_linear_quadratic_shape():
    s = sd_schedule()
    sigmas = linear_quadratic_scheduler(s, 10)
    sigma_max = float(s.sigma_max)
    assert len(sigmas) == 11 and float(sigmas[0]) == pytest.approx(sigma_max) and float(sigmas[-1]) == 0
    # First half: linear from 1 down to 1 − 0.025·4/5 in units of σ_max (threshold 0.025 after 5 steps).
    assert [float(v) / sigma_max for v in sigmas[:5]] == pytest.approx([1 - 0.005 * i for i in range(5)], abs=1e-6)
    assert bool((sigmas[:-1] > sigmas[1:]).all())
    assert linear_quadratic_scheduler(s, 1).tolist() == pytest.approx([sigma_max, 0.0])


def test_one_step_schedules():
    s = sd_schedule()
    for name in SCHEDULER_NAMES:
        sigmas = calculate_sigmas(s, name, 1)
        assert float(sigmas[-1]) == 0 and len(sigmas) == 2, name
    assert calculate_sigmas(s, "kl_optimal", 1).tolist() == pytest.approx([float(s.sigma_max), 0.0])


def test_unknown_scheduler_raises():
    with pytest.raises(ValueError, match="unknown scheduler"):
        calculate_sigmas(sd_schedule(), "nope", 10)


def test_img2img_denoise_takes_tail_of_longer_schedule():
    s = sd_schedule()
    half = ksampler_sigmas(s, "normal", 10, denoise=0.5)
    assert_printed(half, IMG2IMG_10_HALF)
    assert torch.equal(half, calculate_sigmas(s, "normal", 20)[-11:])
    # floor(7 / 0.45) = 15 steps, last 8 values.
    assert torch.equal(ksampler_sigmas(s, "karras", 7, denoise=0.45), calculate_sigmas(s, "karras", 15)[-8:])
    assert torch.equal(ksampler_sigmas(s, "normal", 10, denoise=0.99995), calculate_sigmas(s, "normal", 10))
    assert torch.equal(ksampler_sigmas(s, "normal", 10, denoise=None), calculate_sigmas(s, "normal", 10))
    assert len(ksampler_sigmas(s, "normal", 10, denoise=0.0)) == 0


def test_discard_penultimate_samplers():
    s = sd_schedule()
    full = calculate_sigmas(s, "normal", 11)
    expected = torch.cat([full[:-2], full[-1:]])
    for name in ("dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"):
        assert torch.equal(sampling_sigmas(name, "normal", 10), expected), name
    assert torch.equal(sampling_sigmas("euler", "normal", 10), calculate_sigmas(s, "normal", 10))
    # With img2img the discard applies to the longer schedule before truncation.
    longer = calculate_sigmas(s, "karras", 21)
    assert torch.equal(sampling_sigmas("uni_pc", "karras", 10, denoise=0.5), torch.cat([longer[:-2], longer[-1:]])[-11:])


def test_advanced_start_and_end_steps():
    full = calculate_sigmas(sd_schedule(), "normal", 10)
    assert torch.equal(slice_sigmas(full, last_step=7), full[:8])
    forced = slice_sigmas(full, last_step=7, force_full_denoise=True)
    assert torch.equal(forced[:-1], full[:7]) and float(forced[-1]) == 0.0
    assert float(full[7]) != 0.0  # the input was not modified in place
    assert torch.equal(slice_sigmas(full, start_step=3), full[3:])
    assert torch.equal(slice_sigmas(full, start_step=3, last_step=7), full[3:8])
    assert torch.equal(slice_sigmas(full, last_step=10, force_full_denoise=True), full)  # not < len − 1: untouched
    assert slice_sigmas(full, start_step=10) is None
    assert slice_sigmas(full, start_step=5, last_step=5) is None
