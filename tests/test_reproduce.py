"""`main.py reproduce`: a fresh txt2img PNG reproduces byte for byte; a tampered one is reported with its difference."""
from __future__ import annotations

import dataclasses
import io
import json
import math
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo

from executor.reproduce import compare, reproduce
from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment, Services
from nodes.builtin import builtin_registry
from nodes.images import read_png_texts
from nodes.paths import DataPaths
from nodes.precision import Precision
from nodes.sd.tiny import write_single_file

ROOT = Path(__file__).resolve().parents[1]
TXT2IMG = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse, (sunset:1.2)", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}},
    "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": 1234, "steps": 3, "cfg": 6.0,
                                               "sampler_name": "euler", "scheduler": "normal", "positive": ["6", 0],
                                               "negative": ["7", 0], "latent_image": ["5", 0], "denoise": 1.0}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "made"}},
}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A data folder with the tiny checkpoint and the two PNGs of one txt2img run."""
    env = Environment(DataPaths(tmp_path_factory.mktemp("repro") / "data"))
    write_single_file("sd1", env.paths.models("checkpoints") / "tiny.safetensors", seed=0)
    registry = builtin_registry()
    report = validate(parse_workflow(TXT2IMG), registry, env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p", prompt=TXT2IMG,
                                   extra_data={"extra_pnginfo": {"workflow": {"nodes": [], "links": []}}})
    assert result.success, result.error
    files = [env.paths.output / i["filename"] for i in result.outputs["9"]["images"]]
    return env, registry, files


def tamper(source: Path, target: Path, delta: int) -> np.ndarray:
    """The same chunks, one pixel changed by `delta`."""
    with PILImage.open(source) as img:
        texts, pixels = dict(img.text), np.asarray(img).copy()
    pixels[10, 20, 1] = np.uint8((int(pixels[10, 20, 1]) + delta) % 256)
    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    PILImage.fromarray(pixels).save(target, pnginfo=info)
    return pixels


def test_fresh_png_reproduces_byte_identical_and_tampered_one_differs(made, tmp_path):
    env, registry, files = made
    first, second = (reproduce(f, registry, env) for f in files)
    assert (first.status, first.image, second.status, second.image) == (
        "match", "node 9, image 1", "match", "node 9, image 2")
    assert first.comparison.describe() == "pixels are byte-identical (64x64x3)" and first.notes == []
    assert first.made_on == first.now_on == f"cpu {platform.machine()}"
    with PILImage.open(files[0]) as img, PILImage.open(io.BytesIO(first.reproduced)) as again:
        assert np.array_equal(np.asarray(img), np.asarray(again))
    assert sorted(p.name for p in env.paths.output.iterdir()) == sorted(f.name for f in files)  # scratch only

    original = np.asarray(PILImage.open(files[1]))
    tampered = tmp_path / "tampered.png"
    changed = tamper(files[1], tampered, 37)
    outcome = reproduce(tampered, registry, env)
    assert outcome.status == "differs" and outcome.image == "node 9, image 2"
    delta = abs(int(changed[10, 20, 1]) - int(original[10, 20, 1]))
    mse = delta**2 / original.size
    assert outcome.comparison.max_abs_diff == delta
    assert outcome.comparison.psnr == pytest.approx(10 * math.log10(255**2 / mse), rel=1e-12)


def test_reproduce_finds_a_renamed_model_by_hash(made, tmp_path):
    env, registry, files = made
    folder = env.paths.models("checkpoints")
    (folder / "tiny.safetensors").rename(folder / "kept-under-another-name.safetensors")
    try:
        outcome = reproduce(files[0], registry, env)
    finally:
        (folder / "kept-under-another-name.safetensors").rename(folder / "tiny.safetensors")
    assert outcome.status == "match"
    assert outcome.notes == [f"node 4 ckpt_name: models/checkpoints/tiny.safetensors is not there; using "
                             f"kept-under-another-name.safetensors, which has the recorded sha256 "
                             f"{json.loads(read_png_texts(files[0])['latentloom'])['models'][0]['sha256']}"]


def test_a_bf16_run_is_recorded_and_reproducing_it_in_fp32_says_so(made, tmp_path):
    env, registry, _ = made
    bf16 = dataclasses.replace(env, precision=Precision("bf16"), services=Services())  # its own models, loaded in bf16
    report = validate(parse_workflow(TXT2IMG), registry, bf16)
    result = Executor(bf16).execute(report, prompt_id="b", prompt=TXT2IMG)
    assert result.success, result.error
    png = bf16.paths.output / result.outputs["9"]["images"][0]["filename"]
    record = json.loads(read_png_texts(png)["latentloom"])
    assert record["precision"] == "bf16"
    assert record["dtypes"] == {"unet": "bfloat16", "text_encoder": "bfloat16", "vae": "bfloat16"}
    outcome = reproduce(png, registry, env)  # fp32 (auto on the CPU)
    assert "precision bf16 made the image, auto runs now (pass the same --precision flags to reproduce it " \
           "exactly)" in outcome.notes
    assert outcome.status == "differs"  # bf16 rounding: the fp32 pixels are not the same bytes
    assert reproduce(png, registry, bf16).status == "match"


def test_files_without_a_prompt_are_refused(made, tmp_path):
    env, registry, _ = made
    PILImage.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    outcome = reproduce(tmp_path / "plain.png", registry, env)
    assert outcome.status == "invalid" and outcome.message.endswith("has no embedded prompt (was it saved with "
                                                                    "metadata?)")


def test_compare_rules():
    a = np.zeros((2, 2, 3), np.uint8)
    assert compare(a, a).identical and compare(a, a).psnr == math.inf
    b = a.copy()
    b[0, 0, 0] = 255
    result = compare(a, b)
    assert (result.identical, result.max_abs_diff) == (False, 255)
    assert result.psnr == pytest.approx(10 * math.log10(12))
    assert not compare(a, np.zeros((2, 3, 3), np.uint8)).identical


def cli(*args, data_dir):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_cli_reproduce_exit_codes(made, tmp_path):
    env, _, files = made
    done = cli("reproduce", str(files[0]), "--save", str(tmp_path / "again.png"), data_dir=env.paths.root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("match: pixels are byte-identical (64x64x3) (node 9, image 1; made on cpu")
    assert np.array_equal(np.asarray(PILImage.open(tmp_path / "again.png")), np.asarray(PILImage.open(files[0])))
    tamper(files[0], tmp_path / "t.png", 1)
    done = cli("reproduce", str(tmp_path / "t.png"), data_dir=env.paths.root)
    assert done.returncode == 3, done.stderr
    assert done.stdout.startswith("differs: max abs diff 1, PSNR ")


@pytest.mark.parametrize("field, value, where", [
    ("image", "node 9", "image"), ("image", {"node": [9], "batch_index": 0}, "image.node"),
    ("models", {"kind": "checkpoints"}, "models"),
    ("models", [{"kind": 1, "name": "x", "sha256": "y"}], "models.0.kind"),
    ("device", "cpu", "device"), ("dtypes", ["fp32"], "dtypes"),
])
def test_wrong_typed_latentloom_fields_are_a_clear_error(made, tmp_path, field, value, where):
    env, registry, files = made
    texts = read_png_texts(files[0])
    record = {**json.loads(texts["latentloom"]), field: value}
    target = tmp_path / "odd.png"
    info = PngInfo()
    for key, text in {**texts, "latentloom": json.dumps(record)}.items():
        info.add_text(key, text)
    with PILImage.open(files[0]) as img:
        img.save(target, pnginfo=info)
    outcome = reproduce(target, registry, env)
    assert outcome.status == "invalid" and outcome.message.startswith(f"the latentloom chunk is malformed: {where}")
