"""LoraLoader and LoraLoaderModelOnly through the real executor on a tiny SD1 checkpoint and kohya LoRA files.

The workflows are ComfyUI's txt2img (CheckpointLoaderSimple → [LoRA] → CLIPTextEncode ×2 → KSampler → VAEDecode).
Images are compared bit for bit where the same weights must be used (strength 0, the base model after a LoRA run,
model-only vs. strength_clip 0); the stacked weights are checked against the float64 sum of both files' deltas.
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths
from nodes.sd import tiny
from tests.nodes.sd.test_lora import ALPHA, RANK, UNET_MODULES, write_kohya

CKPT = "tiny.safetensors"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("lora_nodes")))
    tiny.write_single_file("sd1", env.paths.models("checkpoints") / CKPT)
    loras = env.paths.models("loras")
    for seed in (1, 2):
        write_kohya(loras / f"style{seed}.safetensors", "sd1", seed=seed)
    save_file({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.ones(1, 4),
               "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": torch.ones(4, 1)},
              str(loras / "flux.safetensors"))
    return env


def workflow(model=("4", 0), clip=("4", 1), **nodes) -> dict:
    wf = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": list(clip)}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": list(clip)}},
        "3": {"class_type": "KSampler", "inputs": {"model": list(model), "seed": 5, "steps": 2, "cfg": 6.0,
                                                    "sampler_name": "euler", "scheduler": "normal",
                                                    "positive": ["6", 0], "negative": ["7", 0],
                                                    "latent_image": ["5", 0], "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }
    return {**wf, **nodes}


def lora(name: str, model=("4", 0), clip=("4", 1), strength_model=1.0, strength_clip=1.0) -> dict:
    return {"class_type": "LoraLoader", "inputs": {"model": list(model), "clip": list(clip), "lora_name": name,
                                                   "strength_model": strength_model, "strength_clip": strength_clip}}


def execute(executor: Executor, wf: dict):
    report = validate(parse_workflow(wf), builtin_registry(), executor.env)
    assert report.clean, report.to_comfy()
    return executor.execute(report, prompt_id="p", prompt=wf)


def image(executor: Executor, wf: dict) -> torch.Tensor:
    result = execute(executor, wf)
    assert result.success, result.error
    return result.values["8"].outputs[0][0]


def fresh(env: Environment) -> Executor:
    """An executor with its own cache and model manager (a new process, as far as the models know)."""
    return Executor(Environment(env.paths))


def test_strength_zero_is_no_lora_and_the_cached_base_model_is_not_changed(env):
    reference = image(fresh(env), workflow())
    executor = fresh(env)
    with_lora = image(executor, workflow(model=("10", 0), clip=("10", 1), **{"10": lora("style1.safetensors")}))
    assert (with_lora - reference).abs().max() > 1e-3
    zero = workflow(model=("10", 0), clip=("10", 1),
                    **{"10": lora("style1.safetensors", strength_model=0.0, strength_clip=0.0)})
    assert torch.equal(image(executor, zero), reference)
    # The base workflow again, on the checkpoint the executor cached before the LoRA run: KSampler runs anew
    # (its inputs differ from the LoRA runs') on the same, unpatched weights.
    result = execute(executor, workflow())
    assert "4" in result.cached and "3" in result.executed
    assert torch.equal(result.values["8"].outputs[0][0], reference)
    base = result.values["4"].outputs[0][0]
    expected = tiny.build_tiny("sd1").unet.state_dict()
    with base.manager.use(base.unet) as unet:
        assert all(torch.equal(v, expected[k]) for k, v in unet.state_dict().items())


def test_chained_loras_add_their_deltas(env):
    executor = fresh(env)
    chained = workflow(model=("11", 0), clip=("11", 1), **{
        "10": lora("style1.safetensors", strength_model=0.6),
        "11": lora("style2.safetensors", model=("10", 0), clip=("10", 1), strength_model=-0.4, strength_clip=0.5)})
    result = execute(executor, chained)
    assert result.success, result.error
    single = image(executor, workflow(model=("10", 0), clip=("10", 1), **{"10": chained["10"]}))
    assert (result.values["8"].outputs[0][0] - single).abs().max() > 1e-3
    files = [write_kohya(env.paths.root / f"copy{seed}.safetensors", "sd1", seed=seed) for seed in (1, 2)]
    model = result.values["11"].outputs[0][0]
    base = tiny.build_tiny("sd1").unet.state_dict()
    with model.manager.use(model.unet) as unet:
        got = unet.state_dict()
    for module in UNET_MODULES["sd1"]:
        stem, key = "lora_unet_" + module.replace(".", "_"), f"{module}.weight"
        delta = sum(strength * ALPHA / RANK * (f[f"{stem}.lora_up.weight"].double().flatten(1)
                                               @ f[f"{stem}.lora_down.weight"].double().flatten(1))
                    for f, strength in zip(files, (0.6, -0.4)))
        torch.testing.assert_close(got[key].double(), base[key].double() + delta.reshape(base[key].shape),
                                   rtol=1e-6, atol=1e-6)


def test_a_lora_matching_nothing_fails_naming_the_file(env):
    result = execute(fresh(env), workflow(model=("10", 0), clip=("10", 1), **{"10": lora("flux.safetensors")}))
    assert result.status == "error" and result.error.node_id == "10"
    assert "flux.safetensors" in result.error.exception_message


def test_model_only_leaves_clip_untouched(env):
    executor = fresh(env)
    model_only = {"class_type": "LoraLoaderModelOnly",
                  "inputs": {"model": ["4", 0], "lora_name": "style1.safetensors", "strength_model": 1.0}}
    only = image(executor, workflow(model=("10", 0), **{"10": model_only}))
    clip_zero = image(executor, workflow(model=("10", 0), clip=("10", 1),
                                         **{"10": lora("style1.safetensors", strength_clip=0.0)}))
    both = image(executor, workflow(model=("10", 0), clip=("10", 1), **{"10": lora("style1.safetensors")}))
    assert torch.equal(only, clip_zero)
    assert (both - only).abs().max() > 1e-3
    assert (only - image(executor, workflow())).abs().max() > 1e-3


def test_a_replaced_lora_file_is_read_again(env):
    executor = fresh(env)
    wf = workflow(model=("10", 0), clip=("10", 1), **{"10": lora("swap.safetensors")})
    write_kohya(env.paths.models("loras") / "swap.safetensors", "sd1", seed=1)
    first = image(executor, wf)
    assert execute(executor, wf).executed == []
    write_kohya(env.paths.models("loras") / "swap.safetensors", "sd1", seed=2)
    result = execute(executor, wf)
    assert "10" in result.executed and not torch.equal(result.values["8"].outputs[0][0], first)


def test_object_info_matches_comfyui(env):
    info = builtin_registry().object_info(env)
    strength = {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}

    def options(entry, name):
        return {k: v for k, v in entry["input"]["required"][name][1].items() if k != "tooltip"}

    entry = info["LoraLoader"]
    assert entry["input_order"] == {"required": ["model", "clip", "lora_name", "strength_model", "strength_clip"]}
    required = entry["input"]["required"]
    assert (required["model"][0], required["clip"][0]) == ("MODEL", "CLIP")
    assert "style1.safetensors" in required["lora_name"][0] and "flux.safetensors" in required["lora_name"][0]
    assert required["strength_model"][0] == required["strength_clip"][0] == "FLOAT"
    assert options(entry, "strength_model") == options(entry, "strength_clip") == strength
    assert (entry["output"], entry["output_name"], entry["output_is_list"]) == (["MODEL", "CLIP"], ["MODEL", "CLIP"],
                                                                                [False, False])
    assert (entry["display_name"], entry["category"], entry["output_node"]) == ("Load LoRA", "loaders", False)
    only = info["LoraLoaderModelOnly"]
    assert only["input_order"] == {"required": ["model", "lora_name", "strength_model"]}
    assert only["input"]["required"]["model"][0] == "MODEL" and options(only, "strength_model") == strength
    assert only["input"]["required"]["lora_name"][0] == required["lora_name"][0]
    assert (only["output"], only["category"]) == (["MODEL"], "loaders")
