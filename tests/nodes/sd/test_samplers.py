"""Samplers: exactness on analytic denoisers, convergence order, formula transcriptions, parity with diffusers.

Evidence, strongest first:
* diffusers' own schedulers driven with our sigmas and the same (analytic, nonlinear) denoiser: euler, heun,
  euler_ancestral (same generator draws), lms, dpmpp_2m, dpmpp_2m_sde (same injected noise), dpmpp_sde (same
  seeded Brownian tree), uni_pc. Tolerance 1e-6 relative to the latent's scale. Measured: euler, heun and lms
  are bit-identical; the others differ by ≤ 2e-7 because diffusers computes the same steps in another algebraic
  form (VP latents, ε instead of x0). UniPC: 1e-10 in float64, 3e-4 in float32 (see its test).
* float64 transcriptions of each sampler's published formula, 3 steps, same noise: tolerance 1e-5.
* a constant denoiser, for which every deterministic sampler is exact, and a Gaussian-data denoiser with a
  closed-form ODE solution, for the order of convergence.
"""

import math

import pytest
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    DPMSolverSDEScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    UniPCMultistepScheduler,
)

from nodes.sd.samplers import SAMPLER_NAMES, SAMPLERS, get_sampler
from nodes.sd.samplers.brownian import BrownianTreeNoiseSampler
from nodes.sd.samplers.common import ancestral_step
from nodes.sd.schedules import calculate_sigmas, ksampler_sigmas, sd_schedule
from tests.nodes.sd._sampling_helpers import (
    REFERENCES,
    ConstantDenoiser,
    GaussianDenoiser,
    nonlinear_denoiser,
)

SHAPE = (2, 4, 8, 8)
DETERMINISTIC = ["euler", "heun", "dpm_2", "lms", "dpmpp_2m", "ddim", "uni_pc", "uni_pc_bh2"]
STOCHASTIC = [name for name in SAMPLER_NAMES if name not in DETERMINISTIC]
pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:The `scale_model_input` function"),
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
    pytest.mark.filterwarnings("ignore:Should have tb<=t1"),  # diffusers' own Brownian tree, see brownian.py
]
TRAIN_CONFIG = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def start(sigma0: float, seed: int = 0) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed)) * sigma0


def sigmas_for(name: str, steps: int = 10, scheduler: str = "karras") -> torch.Tensor:
    return ksampler_sigmas(sd_schedule(), scheduler, steps, discard_penultimate=get_sampler(name).discard_penultimate)


def close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    return float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max()))


# --- registry ---------------------------------------------------------------------------------------------------


def test_required_samplers_present_in_comfyui_order():
    required = ["euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2m", "dpmpp_2m_sde",
                "dpmpp_sde", "dpmpp_2s_ancestral", "ddim", "uni_pc"]
    assert set(required) <= set(SAMPLER_NAMES)
    comfy_order = ["euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2s_ancestral",
                   "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun",
                   "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "lcm", "ddim", "uni_pc", "uni_pc_bh2"]
    assert list(SAMPLER_NAMES) == comfy_order
    assert {n for n, s in SAMPLERS.items() if s.discard_penultimate} == {"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"}
    assert SAMPLERS["ddim"].fn is SAMPLERS["euler"].fn and SAMPLERS["ddim"].inpaint_random_noise
    with pytest.raises(ValueError, match="unknown sampler"):
        get_sampler("dpm_fast")


# --- analytic denoisers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_constant_target_is_reached(name, dtype):
    """With D ≡ target every sampler ends on the target (uni_pc at its residual σ = 0.001).

    In float32 UniPC loses ~3e-5 (relative) on the way: like ComfyUI's it converts x0 → ε → x0 in the VP
    latent, dividing by α ≈ 0.07 at σ_max. In float64 every sampler is exact to 1e-9.
    """
    target = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7)).to(dtype)
    sigmas = sigmas_for(name).to(dtype)
    x0 = start(float(sigmas[0])).to(dtype)
    out = get_sampler(name).fn(ConstantDenoiser(target), x0, sigmas, seed=5)
    if name.startswith("uni_pc"):
        # The exact flow of a constant x0 is linear in σ: x(σ) = target + σ/σ0·(x0 − target).
        target = target + 0.001 / float(sigmas[0]) * (x0 - target)
    tol = 1e-9 if dtype == torch.float64 else (5e-5 if name.startswith("uni_pc") else 1e-5)
    assert close(out, target, tol), float((out - target).abs().max())


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_constant_target_flow_is_exact_on_partial_schedule(name):
    """Stopping at σ_end > 0, a deterministic sampler must be on the exact linear flow of a constant x0."""
    target = torch.randn(SHAPE, generator=torch.Generator().manual_seed(8))
    sigmas = sigmas_for(name)[:-3]  # ends at a nonzero σ
    x0 = start(float(sigmas[0]))
    out = get_sampler(name).fn(ConstantDenoiser(target), x0, sigmas)
    exact = target + float(sigmas[-1]) / float(sigmas[0]) * (x0 - target)
    assert close(out, exact, 5e-5 if name.startswith("uni_pc") else 1e-5)


