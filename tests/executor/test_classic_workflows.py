"""ComfyUI's classic example workflows that need only SD1.x-style checkpoints run end to end from their UI files.

Each UI-format fixture in `ui_files/` (the same files `test_ui_format.py` checks against hand-written prompts) goes
through `ui_to_api`, seed resolution, validation and the executor, on tiny random-weight checkpoints written under
the names the file asks for: one SD1 file (also linked as the second model of the latent-upscale workflow), the
SD1 inpainting variant for the inpainting and outpainting files, and a tiny SD2 v-prediction file for the hires-fix
file (it names `v2-1_768-ema-pruned`). LoRAs are kohya-layout files and embeddings `emb_params` files, both in the
real formats, with random weights of the tiny models' shapes.

What is shrunk, after conversion (the fixtures stay as ComfyUI ships them): every sampler runs 2 steps, and the
sizes in `SHRINK` (latents, upscale targets, areas, outpaint padding) scale down to tens of pixels; input images
are 64×64. Each test asserts that Save Image wrote the images it should, at the expected size, and that no
embedding or LoRA key was skipped (those are warnings, not errors, in ComfyUI and here).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from executor.run import Executor
from executor.seeds import FirstSubmission, resolve_seeds
from executor.ui_format import ui_to_api
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths
from nodes.sd import tiny
from tests.nodes.sd.test_lora import write_kohya

FILES = Path(__file__).parent / "ui_files"
STEPS = 2
# Per fixture: {node id: inputs to set} and the (width, height, count) of the images Save Image must write.
SHRINK = {
    "classic_txt2img": ({"5": {"width": 64, "height": 64}}, (64, 64, 1)),
    "classic_img2img": ({}, (64, 64, 1)),
    "classic_inpaint": ({}, (64, 64, 1)),
    "classic_outpaint": ({"30": {"top": 16, "bottom": 16, "feathering": 8}}, (64, 96, 1)),
    "classic_hires_fix": ({"5": {"width": 64, "height": 64}, "10": {"width": 96, "height": 96}}, (96, 96, 1)),
    "classic_lora": ({"5": {"width": 64, "height": 64}}, (64, 64, 1)),
    "classic_lora_several": ({"5": {"width": 64, "height": 96}}, (64, 96, 2)),  # the file's batch of 2 stays
    "classic_embeddings": ({"5": {"width": 64, "height": 64}}, (64, 64, 1)),
    # ConditioningSetArea's areas are at least 64 pixels a side, as in ComfyUI
    "classic_area_composition": ({"5": {"width": 128, "height": 128},
                                  "15": {"width": 64, "height": 128, "x": 0, "y": 0},
                                  "16": {"width": 64, "height": 128, "x": 64, "y": 0},
                                  "17": {"width": 128, "height": 64, "x": 0, "y": 0}}, (128, 128, 1)),
    "classic_area_composition_strength": ({"5": {"width": 96, "height": 64}}, (96, 64, 1)),  # areas are fractions
    "classic_area_composition_square": ({"5": {"width": 128, "height": 128},
                                         **{nid: {"width": 64, "height": 64, "x": x, "y": y} for nid, (x, y) in
                                            {"15": (0, 0), "16": (64, 0), "17": (0, 64), "23": (64, 64),
                                             "24": (32, 32)}.items()}}, (128, 128, 1)),
    "classic_latent_upscale_model": ({"5": {"width": 64, "height": 64}, "10": {"width": 96, "height": 96}},
                                     (96, 96, 1)),
}
CHECKPOINTS = {"v1-5-pruned-emaonly.safetensors": "sd1", "512-inpainting-ema.safetensors": "sd1-inpaint",
               "v2-1_768-ema-pruned.safetensors": "sd2-v"}
SAME_AS_SD1 = ["dreamshaper_8.safetensors"]  # the latent-upscale file's second model
LORAS = ["epiNoiseoffset_v2.safetensors", "theovercomer8sContrastFix_sd15.safetensors"]
EMBEDDINGS = {"charturnerv2": 2, "style-empire": 1, "EasyNegative": 3}  # name: vectors


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    paths = DataPaths(tmp_path_factory.mktemp("classic"))
    checkpoints = paths.models("checkpoints")
    checkpoints.mkdir(parents=True, exist_ok=True)
    for name, arch in CHECKPOINTS.items():
        tiny.write_single_file(arch, checkpoints / name, seed=0)
    for name in SAME_AS_SD1:
        os.link(checkpoints / "v1-5-pruned-emaonly.safetensors", checkpoints / name)
    loras = paths.models("loras")
    loras.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(LORAS):
        write_kohya(loras / name, "sd1", seed=seed)
    embeddings = paths.models("embeddings")
    embeddings.mkdir(parents=True, exist_ok=True)
    width = tiny.tiny_spec("sd1").text_encoders["l"].hidden_size
    generator = torch.Generator().manual_seed(0)
    for name, count in EMBEDDINGS.items():
        vectors = torch.randn(count, width, generator=generator) * 0.4  # the tiny token table's scale
        save_file({"emb_params": vectors}, embeddings / f"{name}.safetensors")
    paths.input.mkdir(parents=True, exist_ok=True)
    for name in ("example.png", "yosemite_inpaint_example.png"):  # a transparent disc: the inpainting mask
        image = Image.new("RGBA", (64, 64), (90, 140, 200, 255))
        ImageDraw.Draw(image).ellipse((20, 20, 44, 44), fill=(0, 0, 0, 0))
        image.save(paths.input / name)
    return Environment(paths)


@pytest.fixture(scope="module")
def registry():
    return builtin_registry()


@pytest.fixture(scope="module")
def executor(env):
    return Executor(env)  # one cache: the workflows share their loaded checkpoints


def shrunk_prompt(name: str, registry, env) -> dict:
    conversion = ui_to_api(json.loads((FILES / f"{name}.json").read_text()), registry, env)
    prompt = conversion.prompt
    for node in prompt.values():
        if "steps" in node["inputs"] and node["class_type"].startswith("KSampler"):
            node["inputs"]["steps"] = STEPS
    for nid, inputs in SHRINK[name][0].items():
        assert set(inputs) <= set(prompt[nid]["inputs"]), (nid, prompt[nid]["inputs"])
        prompt[nid]["inputs"].update(inputs)
    resolve_seeds(prompt, registry, FirstSubmission())
    return prompt


@pytest.mark.parametrize("name", list(SHRINK))
def test_classic_workflow_runs_and_saves_its_image(name, env, registry, executor, one_torch_thread, caplog):
    caplog.set_level(logging.WARNING)
    prompt = shrunk_prompt(name, registry, env)
    report = validate(parse_workflow(prompt), registry, env)
    assert report.clean, report.to_comfy()
    result = executor.execute(report, prompt_id=name, prompt=prompt)
    assert result.success, result.error
    (save,) = [nid for nid, node in prompt.items() if node["class_type"] == "SaveImage"]
    images = result.outputs[save]["images"]
    width, height, count = SHRINK[name][1]
    assert len(images) == count
    for image in images:
        with Image.open(env.paths.output / image["subfolder"] / image["filename"]) as saved:
            assert saved.size == (width, height)
    # Missing or mismatched embeddings and LoRA keys are skipped with a warning: none may be, every file applies.
    assert [r.getMessage() for r in caplog.records if r.name.startswith("nodes.sd")] == []
