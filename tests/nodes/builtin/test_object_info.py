"""The core SD nodes' /object_info entries have ComfyUI's names, input order, defaults and ranges (reference
§1.8 and §6.13), so ComfyUI clients and editors see the same nodes."""
from __future__ import annotations

import pytest

from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths


@pytest.fixture(scope="module")
def info(tmp_path_factory):
    return builtin_registry().object_info(Environment(DataPaths(tmp_path_factory.mktemp("info"))))


def opts(entry, name, section="required"):
    value = entry["input"][section][name]
    return {k: v for k, v in value[1].items() if k != "tooltip"} if len(value) > 1 else {}


def test_ksampler_matches_comfyui(info):
    entry = info["KSampler"]
    assert entry["input_order"]["required"] == ["model", "seed", "steps", "cfg", "sampler_name", "scheduler",
                                                 "positive", "negative", "latent_image", "denoise"]
    assert opts(entry, "seed") == {"default": 0, "min": 0, "max": 18446744073709551615,
                                   "control_after_generate": True}
    assert opts(entry, "steps") == {"default": 20, "min": 1, "max": 10000}
    assert opts(entry, "cfg") == {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}
    assert opts(entry, "denoise") == {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}
    samplers = entry["input"]["required"]["sampler_name"][0]
    assert samplers[0] == "euler" and {"euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2m",
                                      "dpmpp_2m_sde", "dpmpp_sde", "dpmpp_2s_ancestral", "ddim", "uni_pc"} <= set(samplers)
    assert entry["input"]["required"]["scheduler"][0][:7] == ["simple", "sgm_uniform", "karras", "exponential",
                                                             "ddim_uniform", "beta", "normal"]
    assert (entry["output"], entry["category"], entry["output_node"]) == (["LATENT"], "sampling", False)


def test_loader_latent_text_and_image_nodes(info):
    assert info["CheckpointLoaderSimple"]["output"] == ["MODEL", "CLIP", "VAE"]
    assert info["LoadCheckpoint"]["alias_of"] == "CheckpointLoaderSimple"
    assert opts(info["EmptyLatentImage"], "width") == {"default": 512, "min": 16, "max": 16384, "step": 8}
    assert opts(info["EmptyLatentImage"], "batch_size") == {"default": 1, "min": 1, "max": 4096}
    assert info["EmptyLatent"]["alias_of"] == "EmptyLatentImage"
    assert info["CLIPTextEncode"]["input_order"]["required"] == ["text", "clip"]
    assert opts(info["CLIPTextEncode"], "text") == {"multiline": True, "dynamicPrompts": True}
    assert opts(info["CLIPSetLastLayer"], "stop_at_clip_layer") == {"default": -1, "min": -24, "max": -1}
    assert info["VAEDecode"]["input_order"]["required"] == ["samples", "vae"]
    assert info["VAEEncode"]["input_order"]["required"] == ["pixels", "vae"]
    save = info["SaveImage"]
    assert opts(save, "filename_prefix") == {"default": "ComfyUI"} and save["output_node"] is True
    assert save["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert info["LoadImage"]["output"] == ["IMAGE", "MASK"] and opts(info["LoadImage"], "image") == {"image_upload": True}
    adv = info["KSamplerAdvanced"]["input_order"]["required"]
    assert adv == ["model", "add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler", "positive",
                   "negative", "latent_image", "start_at_step", "end_at_step", "return_with_leftover_noise"]


# ComfyUI's definitions (INPUT_TYPES, RETURN_TYPES, CATEGORY, display names) of the loaders and the SDXL refiner's
# text encoder, as /object_info reports them; the file lists are empty in this data folder.
COMFY_DEFINITIONS = {
    "CheckpointLoader": {
        "input": {"required": {"config_name": [[]], "ckpt_name": [[]]}},
        "output": ["MODEL", "CLIP", "VAE"], "category": "advanced/loaders", "python_module": "nodes",
        "display_name": "Load Checkpoint With Config (DEPRECATED)", "deprecated": True,
    },
    "UNETLoader": {
        "input": {"required": {"unet_name": [[]],
                               "weight_dtype": [["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]]}},
        "output": ["MODEL"], "category": "advanced/loaders", "python_module": "nodes",
        "display_name": "Load Diffusion Model",
    },
    "CLIPLoader": {
        "input": {"required": {"clip_name": [[]], "type": [[
            "stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
            "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image"]]},
                  "optional": {"device": [["default", "cpu"], {"advanced": True}]}},
        "output": ["CLIP"], "category": "advanced/loaders", "python_module": "nodes", "display_name": "Load CLIP",
    },
    "DualCLIPLoader": {
        "input": {"required": {"clip_name1": [[]], "clip_name2": [[]], "type": [[
            "sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image"]]},
                  "optional": {"device": [["default", "cpu"], {"advanced": True}]}},
        "output": ["CLIP"], "category": "advanced/loaders", "python_module": "nodes",
        "display_name": "DualCLIPLoader",
    },
    "VAELoader": {
        "input": {"required": {"vae_name": [["pixel_space"]]}},
        "output": ["VAE"], "category": "loaders", "python_module": "nodes", "display_name": "Load VAE",
    },
    "CLIPTextEncodeSDXLRefiner": {
        "input": {"required": {
            "ascore": ["FLOAT", {"default": 6.0, "min": 0.0, "max": 1000.0, "step": 0.01}],
            "width": ["INT", {"default": 1024, "min": 0, "max": 16384}],
            "height": ["INT", {"default": 1024, "min": 0, "max": 16384}],
            "text": ["STRING", {"multiline": True, "dynamicPrompts": True}],
            "clip": ["CLIP"]}},
        "output": ["CONDITIONING"], "category": "advanced/conditioning",
        "python_module": "comfy_extras.nodes_clip_sdxl", "display_name": "CLIPTextEncodeSDXLRefiner",
    },
}


def _without_tooltips(section: dict) -> dict:
    out = {}
    for name, value in section.items():
        options = {k: v for k, v in (value[1] if len(value) > 1 else {}).items() if k != "tooltip"}
        out[name] = [value[0], options] if options else [value[0]]
    return out


@pytest.mark.parametrize("name", COMFY_DEFINITIONS)
def test_loader_and_refiner_definitions_match_comfyui(info, name):
    expected = COMFY_DEFINITIONS[name]
    entry = info[name]
    assert {section: _without_tooltips(inputs) for section, inputs in entry["input"].items()} == expected["input"]
    assert entry["input_order"] == {section: list(inputs) for section, inputs in expected["input"].items()}
    for key in ("output", "category", "python_module", "display_name"):
        assert entry[key] == expected[key], key
    assert entry.get("deprecated", False) == expected.get("deprecated", False)
    assert entry["output_node"] is False
