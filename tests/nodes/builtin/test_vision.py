"""CLIP vision on a tiny random-weight CLIP image tower saved in transformers' and OpenCLIP's single-file layouts:
loading, ComfyUI's preprocessing and the encoder's outputs against transformers' CLIPVisionModelWithProjection
and CLIP image processor; unCLIPConditioning's entries; a tiny T2I-Adapter style model in its file layout against
the StyleAdapter computation written out; the nodes in a workflow and in /object_info."""
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
from nodes.sd.style_model import load_style_model

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


def _style_tensors(width=128, tokens=4, layers=2, context=32):
    """Random weights under the T2I-Adapter StyleAdapter's names and shapes."""
    g = torch.Generator().manual_seed(5)
    rand = lambda *shape: torch.randn(shape, generator=g) * 0.1  # noqa: E731
    out = {"style_embedding": rand(1, tokens, width), "proj": rand(width, context)}
    for norm in ("ln_pre", "ln_post"):
        out[f"{norm}.weight"], out[f"{norm}.bias"] = 1 + rand(width), rand(width)
    for i in range(layers):
        p = f"transformer_layes.{i}."
        out.update({p + "attn.in_proj_weight": rand(3 * width, width), p + "attn.in_proj_bias": rand(3 * width),
                    p + "attn.out_proj.weight": rand(width, width), p + "attn.out_proj.bias": rand(width),
                    p + "mlp.c_fc.weight": rand(4 * width, width), p + "mlp.c_fc.bias": rand(4 * width),
                    p + "mlp.c_proj.weight": rand(width, 4 * width), p + "mlp.c_proj.bias": rand(width)})
        for norm in ("ln_1", "ln_2"):
            out[f"{p}{norm}.weight"], out[f"{p}{norm}.bias"] = 1 + rand(width), rand(width)
    return out


STYLE = _style_tensors()


def _style_reference(tokens_in, sd=STYLE, heads=8):
    """The StyleAdapter's computation written out: query tokens appended, pre-norm blocks (8-head attention,
    quick-GELU MLP), the query tokens kept, post-norm and projection."""
    norm = lambda x, name: F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"])  # noqa: E731
    count = sd["style_embedding"].shape[1]
    x = norm(torch.cat([tokens_in, sd["style_embedding"].expand(tokens_in.shape[0], -1, -1)], 1), "ln_pre")
    for i in range(len({k.split(".")[1] for k in sd if k.startswith("transformer_layes.")})):
        p = f"transformer_layes.{i}."
        h = norm(x, p + "ln_1")
        q, k, v = (h @ sd[p + "attn.in_proj_weight"].t() + sd[p + "attn.in_proj_bias"]).chunk(3, dim=-1)
        split = lambda t: t.unflatten(-1, (heads, -1)).transpose(1, 2)  # noqa: E731
        weights = (split(q) @ split(k).transpose(-1, -2) / (q.shape[-1] // heads) ** 0.5).softmax(-1)
        attended = (weights @ split(v)).transpose(1, 2).flatten(2)
        x = x + attended @ sd[p + "attn.out_proj.weight"].t() + sd[p + "attn.out_proj.bias"]
        h = norm(x, p + "ln_2") @ sd[p + "mlp.c_fc.weight"].t() + sd[p + "mlp.c_fc.bias"]
        x = x + (h * torch.sigmoid(1.702 * h)) @ sd[p + "mlp.c_proj.weight"].t() + sd[p + "mlp.c_proj.bias"]
    return norm(x[:, -count:], "ln_post") @ sd["proj"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("vision")))
    folder = env.paths.models("clip_vision")
    sd = {k: v.contiguous() for k, v in _reference().state_dict().items()}
    save_file(sd, str(folder / "vit_hf.safetensors"))
    save_file(_openclip_layout(sd), str(folder / "vit_openclip.safetensors"))
    torch.save(sd, folder / "vit.pth")
    save_file({"weight": torch.zeros(2)}, str(folder / "other.safetensors"))
    save_file(STYLE, str(env.paths.models("style_models") / "style.safetensors"))
    save_file({"redux_up.weight": torch.zeros(8, 4)}, str(env.paths.models("style_models") / "redux.safetensors"))
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


def test_style_model_matches_the_adapter_computation(env):
    folder = env.paths.models("style_models")
    style = load_style_model(folder / "style.safetensors", ModelManager("cpu"))
    tokens_in = torch.randn((2, 50, 128), generator=torch.Generator().manual_seed(6))
    assert torch.allclose(style.tokens(tokens_in), _style_reference(tokens_in), atol=1e-5)
    with pytest.raises(ValueError, match="width 128"):
        style.tokens(torch.zeros(1, 50, 64))
    with pytest.raises(CheckpointError, match="Redux"):
        load_style_model(folder / "redux.safetensors", ModelManager("cpu"))


def _style_workflow(strength, strength_type):
    return {"1": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "vit_hf.safetensors"}},
            "2": {"class_type": "LoadImage", "inputs": {"image": "style.png"}},
            "3": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["1", 0], "image": ["2", 0],
                                                                "crop": "center"}},
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.safetensors"}},
            "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "a boat", "clip": ["4", 1]}},
            "6": {"class_type": "StyleModelLoader", "inputs": {"style_model_name": "style.safetensors"}},
            "7": {"class_type": "StyleModelApply", "inputs": {
                "conditioning": ["5", 0], "style_model": ["6", 0], "clip_vision_output": ["3", 0],
                "strength": strength, "strength_type": strength_type}},
            "8": {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
            "9": {"class_type": "KSampler", "inputs": {
                "model": ["4", 0], "seed": 1, "steps": 2, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
                "positive": ["7", 0], "negative": ["5", 0], "latent_image": ["8", 0], "denoise": 1.0}},
            "10": {"class_type": "PreviewAny", "inputs": {"source": ["9", 0]}}}


