"""Image and latent nodes through the real executor: files in, PNG files with metadata out."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.images import read_png_texts, to_uint8
from nodes.paths import DataPaths


@pytest.fixture
def env(tmp_path):
    return Environment(DataPaths(tmp_path / "data"))


def run(env, wf, extra_data=None):
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    return Executor(env).execute(report, prompt_id="p", extra_data=extra_data, prompt=wf)


def write_rgba(path):
    pixels = np.zeros((16, 24, 4), dtype=np.uint8)
    pixels[..., 0] = 200
    pixels[..., 1] = np.arange(24, dtype=np.uint8)[None, :] * 10
    pixels[..., 3] = 255
    pixels[:8, :, 3] = 0  # top half transparent
    PILImage.fromarray(pixels, "RGBA").save(path)
    return pixels


def test_load_then_save_round_trips_pixels_and_writes_metadata(env):
    pixels = write_rgba(env.paths.input / "in.png")
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "run/%width%x"}}}
    extra = {"extra_pnginfo": {"workflow": {"nodes": [], "links": []}}}
    result = run(env, wf, extra)
    (saved,) = result.outputs["2"]["images"]
    assert saved == {"filename": "24x_00001_.png", "subfolder": "run", "type": "output"}
    path = env.paths.output / "run" / "24x_00001_.png"
    with PILImage.open(path) as img:
        assert img.mode == "RGB" and np.array_equal(np.asarray(img), pixels[..., :3])
    texts = read_png_texts(path)
    assert json.loads(texts["prompt"]) == wf and json.loads(texts["workflow"]) == {"nodes": [], "links": []}
    assert texts["prompt"] == json.dumps(wf)  # Python json.dumps defaults, as ComfyUI writes them
    mask = result.values["1"].outputs[1][0]
    assert mask.shape == (1, 16, 24)
    assert torch.all(mask[0, :8] == 1.0) and torch.all(mask[0, 8:] == 0.0)


def test_counter_continues_and_same_workflow_gives_identical_bytes(env):
    write_rgba(env.paths.input / "in.png")
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    run(env, wf)
    env.paths.output.joinpath("x_00007_.png").write_bytes(b"")
    second = Executor(env).execute(validate(parse_workflow(wf), builtin_registry(), env), prompt_id="p", prompt=wf)
    assert second.outputs["2"]["images"][0]["filename"] == "x_00008_.png"
    assert (env.paths.output / "x_00001_.png").read_bytes() == (env.paths.output / "x_00008_.png").read_bytes()


def test_changed_input_file_is_noticed(env):
    write_rgba(env.paths.input / "in.png")
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
          "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    executor = Executor(env)
    report = validate(parse_workflow(wf), builtin_registry(), env)
    first = executor.execute(report, prompt_id="a")
    assert first.outputs["2"]["images"][0]["type"] == "temp"
    assert executor.execute(report, prompt_id="b").executed == []
    PILImage.new("RGB", (8, 8), (1, 2, 3)).save(env.paths.input / "in.png")
    assert executor.execute(report, prompt_id="c").executed == ["1", "2"]


def test_unknown_input_file_and_escaping_prefix(env):
    write_rgba(env.paths.input / "in.png")
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": "../secret.png"}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.node_errors()["1"]["errors"][0]["type"] == "value_not_in_list"
    wf["1"]["inputs"]["image"] = "in.png"
    wf["2"]["inputs"]["filename_prefix"] = "../../outside"
    result = Executor(env).execute(validate(parse_workflow(wf), builtin_registry(), env), prompt_id="p")
    assert result.status == "error" and "inside the output folder" in result.error.exception_message


def test_truncation_not_rounding():
    image = torch.tensor([[[0.999, 0.5, 1.5]]])
    assert to_uint8(image).tolist() == [[[254, 127, 255]]]


def test_empty_latent(env):
    wf = {"1": {"class_type": "EmptyLatent", "inputs": {"width": 64, "height": 48, "batch_size": 2}},
          "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    result = run(env, wf)
    latent = result.values["1"].outputs[0][0]["samples"]
    assert latent.shape == (2, 4, 6, 8) and not latent.any()
