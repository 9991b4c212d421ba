"""Model-patch nodes through the real executor on a tiny SD1 checkpoint, and their /object_info entries.

Two executors share the module: `clean` never runs a patch; `patched` runs every patched workflow, each followed
by the base workflow with a seed of its own, whose KSampler runs anew on the cached checkpoint handle and must give
`clean`'s image for that seed bit for bit (the patch never reached the shared UNet). The patch maths is checked
against references in tests/nodes/sd/ (test_model_sampling, test_guidance, test_freeu, test_sag,
test_hypernetwork); here the nodes are checked to reach the sampler (the image changes, or equals a known one).
"""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch

from executor.run import Executor
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths
from nodes.sd import tiny
from tests.nodes.builtin.test_lora_nodes import execute, image
from tests.nodes.sd.test_hypernetwork import write_hypernetwork

CKPT = "tiny.safetensors"
_base_seeds = itertools.count(100)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("model_patches")))
    tiny.write_single_file("sd1", env.paths.models("checkpoints") / CKPT)
    write_hypernetwork(env.paths.models("hypernetworks") / "tiny.pt")
    return env


@pytest.fixture(scope="module")
def executors(env):
    return SimpleNamespace(clean=Executor(Environment(env.paths)),
                           patched=Executor(Environment(env.paths, allow_pickle=True)))


@pytest.fixture(scope="module")
def info(env):
    return builtin_registry().object_info(env)


@pytest.fixture(scope="module")
def reference(executors):
    """The unpatched workflow's image."""
    return image(executors.clean, workflow())


def workflow(model=("4", 0), cfg=6.0, size=32, seed=5, **nodes) -> dict:
    wf = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "fog", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"model": list(model), "seed": seed, "steps": 2, "cfg": cfg,
                                                    "sampler_name": "euler", "scheduler": "normal",
                                                    "positive": ["6", 0], "negative": ["7", 0],
                                                    "latent_image": ["5", 0], "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }
    return {**wf, **nodes}


def patch(class_type: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": {"model": ["4", 0], **inputs}}


def run_patched(executors, wf: dict, size: int = 32) -> torch.Tensor:
    """The patched workflow's image, after which the base workflow must still sample the unpatched model."""
    patched = image(executors.patched, wf)
    base = workflow(size=size, seed=next(_base_seeds))
    result = execute(executors.patched, base)
    assert "4" in result.cached and "3" in result.executed
    assert torch.equal(result.values["8"].outputs[0][0], image(executors.clean, base))
    return patched


def changed(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a - b).abs().max() > 1e-4)


def test_sd_turbo_scheduler_drives_sampler_custom(executors):
    wf = workflow(**{
        "10": {"class_type": "SDTurboScheduler", "inputs": {"model": ["4", 0], "steps": 2, "denoise": 1.0}},
        "11": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "3": {"class_type": "SamplerCustom", "inputs": {
            "model": ["4", 0], "add_noise": True, "noise_seed": 5, "cfg": 1.0, "positive": ["6", 0],
            "negative": ["7", 0], "sampler": ["11", 0], "sigmas": ["10", 0], "latent_image": ["5", 0]}},
    })
    result = execute(executors.patched, wf)
    assert result.success, result.error
    sigmas = result.values["10"].outputs[0][0]
    assert sigmas.shape == (3,) and sigmas[-1] == 0 and sigmas[0] == pytest.approx(14.6146, abs=1e-4)
    assert sigmas[1] == pytest.approx(8.3028, abs=1e-4)  # σ_899, as in §6.4's simple 10-step table
    assert torch.isfinite(result.values["8"].outputs[0][0]).all()


def test_model_sampling_discrete_eps_is_the_model_itself(executors, reference):
    same = run_patched(executors, workflow(model=("10", 0), **{
        "10": patch("ModelSamplingDiscrete", sampling="eps", zsnr=False)}))
    assert torch.equal(same, reference)


@pytest.mark.parametrize("sampling, zsnr", [("v_prediction", False), ("x0", False), ("lcm", False),
                                            ("img_to_img", False), ("eps", True)])
def test_model_sampling_discrete_changes_the_result(executors, reference, sampling, zsnr):
    patched = run_patched(executors, workflow(model=("10", 0), **{
        "10": patch("ModelSamplingDiscrete", sampling=sampling, zsnr=zsnr)}))
    assert changed(patched, reference)


def test_basic_scheduler_follows_model_sampling(executors):
    wf = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
          "10": patch("ModelSamplingDiscrete", sampling="v_prediction", zsnr=True),
          "11": {"class_type": "BasicScheduler", "inputs": {"model": ["10", 0], "scheduler": "normal", "steps": 3,
                                                            "denoise": 1.0}},
          "12": {"class_type": "SamplerCustom", "inputs": {
              "model": ["10", 0], "add_noise": True, "noise_seed": 1, "cfg": 1.0, "positive": ["6", 0],
              "negative": ["6", 0], "sampler": ["13", 0], "sigmas": ["11", 0], "latent_image": ["5", 0]}},
          "13": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
          "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
          "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["4", 1]}},
          "8": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["4", 2]}},
          "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}}
    result = execute(executors.patched, wf)
    assert result.success, result.error
    assert float(result.values["11"].outputs[0][0][0]) == pytest.approx(4518.9, rel=1e-3)  # zsnr σ_max


