"""Text conditioning nodes on a tiny SDXL checkpoint: CLIPTextEncodeSDXL's texts and size conditioning."""
from __future__ import annotations

import pytest
import torch

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths
from nodes.sd import tiny

PROMPT = "a lighthouse at dusk"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("cond")))
    tiny.write_single_file("sdxl", env.paths.models("checkpoints") / "xl.safetensors")
    return env


def sample(env, positive_node, negative_node):
    wf = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "xl.safetensors"}},
          "6": positive_node, "7": negative_node,
          "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},
          "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": 3, "steps": 3, "cfg": 5.0,
                                                      "sampler_name": "euler", "scheduler": "normal",
                                                      "positive": ["6", 0], "negative": ["7", 0],
                                                      "latent_image": ["5", 0], "denoise": 1.0}},
          "9": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}}
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p")
    assert result.success, result.error
    return result.values["6"].outputs[0][0], result.values["3"].outputs[0][0]["samples"]


def plain(text):
    return {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}}


def sdxl(text_g, text_l, **sizes):
    inputs = {"clip": ["4", 1], "width": 64, "height": 48, "crop_w": 0, "crop_h": 0, "target_width": 64,
              "target_height": 48, "text_g": text_g, "text_l": text_l, **sizes}
    return {"class_type": "CLIPTextEncodeSDXL", "inputs": inputs}


def test_same_texts_and_the_latent_size_equal_plain_encoding(env):
    plain_cond, plain_latent = sample(env, plain(PROMPT), plain("blurry"))
    xl_cond, xl_latent = sample(env, sdxl(PROMPT, PROMPT), plain("blurry"))
    assert torch.equal(xl_cond[0][0], plain_cond[0][0])
    assert torch.equal(xl_cond[0][1]["pooled_output"], plain_cond[0][1]["pooled_output"])
    assert xl_cond[0][1]["width"] == 64 and xl_cond[0][1]["target_height"] == 48
    assert torch.equal(xl_latent, plain_latent)  # the defaults the sampler uses are 8 × the latent size


def test_size_conditioning_and_separate_texts_change_the_result(env):
    _, base = sample(env, sdxl(PROMPT, PROMPT), plain("blurry"))
    _, bigger = sample(env, sdxl(PROMPT, PROMPT, width=1024, height=1024), plain("blurry"))
    assert not torch.equal(base, bigger)
    cond, _ = sample(env, sdxl(PROMPT, "an oil painting"), plain("blurry"))
    same, _ = sample(env, sdxl(PROMPT, PROMPT), plain("blurry"))
    width_l = cond[0][0].shape[-1] - cond[0][1]["pooled_output"].shape[-1]  # L then G on the feature axis
    assert not torch.equal(cond[0][0][..., :width_l], same[0][0][..., :width_l])  # L reads text_l
    assert torch.equal(cond[0][0][..., width_l:], same[0][0][..., width_l:])  # G reads text_g
