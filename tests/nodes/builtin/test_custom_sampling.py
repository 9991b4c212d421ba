"""Custom sampling nodes through the real executor on a tiny real-layout SD1 checkpoint (reference §6.2–6.5).

SamplerCustom / SamplerCustomAdvanced are checked against KSampler bit for bit (same seed, sampler, scheduler),
against each other, and against a UNet call made here by hand (no noise, one euler step, positive only); the
schedulers against the reference tables of §6.4–6.5.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Context, Environment, Interrupted
from nodes.builtin import builtin_registry
from nodes.builtin.custom_sampling import Guider, NoiseSource, SamplerChoice, sample_custom
from nodes.paths import DataPaths
from nodes.sd import tiny

SCALE = 0.18215
MODULE = "comfy_extras.nodes_custom_sampler"
NORMAL_10 = [14.6146, 7.8399, 4.6092, 2.9183, 1.9502, 1.3449, 0.9324, 0.625, 0.3687, 0.0292, 0]
NORMAL_10_DENOISE_HALF = [1.4806, 1.2458, 1.0481, 0.8784, 0.7297, 0.5964, 0.4736, 0.3555, 0.2322, 0.0292, 0]
KARRAS_10 = [14.6146, 9.1029, 5.4784, 3.1686, 1.7494, 0.9141, 0.4469, 0.2014, 0.0819, 0.0292, 0]
KARRAS_20 = [14.6146, 11.7254, 9.3402, 7.38362, 5.78941, 4.49983, 3.46475, 2.64084, 1.99092, 1.48321, 1.09079,
             0.790946, 0.564722, 0.39639, 0.273038, 0.184168, 0.121341, 0.0778601, 0.0484814, 0.0291672, 0]
EXPONENTIAL_10 = [14.6146, 7.3249, 3.6712, 1.84, 0.9222, 0.4622, 0.2317, 0.1161, 0.0582, 0.0292, 0]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("custom_sampling")))
    tiny.write_single_file("sd1", env.paths.models("checkpoints") / "sd1.safetensors")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(32, 32, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    pixels[:, :16, 3] = 0  # left half transparent: MASK 1 there (regenerate)
    PILImage.fromarray(pixels, "RGBA").save(env.paths.input / "half.png")
    return env


def run(env, wf, *watched):
    """Execute `wf` with a PreviewAny on output 0 of each watched node (only what feeds an output node runs)."""
    wf = {**wf, **{f"show_{n}": {"class_type": "PreviewAny", "inputs": {"source": [n, 0]}} for n in watched}}
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p", prompt=wf)
    assert result.success, result.error
    return result.values


def out(values, node, index=0):
    return values[node].outputs[index][0]


def base(latent="empty"):
    """Checkpoint, prompts and a latent at ["L", 0]: empty, VAE-encoded, or VAE-encoded with a noise mask."""
    wf = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.safetensors"}},
          "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red door", "clip": ["4", 1]}},
          "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
          "10": {"class_type": "LoadImage", "inputs": {"image": "half.png"}},
          "11": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}}
    if latent == "empty":
        wf["L"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}}
    elif latent == "encoded":
        wf["L"] = {"class_type": "LatentUpscaleBy",
                   "inputs": {"samples": ["11", 0], "upscale_method": "nearest-exact", "scale_by": 1.0}}
    else:
        wf["L"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["11", 0], "mask": ["10", 1]}}
    return wf


def ksampler(seed=7, steps=4, cfg=5.0, sampler="euler", scheduler="normal", denoise=1.0):
    return {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": seed, "steps": steps, "cfg": cfg,
                                                 "sampler_name": sampler, "scheduler": scheduler, "positive": ["6", 0],
                                                 "negative": ["7", 0], "latent_image": ["L", 0], "denoise": denoise}}


def custom_nodes(seed=7, steps=4, cfg=5.0, sampler="euler", scheduler="normal", denoise=1.0, add_noise=True):
    """SamplerCustom at "C" fed by KSamplerSelect "S" and BasicScheduler "B"."""
    return {"S": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}},
            "B": {"class_type": "BasicScheduler",
                  "inputs": {"model": ["4", 0], "scheduler": scheduler, "steps": steps, "denoise": denoise}},
            "C": {"class_type": "SamplerCustom",
                  "inputs": {"model": ["4", 0], "add_noise": add_noise, "noise_seed": seed, "cfg": cfg,
                             "positive": ["6", 0], "negative": ["7", 0], "sampler": ["S", 0], "sigmas": ["B", 0],
                             "latent_image": ["L", 0]}}}


def advanced(name, noise, guider, sigmas, latent=("L", 0), sampler=("S", 0)):
    return {name: {"class_type": "SamplerCustomAdvanced",
                   "inputs": {"noise": list(noise), "guider": list(guider), "sampler": list(sampler),
                              "sigmas": list(sigmas), "latent_image": list(latent)}}}


def close_to_table(sigmas, table, atol=5e-5):
    return sigmas.dtype == torch.float32 and torch.allclose(sigmas, torch.tensor(table), rtol=0, atol=atol)


@pytest.mark.parametrize("latent, denoise", [("empty", 1.0), ("encoded", 0.6), ("masked", 1.0)])
def test_sampler_custom_equals_ksampler(env, latent, denoise):
    values = run(env, {**base(latent), "3": ksampler(denoise=denoise), **custom_nodes(denoise=denoise)}, "3", "C")
    want = out(values, "3")
    got, denoised = out(values, "C", 0), out(values, "C", 1)
    assert torch.equal(got["samples"], want["samples"])
    assert ("noise_mask" in got) == (latent == "masked")  # the latent's other keys ride along, as in KSampler
    assert len(out(values, "B")) == 5
    # euler's last step (σ → 0) returns its x0 prediction, up to float rounding: x + (x0 − x)/σ·(0 − σ).
    assert torch.allclose(denoised["samples"], got["samples"], rtol=0, atol=1e-4)


def test_sampler_custom_advanced_equals_sampler_custom(env):
    # euler_ancestral draws noise of its own, seeded with the NOISE's seed: both paths must hand it over.
    wf = {**base(), **custom_nodes(seed=11, sampler="euler_ancestral"),
          "N": {"class_type": "RandomNoise", "inputs": {"noise_seed": 11}},
          "G": {"class_type": "CFGGuider",
                "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "cfg": 5.0}},
          **advanced("A", ("N", 0), ("G", 0), ("B", 0))}
    values = run(env, wf, "A", "C")
    for index in (0, 1):
        assert torch.equal(out(values, "A", index)["samples"], out(values, "C", index)["samples"])
    other = run(env, {**wf, "N": {"class_type": "RandomNoise", "inputs": {"noise_seed": 12}}}, "A")
    assert (out(other, "A")["samples"] - out(values, "A")["samples"]).abs().max() > 1e-3


def test_no_noise_is_one_plain_unet_step(env):
    # One euler step from σ ≈ 1 to σ' ≈ 0.5 with no noise and the positive alone, computed here straight from the
    # UNet: x = encoded latent × 0.18215, x0 = x − σ·ε(x/√(σ²+1), t = timestep(1.0) = 354), and the step
    # x + (x − x0)/σ·(σ' − σ). denoised_output is that x0, unscaled.
    wf = {**base("encoded"), "S": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
          "K": {"class_type": "KarrasScheduler", "inputs": {"steps": 2, "sigma_max": 1.0, "sigma_min": 0.5,
                                                            "rho": 7.0}},
          "P": {"class_type": "SplitSigmas", "inputs": {"sigmas": ["K", 0], "step": 1}},
          "N": {"class_type": "DisableNoise", "inputs": {}},
          "G": {"class_type": "BasicGuider", "inputs": {"model": ["4", 0], "conditioning": ["6", 0]}},
          **advanced("A", ("N", 0), ("G", 0), ("P", 0)),
          "C": custom_nodes(seed=3, cfg=1.0, add_noise=False)["C"]}
    wf["C"]["inputs"]["sigmas"] = ["P", 0]
    values = run(env, wf, "A", "C", "L")
    sigmas = out(values, "P", 0)
    assert sigmas.tolist() == [pytest.approx(1.0, abs=1e-6), pytest.approx(0.5, abs=1e-6)]
    unet, cond = out(values, "4").unet, out(values, "6")[0][0]
    x = out(values, "L")["samples"] * SCALE
    sigma, sigma_next = sigmas
    with torch.no_grad():
        eps = unet(x / (sigma**2 + 1) ** 0.5, torch.tensor([354.0]), encoder_hidden_states=cond).sample
    x0 = x - eps * sigma
    want = x + (x - x0) / sigma * (sigma_next - sigma)
    # Float32 rounding of the same ops in another order (the UNet input, the step), amplified by the random UNet:
    # about 1e-5 relative to values of size ~6 here; a wrong σ, timestep or conditioning moves them by > 1e-2.
    assert torch.allclose(out(values, "A")["samples"], want / SCALE, rtol=0, atol=1e-4)
    assert torch.allclose(out(values, "A", 1)["samples"], x0 / SCALE, rtol=0, atol=1e-4)
    assert (want - x0).abs().max() > 1e-2  # the two outputs differ: σ' is not 0
    # SamplerCustom with add_noise false and cfg 1 (the negative is then skipped) is the same computation.
    for index in (0, 1):
        assert torch.equal(out(values, "C", index)["samples"], out(values, "A", index)["samples"])


def test_basic_guider_equals_cfg_guider_with_cfg_one(env):
    wf = {**base(), **custom_nodes(),
          "N": {"class_type": "RandomNoise", "inputs": {"noise_seed": 5}},
          "G1": {"class_type": "BasicGuider", "inputs": {"model": ["4", 0], "conditioning": ["6", 0]}},
          "G2": {"class_type": "CFGGuider",
                 "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "cfg": 1.0}},
          "G3": {"class_type": "CFGGuider",
                 "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "cfg": 3.0}},
          **advanced("A1", ("N", 0), ("G1", 0), ("B", 0)), **advanced("A2", ("N", 0), ("G2", 0), ("B", 0)),
          **advanced("A3", ("N", 0), ("G3", 0), ("B", 0))}
    values = run(env, wf, "A1", "A2", "A3")
    assert torch.equal(out(values, "A1")["samples"], out(values, "A2")["samples"])
    assert (out(values, "A3")["samples"] - out(values, "A1")["samples"]).abs().max() > 1e-3


def test_split_sigmas_halves_equal_the_whole_run(env):
    wf = {**base(), **custom_nodes(steps=6),
          "P": {"class_type": "SplitSigmas", "inputs": {"sigmas": ["B", 0], "step": 2}},
          "N": {"class_type": "RandomNoise", "inputs": {"noise_seed": 7}},
          "Z": {"class_type": "DisableNoise", "inputs": {}},
          "G": {"class_type": "CFGGuider",
                "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "cfg": 5.0}},
          **advanced("H", ("N", 0), ("G", 0), ("P", 0)),
          **advanced("W", ("Z", 0), ("G", 0), ("P", 1), latent=("H", 0))}
    values = run(env, wf, "W", "C")
    sigmas, high, low = out(values, "B"), out(values, "P", 0), out(values, "P", 1)
    assert torch.equal(high, sigmas[:3]) and torch.equal(low, sigmas[2:])
    # The hand-over divides by 0.18215 and multiplies back: equal up to float rounding (relative, the random
    # UNet drives values to ~100), not bit for bit.
    whole, split = out(values, "C")["samples"], out(values, "W")["samples"]
    assert torch.allclose(split, whole, rtol=1e-5, atol=1e-5), (split - whole).abs().max()
    assert (out(values, "H")["samples"] - out(values, "C")["samples"]).abs().max() > 1e-2


def test_denoise_zero_returns_the_input(env):
    values = run(env, {**base("encoded"), **custom_nodes(denoise=0.0)}, "C")
    assert len(out(values, "B")) == 0
    assert torch.equal(out(values, "C")["samples"], out(values, "L")["samples"])
    assert torch.equal(out(values, "C", 1)["samples"], out(values, "L")["samples"])


def test_scheduler_nodes_match_the_reference_tables(env):
    wf = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.safetensors"}},
          "B": {"class_type": "BasicScheduler",
                "inputs": {"model": ["4", 0], "scheduler": "normal", "steps": 10, "denoise": 1.0}},
          "D": {"class_type": "BasicScheduler",
                "inputs": {"model": ["4", 0], "scheduler": "normal", "steps": 10, "denoise": 0.5}},
          "K": {"class_type": "KarrasScheduler",
                "inputs": {"steps": 10, "sigma_max": 14.614642, "sigma_min": 0.0291675, "rho": 7.0}},
          "K20": {"class_type": "KarrasScheduler",
                  "inputs": {"steps": 20, "sigma_max": 14.614642, "sigma_min": 0.0291675, "rho": 7.0}},
          "E": {"class_type": "ExponentialScheduler",
                "inputs": {"steps": 10, "sigma_max": 14.614642, "sigma_min": 0.0291675}}}
    values = run(env, wf, "B", "D", "K", "K20", "E")
    assert close_to_table(out(values, "B"), NORMAL_10)
    assert close_to_table(out(values, "D"), NORMAL_10_DENOISE_HALF)
    assert close_to_table(out(values, "K"), KARRAS_10)
    assert close_to_table(out(values, "E"), EXPONENTIAL_10)
    # The 20-step list has 6 significant digits; default σ_min 0.0291675 is the table's 0.0291672 + 3e-7.
    assert torch.allclose(out(values, "K20"), torch.tensor(KARRAS_20), rtol=2e-5, atol=0)


def test_progress_and_interrupt(env):
    values = run(env, {**base(), **custom_nodes()}, "C", "7")
    model, positive = out(values, "4"), out(values, "6")
    guider, noise = Guider(model, positive, out(values, "7"), 5.0), NoiseSource(7)
    sigmas, latent = out(values, "B"), out(values, "L")
    seen = []
    ctx = Context(node_id="C", prompt_id="p", prompt={}, extra_data={}, env=env,
                  on_progress=lambda node, value, total, preview: seen.append((node, value, total)))
    output, _ = sample_custom(ctx, guider, noise, SamplerChoice("euler"), sigmas, latent)
    assert seen == [("C", i, 4) for i in range(1, 5)]
    assert torch.equal(output["samples"], out(values, "C")["samples"])
    stop = threading.Event()
    stop.set()
    ctx = Context(node_id="C", prompt_id="p", prompt={}, extra_data={}, env=env, interrupt=stop)
    with pytest.raises(Interrupted):
        sample_custom(ctx, guider, noise, SamplerChoice("euler"), sigmas, latent)


def opts(entry, name):
    value = entry["input"]["required"][name]
    return {k: v for k, v in value[1].items() if k != "tooltip"} if len(value) > 1 else {}


SEED = {"default": 0, "min": 0, "max": 2**64 - 1, "control_after_generate": True}
CFG = {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}
SIGMA = {"min": 0.0, "max": 5000.0, "step": 0.01, "round": False}
# name → (input order, output types, output names, category suffix)
NODES = {
    "SamplerCustom": (["model", "add_noise", "noise_seed", "cfg", "positive", "negative", "sampler", "sigmas",
                       "latent_image"], ["LATENT", "LATENT"], ["output", "denoised_output"], ""),
    "SamplerCustomAdvanced": (["noise", "guider", "sampler", "sigmas", "latent_image"], ["LATENT", "LATENT"],
                              ["output", "denoised_output"], ""),
    "KSamplerSelect": (["sampler_name"], ["SAMPLER"], ["SAMPLER"], "/samplers"),
    "BasicScheduler": (["model", "scheduler", "steps", "denoise"], ["SIGMAS"], ["SIGMAS"], "/schedulers"),
    "KarrasScheduler": (["steps", "sigma_max", "sigma_min", "rho"], ["SIGMAS"], ["SIGMAS"], "/schedulers"),
    "ExponentialScheduler": (["steps", "sigma_max", "sigma_min"], ["SIGMAS"], ["SIGMAS"], "/schedulers"),
    "SplitSigmas": (["sigmas", "step"], ["SIGMAS", "SIGMAS"], ["high_sigmas", "low_sigmas"], "/sigmas"),
    "RandomNoise": (["noise_seed"], ["NOISE"], ["NOISE"], "/noise"),
    "DisableNoise": ([], ["NOISE"], ["NOISE"], "/noise"),
    "BasicGuider": (["model", "conditioning"], ["GUIDER"], ["GUIDER"], "/guiders"),
    "CFGGuider": (["model", "positive", "negative", "cfg"], ["GUIDER"], ["GUIDER"], "/guiders"),
}


def test_object_info_matches_comfyui(env):
    info = builtin_registry().object_info(env)
    for name, (order, types, names, category) in NODES.items():
        entry = info[name]
        assert entry["input_order"]["required"] == order, name
        assert (entry["output"], entry["output_name"]) == (types, names), name
        assert entry["category"] == "sampling/custom_sampling" + category, name
        assert entry["python_module"] == MODULE and entry["output_node"] is False, name
    custom = info["SamplerCustom"]
    assert opts(custom, "add_noise") == {"default": True} and opts(custom, "noise_seed") == SEED
    assert opts(custom, "cfg") == CFG and opts(info["CFGGuider"], "cfg") == CFG
    assert [custom["input"]["required"][n][0] for n in ("model", "sampler", "sigmas", "latent_image")] == \
        ["MODEL", "SAMPLER", "SIGMAS", "LATENT"]
    adv = info["SamplerCustomAdvanced"]["input"]["required"]
    assert [adv[n][0] for n in NODES["SamplerCustomAdvanced"][0]] == ["NOISE", "GUIDER", "SAMPLER", "SIGMAS", "LATENT"]
    assert info["KSamplerSelect"]["input"]["required"]["sampler_name"][0] == \
        info["KSampler"]["input"]["required"]["sampler_name"][0]
    basic = info["BasicScheduler"]
    assert basic["input"]["required"]["scheduler"][0] == info["KSampler"]["input"]["required"]["scheduler"][0]
    assert opts(basic, "steps") == {"default": 20, "min": 1, "max": 10000}
    assert opts(basic, "denoise") == {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}
    karras = info["KarrasScheduler"]
    assert opts(karras, "sigma_max") == {"default": 14.614642, **SIGMA}
    assert opts(karras, "sigma_min") == {"default": 0.0291675, **SIGMA}
    assert opts(karras, "rho") == {"default": 7.0, "min": 0.0, "max": 100.0, "step": 0.01, "round": False}
    assert opts(info["ExponentialScheduler"], "sigma_min") == {"default": 0.0291675, **SIGMA}
    assert opts(info["SplitSigmas"], "step") == {"default": 0, "min": 0, "max": 10000}
    assert opts(info["RandomNoise"], "noise_seed") == SEED
    assert info["BasicGuider"]["input"]["required"]["conditioning"] == ["CONDITIONING"]
