"""Every example workflow runs from the command line on the demo checkpoint, and runs reproducibly."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nodes.images import read_png_texts

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))


def cli(*args, data_dir):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("demo-data")
    done = cli("demo-checkpoint", data_dir=data)
    assert done.returncode == 0, done.stderr
    assert (data / "models" / "checkpoints" / "latentloom-demo-tiny.safetensors").is_file()
    with Image.open(data / "input" / "example.png") as example:  # the inpaint example repaints its transparent disc
        alpha = np.asarray(example.getchannel("A"))
    assert alpha.min() == 0 and alpha.max() == 255
    return data


def test_there_are_example_workflows():
    assert {p.name for p in WORKFLOWS} >= {"txt2img.json", "img2img.json"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_runs_and_is_reproducible(workflow, demo_data):
    first = cli("run", str(workflow), data_dir=demo_data)
    assert first.returncode == 0, first.stderr
    second = cli("run", str(workflow), data_dir=demo_data)
    assert second.returncode == 0, second.stderr
    (one,), (two,) = (Path(r.stdout.split()[-1]) for r in (first,)), (Path(r.stdout.split()[-1]) for r in (second,))
    assert one != two and one.parent == demo_data / "output"
    assert one.read_bytes() == two.read_bytes()  # byte-identical PNGs, metadata included
    texts = read_png_texts(one)
    assert json.loads(texts["prompt"]) == json.loads(workflow.read_text())


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_has_editor_positions(workflow):
    for node in json.loads(workflow.read_text()).values():
        assert len(node["_meta"]["pos"]) == 2 and node["_meta"]["title"]