# Observed order of convergence on Gaussian data: the error ratio between n and 2n steps is ~2^order. UniPC is
# erratic before 40 steps (its error partly cancels), so it is measured later and only bounded below.
ORDERS = {
    "euler": ((20, 40), 1.8, 2.2), "heun": ((20, 40), 3.5, 5.0), "dpm_2": ((20, 40), 3.5, 5.0),
    "dpmpp_2m": ((20, 40), 3.5, 5.0), "lms": ((40, 80), 10.0, 20.0), "uni_pc": ((40, 80), 4.0, 40.0),
}


@pytest.mark.parametrize("name", sorted(ORDERS))
def test_order_of_convergence_on_gaussian_data(name):
    model = GaussianDenoiser(mu=0.3, s=0.5)
    step_counts, low, high = ORDERS[name]
    errors = []
    for steps in step_counts:
        sigmas = calculate_sigmas(sd_schedule(), "karras", steps)[:-1].double()  # stop at σ_min: no special last step
        x0 = start(float(sigmas[0])).double()
        out = get_sampler(name).fn(model, x0, sigmas)
        errors.append(float((out - model.exact(x0, float(sigmas[0]), float(sigmas[-1]))).abs().max()))
    assert low <= errors[0] / errors[1] <= high, errors


# --- transcriptions of the formulas (float64, 3 steps) ------------------------------------------------------------


@pytest.mark.parametrize("final_zero", [False, True])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_matches_formula_transcription(name, final_zero):
    full = sigmas_for(name, steps=12)
    sigmas = full[-4:] if final_zero else full[2:6]  # 3 steps, into 0 or between nonzero levels
    x0 = start(float(sigmas[0]))
    draws = [torch.randn(SHAPE, generator=torch.Generator().manual_seed(100 + k)) for k in range(8)]
    queue = list(draws)
    kwargs = {}
    if name in ("euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde"):
        kwargs["noise_sampler"] = lambda a, b: queue.pop(0)
    out = get_sampler(name).fn(nonlinear_denoiser, x0, sigmas, **kwargs)
    ref = REFERENCES[name](x0.double(), [float(v) for v in sigmas], [d.double() for d in draws])
    assert close(out.double(), ref, 1e-5), float((out.double() - ref).abs().max())


def test_lms_coefficients_integrate_lagrange_basis():
    from nodes.sd.samplers.lms import lms_coefficient

    s = calculate_sigmas(sd_schedule(), "karras", 10).numpy()
    i = 5
    for order in (1, 2, 3, 4):
        coeffs = [lms_coefficient(order, s, i, j) for j in range(order)]
        # The basis sums to 1, so the coefficients sum to the step length.
        assert sum(coeffs) == pytest.approx(float(s[i + 1]) - float(s[i]), rel=1e-6)
    # Order 2 closed form: ∫ (τ − σ_{i−1})/(σ_i − σ_{i−1}) dτ over [σ_i, σ_{i+1}].
    a, b, p = float(s[i]), float(s[i + 1]), float(s[i - 1])
    exact = ((b - p) ** 2 - (a - p) ** 2) / (2 * (a - p))
    assert lms_coefficient(2, s, i, 0) == pytest.approx(exact, rel=1e-6)


