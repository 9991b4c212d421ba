"""Full-size configs and the original key layout, checked on the meta device (no weights, no memory).

The parameter and key counts are those of the released SD1.5 / SD2.x / SDXL-base files; the key names come
from diffusers' own table of keys that identify real checkpoints. Detection is then run on the real-size
key/shape layout, so the shape rules are checked at full width as well as on the tiny files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from nodes.sd import configs, original_layout
from nodes.sd.families import TEXT_ENCODER_KEYS, detect
from nodes.sd.statedict import StateDict

# Parameter counts of the released models (UNet, VAE, text encoders).
PARAMS = {
    ("sd1", False): (859_520_964, {"l": 123_060_480}),
    ("sd1", True): (859_535_364, {"l": 123_060_480}),
    ("sd2", False): (865_910_724, {"h": 352_984_064}),  # all 24 ViT-H layers (diffusers keeps 23: 340_387_840)
    ("sdxl", False): (2_567_463_684, {"l": 123_060_480, "g": 694_659_840}),
}
VAE_PARAMS = 83_653_863
UNET_KEYS = {"sd1": 686, "sd2": 686, "sdxl": 1680}
IDENTIFYING_KEYS = {
    "sd1": ["v1", "clip"],
    "sd2": ["v1", "v2", "open_clip"],
    "sdxl": ["xl_base", "clip_sdxl", "open_clip_sdxl"],
    "sdxl_refiner": ["xl_refiner"],
}


def _meta_models(family: str, **kwargs):
    components = configs.reference_configs(family, **kwargs)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(components.unet)
        vae = AutoencoderKL.from_config(components.vae)
        encoders = {
            kind: (CLIPTextModelWithProjection if kind == "g" else CLIPTextModel)(config)
            for kind, config in components.text_encoders.items()
        }
    return unet, vae, encoders


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _original_shapes(family: str, unet, vae, encoders) -> dict[str, tuple[int, ...]]:
    keys = {**original_layout.unet_to_original(unet.state_dict(), unet.config)}
    keys.update(original_layout.vae_to_original(vae.state_dict(), vae.config))
    for kind, encoder in encoders.items():
        prefix, layout = TEXT_ENCODER_KEYS[family][kind]
        convert = original_layout.clip_to_original if layout == "hf" else original_layout.open_clip_to_original
        keys.update(convert(encoder.state_dict(), prefix))
    return {k: tuple(v.shape) for k, v in keys.items()}


@pytest.mark.parametrize(("family", "inpaint"), list(PARAMS))
def test_reference_configs_have_the_released_parameter_counts(family, inpaint):
    unet, vae, encoders = _meta_models(family, inpaint=inpaint)
    unet_params, encoder_params = PARAMS[(family, inpaint)]
    assert _count(unet) == unet_params
    assert _count(vae) == VAE_PARAMS
    assert {kind: _count(m) for kind, m in encoders.items()} == encoder_params
    assert unet.config.in_channels == (9 if inpaint else 4)


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl", "sdxl_refiner"])
def test_full_size_original_layout_is_detected_back(family):
    unet, vae, encoders = _meta_models(family)
    shapes = _original_shapes(family, unet, vae, encoders)
    if family in UNET_KEYS:
        assert sum(k.startswith("model.diffusion_model.") for k in shapes) == UNET_KEYS[family]
    assert sum(k.startswith("first_stage_model.") for k in shapes) == 248
    for name in IDENTIFYING_KEYS[family]:
        assert CHECKPOINT_KEY_NAMES[name] in shapes, name
    v_key = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
    loaded = {v_key: torch.zeros(shapes[v_key])} if family == "sd2" else {}
    found = detect(StateDict(Path(f"{family}.safetensors"), shapes, _loaded=loaded))
    expected_unet = {"sd1": configs.SD1_UNET, "sd2": configs.SD2_UNET, "sdxl": configs.SDXL_UNET,
                     "sdxl_refiner": configs.SDXL_REFINER_UNET}[family]
    assert (found.family.name, found.family.prediction, found.unet, found.vae) == (
        family, "eps", expected_unet, configs.SD_VAE
    )
    expected_encoders = {"sd1": {"l": configs.CLIP_L}, "sd2": {"h": configs.OPENCLIP_H},
                         "sdxl_refiner": {"g": configs.OPENCLIP_G}}.get(family, {"l": configs.CLIP_L, "g": configs.OPENCLIP_G})
    assert found.text_encoders == expected_encoders
    # The UNet alone (a diffusion_models file) is told apart by its shapes: refiner y = 1280 + 5·256.
    unet_only = {k: v for k, v in shapes.items() if k.startswith("model.diffusion_model.")}
    alone = detect(StateDict(Path(f"{family}-unet.safetensors"), unet_only, _loaded=loaded))
    assert (alone.family.name, alone.unet) == (family, expected_unet)


def test_sd2_v_prediction_detected_at_full_size():
    unet, vae, encoders = _meta_models("sd2", prediction="v")
    shapes = _original_shapes("sd2", unet, vae, encoders)
    v_key = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
    bias = torch.randn(shapes[v_key], generator=torch.Generator().manual_seed(0)) * 0.2
    found = detect(StateDict(Path("sd2-v.safetensors"), shapes, _loaded={v_key: bias}))
    assert found.family.prediction == "v"
    reference = configs.reference_configs("sd2", prediction="v").unet
    assert configs.unet_config("sd2", found.unet, prediction="v") == reference
