"""CLIP vision on a tiny random-weight CLIP image tower saved in transformers' and OpenCLIP's single-file layouts:
loading, ComfyUI's preprocessing and the encoder's outputs against transformers' CLIPVisionModelWithProjection
and CLIP image processor; unCLIPConditioning's entries; the nodes in a workflow and in /object_info."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths
from nodes.sd import tiny
from nodes.sd.clip_vision import CLIP_MEAN, CLIP_STD, load_clip_vision, preprocess
from nodes.sd.devices import ModelManager
from nodes.sd.errors import CheckpointError

CONFIG = CLIPVisionConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=2,
                          image_size=224, patch_size=32, projection_dim=64, hidden_act="quick_gelu")


def _reference():
    torch.manual_seed(0)
    return CLIPVisionModelWithProjection(CONFIG).eval()


def _openclip_layout(sd):
    """The same weights under OpenCLIP's names (fused q/k/v, `proj` as [width, projection])."""
    out = {"visual.class_embedding": sd["vision_model.embeddings.class_embedding"],
           "visual.positional_embedding": sd["vision_model.embeddings.position_embedding.weight"],
           "visual.conv1.weight": sd["vision_model.embeddings.patch_embedding.weight"],
           "visual.proj": sd["visual_projection.weight"].t().contiguous()}
    for ours, theirs in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for leaf in ("weight", "bias"):
            out[f"visual.{theirs}.{leaf}"] = sd[f"vision_model.{ours}.{leaf}"]
    for i in range(CONFIG.num_hidden_layers):
        hf, oc = f"vision_model.encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        for leaf in ("weight", "bias"):
            out[f"{oc}attn.in_proj_{leaf}"] = torch.cat([sd[f"{hf}self_attn.{p}_proj.{leaf}"] for p in "qkv"])
            for theirs, ours in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                                 ("attn.out_proj", "self_attn.out_proj"), ("mlp.c_fc", "mlp.fc1"),
                                 ("mlp.c_proj", "mlp.fc2")):
                out[f"{oc}{theirs}.{leaf}"] = sd[f"{hf}{ours}.{leaf}"]
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("vision")))
    folder = env.paths.models("clip_vision")
    sd = {k: v.contiguous() for k, v in _reference().state_dict().items()}
    save_file(sd, str(folder / "vit_hf.safetensors"))
    save_file(_openclip_layout(sd), str(folder / "vit_openclip.safetensors"))
    torch.save(sd, folder / "vit.pth")
    save_file({"weight": torch.zeros(2)}, str(folder / "other.safetensors"))
    tiny.write_single_file("sd1", env.paths.models("checkpoints") / "sd1.safetensors")
    return env


def _levels(height, width, seed=0):
    """An image on 8-bit levels (what a PNG gives), as IMAGE and as a PIL image."""
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return torch.from_numpy(array).float().div(255).unsqueeze(0), PILImage.fromarray(array)


def test_preprocess_matches_clips_image_processor():
    image, pil = _levels(224, 224)
    processor = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                                      image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    expected = processor(images=pil, return_tensors="pt")["pixel_values"]
    assert torch.allclose(preprocess(image, 224, crop=True), expected, atol=1e-6)
    # Other sizes: ComfyUI's torch bicubic (antialiased) resize, not PIL's, then the centre crop.
    wide, _ = _levels(100, 300, seed=1)
    resized = F.interpolate(wide.movedim(-1, 1), size=(224, 672), mode="bicubic", antialias=True)[..., 224:448]
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    assert torch.allclose(preprocess(wide, 224, crop=True), ((resized * 255).clamp(0, 255).round() / 255 - mean) / std,
                          atol=1e-6)
    squeezed = preprocess(wide, 224, crop=False)
    assert squeezed.shape == (1, 3, 224, 224) and not torch.allclose(squeezed, preprocess(wide, 224, crop=True))


@pytest.mark.parametrize("name", ["vit_hf.safetensors", "vit_openclip.safetensors"])
def test_encode_matches_transformers(env, name):
    vision = load_clip_vision(env.paths.models("clip_vision") / name, ModelManager("cpu"))
    assert vision.model.config.num_attention_heads == 2 and vision.image_size == 224
    image, _ = _levels(224, 224, seed=2)
    out = vision.encode(image.expand(2, -1, -1, -1))
    with torch.no_grad():
        ref = _reference()(pixel_values=preprocess(image, 224, True).expand(2, -1, -1, -1), output_hidden_states=True)
    assert out.image_embeds.shape == (2, 64) and out.last_hidden_state.shape == (2, 50, 128)
    assert torch.allclose(out.image_embeds, ref.image_embeds, atol=1e-5)
    assert torch.allclose(out.last_hidden_state, ref.last_hidden_state, atol=1e-5)
    assert torch.allclose(out["penultimate_hidden_states"], ref.hidden_states[-2], atol=1e-5)