def test_ancestral_step_split():
    down, up = ancestral_step(torch.tensor(2.0), torch.tensor(1.0))
    assert float(up) == pytest.approx(math.sqrt(1 * (4 - 1) / 4)) and float(down**2 + up**2) == pytest.approx(1.0)
    down, up = ancestral_step(torch.tensor(2.0), torch.tensor(0.0))
    assert float(down) == 0 and float(up) == 0
    down, up = ancestral_step(torch.tensor(2.0), torch.tensor(1.0), eta=0.0)
    assert float(down) == 1.0 and up == 0.0


# --- noise sources ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_samplers_are_seeded(name):
    sigmas = sigmas_for(name, steps=6)
    x0 = start(float(sigmas[0]))
    run = lambda seed: get_sampler(name).fn(nonlinear_denoiser, x0, sigmas, seed=seed)
    first = run(11)
    assert torch.equal(first, run(11))
    assert not torch.allclose(first, run(12))


def test_ancestral_noise_is_one_draw_of_x_shape_per_step_from_the_seed():
    sigmas = sigmas_for("euler_ancestral", steps=5)
    x0 = start(float(sigmas[0]))
    generator = torch.Generator().manual_seed(42)
    draws = [torch.randn(SHAPE, generator=generator) for _ in range(4)]  # no draw on the step into σ = 0
    queue = list(draws)
    out = get_sampler("euler_ancestral").fn(nonlinear_denoiser, x0, sigmas, seed=42)
    explicit = get_sampler("euler_ancestral").fn(nonlinear_denoiser, x0, sigmas, noise_sampler=lambda a, b: queue.pop(0))
    assert torch.equal(out, explicit) and not queue


def test_brownian_tree_increments_are_standard_normal_and_seeded():
    x = torch.zeros(4, 4, 32, 32)
    tree = BrownianTreeNoiseSampler(x, torch.tensor(0.03), torch.tensor(14.6), seed=3)
    a = tree(torch.tensor(5.0), torch.tensor(4.0))
    assert a.shape == x.shape
    assert abs(float(a.mean())) < 0.05 and abs(float(a.std()) - 1.0) < 0.05
    again = BrownianTreeNoiseSampler(x, torch.tensor(0.03), torch.tensor(14.6), seed=3)
    assert torch.equal(again(torch.tensor(5.0), torch.tensor(4.0)), a)  # independent of query history
    other = BrownianTreeNoiseSampler(x, torch.tensor(0.03), torch.tensor(14.6), seed=4)
    assert not torch.allclose(other(torch.tensor(5.0), torch.tensor(4.0)), a)
    # Increments over adjacent intervals add up: W(5)−W(3) = (W(5)−W(4)) + (W(4)−W(3)).
    whole = tree(torch.tensor(5.0), torch.tensor(3.0)) * math.sqrt(2.0)
    parts = tree(torch.tensor(5.0), torch.tensor(4.0)) + tree(torch.tensor(4.0), torch.tensor(3.0))
    assert torch.allclose(whole, parts, atol=1e-5)


# --- parity with diffusers' schedulers ----------------------------------------------------------------------------


def _override(scheduler, sigmas: torch.Tensor, timesteps_count: int):
    """Point a diffusers scheduler at our sigmas; timesteps are placeholders (the denoiser takes σ directly)."""
    scheduler.set_timesteps(timesteps_count)
    scheduler.sigmas = sigmas.clone()
    scheduler.timesteps = torch.arange(timesteps_count, 0, -1, dtype=torch.float32)
    scheduler.set_begin_index(0)
    return scheduler


def drive_ve(scheduler, x, eval_sigma, output="sample", **step_kwargs):
    """Run a k-diffusion style (VE latent) diffusers scheduler with our denoiser."""
    for t in scheduler.timesteps:
        sigma = eval_sigma(scheduler)
        den = nonlinear_denoiser(x, sigma.reshape(1))
        model_output = den if output == "sample" else (x - den) / sigma
        x = scheduler.step(model_output, t, x, **step_kwargs).prev_sample
    return x


def _current_sigma(scheduler):
    return scheduler.sigmas[scheduler.step_index or 0]