def test_style_model_apply_in_a_workflow(env):
    _levels(64, 64, seed=7)[1].save(env.paths.input / "style.png")
    wf = _style_workflow(0.5, "multiply")
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p", prompt=wf)
    assert result.success, result.error
    text = result.values["5"].outputs[0][0][0][0]
    (styled, extra), = result.values["7"].outputs[0][0]
    expected = _style_reference(result.values["3"].outputs[0][0].last_hidden_state) * 0.5
    assert styled.shape == (1, 77 + 4, 32) and torch.equal(styled[:, :77], text)
    assert torch.allclose(styled[:, 77:], expected, atol=1e-5) and "pooled_output" in extra
    assert torch.isfinite(result.values["9"].outputs[0][0]["samples"]).all()
    refused = Executor(env).execute(validate(parse_workflow(_style_workflow(0.5, "attn_bias")), builtin_registry(),
                                             env), prompt_id="q")
    assert not refused.success and "attn_bias" in str(refused.error)


def test_style_nodes_object_info(env):
    info = builtin_registry().object_info(env)
    loader, apply = info["StyleModelLoader"], info["StyleModelApply"]
    assert loader["input"]["required"]["style_model_name"][0] == ["redux.safetensors", "style.safetensors"]
    assert (loader["output"], loader["category"], loader["display_name"]) == (
        ["STYLE_MODEL"], "loaders", "Load Style Model")
    assert apply["input_order"]["required"] == ["conditioning", "style_model", "clip_vision_output", "strength",
                                                "strength_type"]
    assert apply["input"]["required"]["strength"][1] == {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.001}
    assert apply["input"]["required"]["strength_type"][0] == ["multiply", "attn_bias"]
    assert (apply["output"], apply["category"], apply["display_name"], apply["python_module"]) == (
        ["CONDITIONING"], "conditioning/style_model", "Apply Style Model", "nodes")