def test_bad_files_are_refused(env):
    folder = env.paths.models("clip_vision")
    with pytest.raises(CheckpointError, match="pickle"):
        load_clip_vision(folder / "vit.pth", ModelManager("cpu"))
    assert load_clip_vision(folder / "vit.pth", ModelManager("cpu"), allow_pickle=True).image_size == 224
    with pytest.raises(CheckpointError, match="not a CLIP vision model"):
        load_clip_vision(folder / "other.safetensors", ModelManager("cpu"))


def test_workflow_encodes_and_adds_unclip_entries(env):
    image, pil = _levels(200, 260, seed=3)
    pil.save(env.paths.input / "ref.png")
    wf = {"1": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "vit_openclip.safetensors"}},
          "2": {"class_type": "LoadImage", "inputs": {"image": "ref.png"}},
          "3": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["1", 0], "image": ["2", 0],
                                                              "crop": "none"}},
          "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.safetensors"}},
          "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "a boat", "clip": ["4", 1]}},
          "6": {"class_type": "unCLIPConditioning", "inputs": {"conditioning": ["5", 0], "clip_vision_output": ["3", 0],
                                                                "strength": 0.7, "noise_augmentation": 0.1}},
          "7": {"class_type": "unCLIPConditioning", "inputs": {"conditioning": ["6", 0], "clip_vision_output": ["3", 0],
                                                                "strength": 1.5, "noise_augmentation": 0.0}},
          "8": {"class_type": "unCLIPConditioning", "inputs": {"conditioning": ["7", 0], "clip_vision_output": ["3", 0],
                                                                "strength": 0.0, "noise_augmentation": 0.5}},
          "9": {"class_type": "PreviewAny", "inputs": {"source": ["8", 0]}}}
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p", prompt=wf)
    assert result.success, result.error
    encoded = result.values["3"].outputs[0][0]
    with torch.no_grad():
        ref = _reference()(pixel_values=preprocess(image, 224, crop=False))
    assert torch.allclose(encoded.image_embeds, ref.image_embeds, atol=1e-5)
    text = result.values["5"].outputs[0][0]
    (cond, extra), = result.values["7"].outputs[0][0]
    assert cond is text[0][0] and extra["pooled_output"] is text[0][1]["pooled_output"]
    assert [(u["strength"], u["noise_augmentation"]) for u in extra["unclip_conditioning"]] == [(0.7, 0.1), (1.5, 0.0)]
    assert all(u["clip_vision_output"] is encoded for u in extra["unclip_conditioning"])
    assert "unclip_conditioning" not in text[0][1]  # the input conditioning is left as it was
    assert result.values["8"].outputs[0][0] is result.values["7"].outputs[0][0]  # strength 0: unchanged


def test_object_info_matches_comfyui(env):
    info = builtin_registry().object_info(env)
    loader, encode, unclip = info["CLIPVisionLoader"], info["CLIPVisionEncode"], info["unCLIPConditioning"]
    assert loader["input"]["required"]["clip_name"][0] == ["other.safetensors", "vit.pth", "vit_hf.safetensors",
                                                           "vit_openclip.safetensors"]
    assert (loader["output"], loader["category"], loader["display_name"], loader["python_module"]) == (
        ["CLIP_VISION"], "loaders", "Load CLIP Vision", "nodes")
    assert encode["input_order"]["required"] == ["clip_vision", "image", "crop"]
    assert encode["input"]["required"]["crop"][0] == ["center", "none"]
    assert (encode["output"], encode["category"], encode["display_name"]) == (
        ["CLIP_VISION_OUTPUT"], "conditioning", "CLIP Vision Encode")
    assert unclip["input_order"]["required"] == ["conditioning", "clip_vision_output", "strength",
                                                 "noise_augmentation"]
    assert unclip["input"]["required"]["strength"][1] == {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}
    assert unclip["input"]["required"]["noise_augmentation"][1] == {"default": 0.0, "min": 0.0, "max": 1.0,
                                                                    "step": 0.01}
    assert (unclip["output"], unclip["category"], unclip["display_name"]) == (
        ["CONDITIONING"], "conditioning", "unCLIPConditioning")