def test_euler_matches_diffusers():
    sigmas = sigmas_for("euler")
    scheduler = EulerDiscreteScheduler(**TRAIN_CONFIG, prediction_type="sample")
    scheduler.set_timesteps(sigmas=sigmas.tolist())
    scheduler.set_begin_index(0)
    x0 = start(float(sigmas[0]))
    ours = get_sampler("euler").fn(nonlinear_denoiser, x0, sigmas)
    assert torch.allclose(scheduler.sigmas, sigmas)
    assert close(ours, drive_ve(scheduler, x0, _current_sigma), 1e-6)


def test_heun_matches_diffusers():
    sigmas = sigmas_for("heun")
    interleaved = torch.cat([sigmas[:1], sigmas[1:-1].repeat_interleave(2), sigmas[-1:]])
    scheduler = _override(HeunDiscreteScheduler(**TRAIN_CONFIG, prediction_type="sample"), interleaved, 2 * len(sigmas) - 3)
    x0 = start(float(sigmas[0]))
    ours = get_sampler("heun").fn(nonlinear_denoiser, x0, sigmas)
    assert close(ours, drive_ve(scheduler, x0, _current_sigma), 1e-6)


def test_euler_ancestral_matches_diffusers_with_the_same_generator():
    sigmas = sigmas_for("euler_ancestral")
    scheduler = _override(EulerAncestralDiscreteScheduler(**TRAIN_CONFIG), sigmas, len(sigmas) - 1)
    x0 = start(float(sigmas[0]))
    ours = get_sampler("euler_ancestral").fn(nonlinear_denoiser, x0, sigmas, seed=9)
    theirs = drive_ve(scheduler, x0, _current_sigma, output="epsilon", generator=torch.Generator().manual_seed(9))
    assert close(ours, theirs, 1e-6)


def test_lms_matches_diffusers_until_the_last_step():
    """diffusers extrapolates into σ = 0 where k-diffusion (ComfyUI) returns the denoised prediction."""
    sigmas = sigmas_for("lms")
    scheduler = _override(LMSDiscreteScheduler(**TRAIN_CONFIG, prediction_type="sample"), sigmas, len(sigmas) - 1)
    x0 = start(float(sigmas[0]))
    ours, theirs, x = [], [], x0
    get_sampler("lms").fn(nonlinear_denoiser, x0, sigmas, callback=lambda info: ours.append(info["x"]))
    for t in scheduler.timesteps:
        theirs.append(x)
        sigma = _current_sigma(scheduler)
        x = scheduler.step(nonlinear_denoiser(x, sigma.reshape(1)), t, x, order=4).prev_sample
    assert len(ours) == len(theirs) == len(sigmas) - 1
    for a, b in zip(ours, theirs):
        assert close(a, b, 1e-6)


def drive_vp(scheduler, x_ve, sigmas, noises=None):
    """Run a VP-latent diffusers multistep scheduler (data prediction) and return the VE latent."""
    x = x_ve / (1 + sigmas[0] ** 2) ** 0.5
    for i, t in enumerate(scheduler.timesteps):
        sigma = sigmas[i]
        den = nonlinear_denoiser(x * (1 + sigma**2) ** 0.5, sigma.reshape(1))
        kwargs = {} if noises is None else {"variance_noise": noises[i]}
        x = scheduler.step(den, t, x, **kwargs).prev_sample
    return x * (1 + sigmas[-1] ** 2) ** 0.5


def test_dpmpp_2m_matches_diffusers_dpmsolver_multistep():
    sigmas = sigmas_for("dpmpp_2m")
    scheduler = DPMSolverMultistepScheduler(
        **TRAIN_CONFIG, prediction_type="sample", algorithm_type="dpmsolver++", solver_order=2,
        solver_type="midpoint", lower_order_final=True, final_sigmas_type="zero",
    )
    _override(scheduler, sigmas, len(sigmas) - 1)
    x0 = start(float(sigmas[0]))
    ours = get_sampler("dpmpp_2m").fn(nonlinear_denoiser, x0, sigmas)
    assert close(ours, drive_vp(scheduler, x0, sigmas), 1e-6)