def test_rescale_cfg_changes_the_result_and_zero_is_plain_cfg(executors, reference):
    rescaled = run_patched(executors, workflow(model=("10", 0), **{"10": patch("RescaleCFG", multiplier=0.7)}))
    assert changed(rescaled, reference)
    plain = image(executors.patched, workflow(model=("10", 0), **{"10": patch("RescaleCFG", multiplier=0.0)}))
    torch.testing.assert_close(plain, reference, rtol=0, atol=1e-5)


def test_perp_neg_evaluates_the_empty_prompt(executors, reference):
    nodes = {"10": patch("PerpNeg", empty_conditioning=["12", 0], neg_scale=1.0),
             "12": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}}}
    assert changed(run_patched(executors, workflow(model=("10", 0), **nodes)), reference)


@pytest.mark.parametrize("class_type", ["FreeU", "FreeU_V2"])
def test_freeu_changes_the_result_and_neutral_factors_do_not(executors, reference, class_type):
    factors = dict(b1=1.1, b2=1.3, s1=0.9, s2=0.2)
    assert changed(run_patched(executors, workflow(model=("10", 0), **{"10": patch(class_type, **factors)})),
                   reference)
    neutral = workflow(model=("10", 0), **{"10": patch(class_type, b1=1.0, b2=1.0, s1=1.0, s2=1.0)})
    torch.testing.assert_close(image(executors.patched, neutral), reference, rtol=0, atol=1e-4)


def test_hypernetwork_loader_needs_pickle_and_patches_attention(executors, reference):
    wf = workflow(model=("10", 0), **{"10": patch("HypernetworkLoader", hypernetwork_name="tiny.pt", strength=1.0)})
    refused = execute(executors.clean, wf)
    assert refused.status == "error" and refused.error.node_id == "10"
    assert "--allow-pickle" in refused.error.exception_message
    assert changed(run_patched(executors, wf), reference)
    wf["10"]["inputs"]["strength"] = 0.0
    assert torch.equal(image(executors.patched, wf), reference)


def test_self_attention_guidance_changes_the_result(executors):
    # SAG leaves latents of 4 pixels or fewer a side alone
    wf = workflow(size=64, model=("10", 0), **{"10": patch("SelfAttentionGuidance", scale=0.5, blur_sigma=2.0)})
    assert changed(run_patched(executors, wf, size=64), image(executors.clean, workflow(size=64)))


def opts(entry, name):
    value = entry["input"]["required"][name]
    return {k: v for k, v in value[1].items() if k != "tooltip"} if len(value) > 1 else {}


def test_object_info_matches_comfyui(info):
    turbo = info["SDTurboScheduler"]
    assert turbo["input_order"]["required"] == ["model", "steps", "denoise"]
    assert opts(turbo, "steps") == {"default": 1, "min": 1, "max": 10}
    assert opts(turbo, "denoise") == {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}
    assert (turbo["category"], turbo["python_module"], turbo["output"]) == (
        "sampling/custom_sampling/schedulers", "comfy_extras.nodes_custom_sampler", ["SIGMAS"])
    msd = info["ModelSamplingDiscrete"]
    assert msd["input"]["required"]["sampling"] == [["eps", "v_prediction", "lcm", "x0", "img_to_img"]]
    assert opts(msd, "zsnr") == {"default": False}
    rescale = info["RescaleCFG"]
    assert opts(rescale, "multiplier") == {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01}
    for name in ("ModelSamplingDiscrete", "RescaleCFG"):
        assert (info[name]["category"], info[name]["python_module"], info[name]["output"]) == (
            "advanced/model", "comfy_extras.nodes_model_advanced", ["MODEL"])
    for name, defaults in (("FreeU", (1.1, 1.2, 0.9, 0.2)), ("FreeU_V2", (1.3, 1.4, 0.9, 0.2))):
        entry = info[name]
        assert entry["input_order"]["required"] == ["model", "b1", "b2", "s1", "s2"]
        assert [opts(entry, k) for k in ("b1", "b2", "s1", "s2")] == [
            {"default": d, "min": 0.0, "max": 10.0, "step": 0.01} for d in defaults]
        assert (entry["category"], entry["python_module"], entry["output"]) == (
            "model_patches/unet", "comfy_extras.nodes_freelunch", ["MODEL"])
    hyper = info["HypernetworkLoader"]
    assert hyper["input_order"]["required"] == ["model", "hypernetwork_name", "strength"]
    assert opts(hyper, "strength") == {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}
    assert (hyper["category"], hyper["python_module"], hyper["output"]) == (
        "loaders", "comfy_extras.nodes_hypernetwork", ["MODEL"])
    sag = info["SelfAttentionGuidance"]
    assert opts(sag, "scale") == {"default": 0.5, "min": -2.0, "max": 5.0, "step": 0.01}
    assert opts(sag, "blur_sigma") == {"default": 2.0, "min": 0.0, "max": 10.0, "step": 0.1}
    assert (sag["category"], sag["python_module"], sag["display_name"]) == (
        "_for_testing", "comfy_extras.nodes_sag", "Self-Attention Guidance")
    perp = info["PerpNeg"]
    assert perp["input_order"]["required"] == ["model", "empty_conditioning", "neg_scale"]
    assert opts(perp, "neg_scale") == {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01}
    assert (perp["category"], perp["python_module"], perp["display_name"], perp["deprecated"]) == (
        "_for_testing", "comfy_extras.nodes_perpneg", "Perp-Neg (DEPRECATED by PerpNegGuider)", True)
