"""nodes.sd.suggest: a checkpoint's family and the image size that suits it, without loading weights."""
from __future__ import annotations

import json

import pytest

from nodes.sd.suggest import summarize
from nodes.sd.tiny import write_single_file


def diffusers_folder(tmp_path, unet: dict, prediction: str = "epsilon"):
    folder = tmp_path / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "scheduler").mkdir()
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "config.json").write_text(json.dumps({"block_out_channels": [320, 640, 1280], **unet}))
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"prediction_type": prediction}))
    return folder


@pytest.mark.parametrize("unet, prediction, expected", [
    ({}, "epsilon", ("sd1", "eps", 512)),
    ({"use_linear_projection": True}, "epsilon", ("sd2", "eps", 512)),
    ({"use_linear_projection": True}, "v_prediction", ("sd2", "v", 768)),
    ({"use_linear_projection": True, "addition_embed_type": "text_time"}, "epsilon", ("sdxl", "eps", 1024)),
])
def test_sizes_by_family(tmp_path, unet, prediction, expected):
    summary = summarize(diffusers_folder(tmp_path, unet, prediction))
    assert (summary.family, summary.prediction, summary.size) == expected


def test_the_tiny_demo_checkpoint_is_64(tmp_path):
    summary = summarize(write_single_file("sd1", tmp_path / "demo.safetensors"))
    assert (summary.family, summary.size) == ("sd1", 64)