def test_dpmpp_2m_sde_matches_diffusers_sde_dpmsolver_with_the_same_noise():
    sigmas = sigmas_for("dpmpp_2m_sde")
    scheduler = DPMSolverMultistepScheduler(
        **TRAIN_CONFIG, prediction_type="sample", algorithm_type="sde-dpmsolver++", solver_order=2,
        solver_type="midpoint", lower_order_final=True, final_sigmas_type="zero",
    )
    _override(scheduler, sigmas, len(sigmas) - 1)
    x0 = start(float(sigmas[0]))
    noises = [torch.randn(SHAPE, generator=torch.Generator().manual_seed(200 + i)) for i in range(len(sigmas))]
    queue = list(noises)
    ours = get_sampler("dpmpp_2m_sde").fn(nonlinear_denoiser, x0, sigmas, noise_sampler=lambda a, b: queue.pop(0))
    assert close(ours, drive_vp(scheduler, x0, sigmas, noises), 1e-6)


def test_dpmpp_sde_matches_diffusers_dpmsolver_sde_with_the_same_brownian_tree():
    """Same seed, same torchsde tree over [σ_min, σ_max]: the SDE noise itself is compared, not injected."""
    sigmas = sigmas_for("dpmpp_sde")
    interleaved = torch.cat([sigmas[:1], sigmas[1:-1].repeat_interleave(2), sigmas[-1:]])
    scheduler = DPMSolverSDEScheduler(**TRAIN_CONFIG, prediction_type="epsilon", noise_sampler_seed=21)
    _override(scheduler, interleaved, 2 * len(sigmas) - 3)
    x0 = start(float(sigmas[0]))
    ours = get_sampler("dpmpp_sde").fn(nonlinear_denoiser, x0, sigmas, seed=21)

    def eval_sigma(s):
        return _current_sigma(s) if s.state_in_first_order else s.mid_point_sigma

    theirs = drive_ve(scheduler, x0, eval_sigma, output="epsilon")
    assert close(ours, theirs, 1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_uni_pc_matches_diffusers_unipc(variant, dtype):
    """Identical algorithm: equal to 1e-10 in float64. In float32 they differ by ~1.5e-4 (relative), the cost of
    the x0 → ε → x0 round trip in the VP latent that ComfyUI's UniPC makes and diffusers' (fed x0) does not."""
    sigmas = sigmas_for("uni_pc").to(dtype)
    with_floor = sigmas.clone()
    with_floor[-1] = 0.001  # ComfyUI's UniPC stops at σ = 0.001 instead of 0
    scheduler = UniPCMultistepScheduler(
        **TRAIN_CONFIG, prediction_type="sample", predict_x0=True, solver_type=variant, solver_order=3,
        lower_order_final=True,
    )
    _override(scheduler, with_floor, len(sigmas) - 1)
    x0 = start(float(sigmas[0])).to(dtype)
    name = "uni_pc" if variant == "bh1" else "uni_pc_bh2"
    ours = get_sampler(name).fn(nonlinear_denoiser, x0, sigmas)
    assert close(ours, drive_vp(scheduler, x0, with_floor), 1e-10 if dtype == torch.float64 else 3e-4)


def test_callback_reports_each_step_and_can_interrupt():
    sigmas = sigmas_for("heun", steps=6)
    seen = []
    get_sampler("heun").fn(nonlinear_denoiser, start(float(sigmas[0])), sigmas, callback=seen.append)
    assert [info["i"] for info in seen] == list(range(6))
    assert [float(info["sigma"]) for info in seen] == [float(v) for v in sigmas[:-1]]
    assert all(info["denoised"].shape == SHAPE and info["x"].shape == SHAPE for info in seen)

    class Interrupted(Exception):
        pass

    def stop_at_two(info):
        if info["i"] == 2:
            raise Interrupted

    for name in SAMPLER_NAMES:
        calls = ConstantDenoiser(torch.zeros(SHAPE))
        with pytest.raises(Interrupted):
            get_sampler(name).fn(calls, start(14.6), sigmas_for(name, steps=6), seed=1, callback=stop_at_two)
        assert calls.calls <= 6, name
