"""nodes.sd.suggest: a checkpoint's family and the image size that suits it, without loading weights."""
from __future__ import annotations

import json

import pytest

from nodes.sd.suggest import summarize
from nodes.sd.tiny import write_single_file


SDXL_BASE = {"use_linear_projection": True, "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
             "projection_class_embeddings_input_dim": 2816}  # 1280 pooled + 6 × 256 (SDXL 1.0 base)
SDXL_REFINER = {**SDXL_BASE, "projection_class_embeddings_input_dim": 2560}  # 1280 pooled + 5 × 256


def diffusers_folder(tmp_path, unet: dict, prediction: str = "epsilon"):
    folder = tmp_path / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "scheduler").mkdir()
    (folder / "model_index.json").write_text("{}")
    if unet.get("addition_embed_type") == "text_time":  # the SDXL variant is told by text_encoder_2's width
        (folder / "text_encoder_2").mkdir()
        (folder / "text_encoder_2" / "config.json").write_text(json.dumps({"projection_dim": 1280}))
    (folder / "unet" / "config.json").write_text(json.dumps({"block_out_channels": [320, 640, 1280], **unet}))
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"prediction_type": prediction}))
    return folder


@pytest.mark.parametrize("unet, prediction, expected", [
    ({}, "epsilon", ("sd1", "eps", 512)),
    ({"use_linear_projection": True}, "epsilon", ("sd2", "eps", 512)),
    ({"use_linear_projection": True}, "v_prediction", ("sd2", "v", 768)),
    (SDXL_BASE, "epsilon", ("sdxl", "eps", 1024)),
    (SDXL_REFINER, "epsilon", ("sdxl_refiner", "eps", 1024)),
])
def test_sizes_by_family(tmp_path, unet, prediction, expected):
    summary = summarize(diffusers_folder(tmp_path, unet, prediction))
    assert (summary.family, summary.prediction, summary.size) == expected


def test_the_tiny_demo_checkpoint_is_64(tmp_path):
    summary = summarize(write_single_file("sd1", tmp_path / "demo.safetensors"))
    assert (summary.family, summary.size) == ("sd1", 64)
