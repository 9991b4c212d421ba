"""Single-component loaders on real-layout files: UNETLoader, CLIPLoader, DualCLIPLoader, VAELoader's TAESD, and
the deprecated CheckpointLoader; their errors; their /object_info entries against ComfyUI's definitions.

Files are written from tiny seeded modules in the layouts real files use (diffusion models: bare LDM keys; text
encoders: transformers' `text_model.` layout for CLIP-L / CLIP-G, OpenCLIP's for SD2's ViT-H; TAESD: taesd.py's
indices). Each loaded component is compared with the module it was written from (diffusers / transformers
forward passes, exact), and the CLIPs also with the CLIP of the full checkpoint holding the same encoders: the
conditioning must be the same bit for bit.
"""
from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderTiny
from safetensors.torch import save_file

from nodes.api import Context, Environment
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths
from nodes.sd import original_layout, tiny
from nodes.sd.errors import CheckpointError
from nodes.sd.families import TEXT_ENCODER_KEYS
from nodes.sd.tokenizer import load_clip_tokenizer

PROMPT = "a photo of a cat"
ARCHS = ("sd1", "sd2", "sdxl", "sdxl-refiner")


def _save(tensors: dict, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def _under(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def models():
    return {arch: tiny.build_tiny(arch) for arch in ARCHS}


@pytest.fixture(scope="module")
def env(tmp_path_factory, models):
    env = Environment(DataPaths(tmp_path_factory.mktemp("components")))
    root = env.paths.root / "models"
    for arch, built in models.items():
        tiny.write_single_file(arch, root / "checkpoints" / f"{arch}.safetensors")
        everything = tiny.original_state_dict(built)
        # Diffusion-model files keep the UNet's original keys without the checkpoint prefix; SD1's goes into the
        # legacy folder name ComfyUI still reads (models/unet).
        folder = "unet" if arch == "sd1" else "diffusion_models"
        _save(_under(everything, "model.diffusion_model."), root / folder / f"{arch}-unet.safetensors")
        for kind, (prefix, layout) in TEXT_ENCODER_KEYS[built.spec.family.name].items():
            name = f"{arch}-clip-{kind}.safetensors"
            if layout == "hf":  # clip_l.safetensors / clip_g.safetensors: transformers' names
                tensors = original_layout.clip_to_original(built.text_encoders[kind].state_dict(), "")
            elif kind == "g":
                tensors = {k if k.startswith("text_projection") else "text_model." + k.removeprefix("text_model."): v
                           for k, v in built.text_encoders["g"].state_dict().items()}
            else:  # SD2's ViT-H as stored in its checkpoint, OpenCLIP's names (with the unused projection)
                tensors = _under(everything, prefix)
            _save(tensors, root / ("clip" if kind == "h" else "text_encoders") / name)
    # A text encoder put where diffusion models belong, and the other way round.
    sd1 = tiny.original_state_dict(models["sd1"])
    _save(_under(sd1, "cond_stage_model.transformer."), root / "diffusion_models" / "misplaced-clip.safetensors")
    _save(_under(sd1, "model.diffusion_model."), root / "text_encoders" / "misplaced-unet.safetensors")
    (env.paths.models("configs") / "v1-inference.yaml").write_text("model: {}\n")
    return env


def call(env, node: str, **inputs):
    """Run one node directly (its inputs validated by its declaration), as the executor would."""
    ctx = Context(node_id="1", prompt_id="p", prompt={}, extra_data={}, env=env)
    return builtin_registry().get(node).cls(**inputs).run(ctx)


def conditioning(env, clip):
    return call(env, "CLIPTextEncode", text=PROMPT, clip=clip)[0]


def checkpoint_conditioning(env, arch: str):
    return conditioning(env, call(env, "CheckpointLoaderSimple", ckpt_name=f"{arch}.safetensors").CLIP)


@pytest.mark.parametrize("arch", ["sd1", "sdxl-refiner"])
def test_unet_loader_loads_a_bare_diffusion_model_file(env, models, arch):
    model = call(env, "UNETLoader", unet_name=f"{arch}-unet.safetensors", weight_dtype="default")
    built = models[arch]
    assert model.family == built.spec.family
    config = built.unet.config
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    context = torch.randn(1, 77, config.cross_attention_dim, generator=g)
    added = None
    if config.addition_embed_type == "text_time":
        added = {"text_embeds": torch.randn(1, 32, generator=g), "time_ids": torch.tensor([[64.0, 64, 0, 0, 6.0]])}
    with torch.no_grad():
        ours = model.unet(x, 500, encoder_hidden_states=context, added_cond_kwargs=added).sample
        theirs = built.unet(x, 500, encoder_hidden_states=context, added_cond_kwargs=added).sample
    assert torch.equal(ours, theirs)


def test_unet_loader_refuses_fp8_and_other_files(env):
    with pytest.raises(ValueError, match="fp8"):
        call(env, "UNETLoader", unet_name="sd1-unet.safetensors", weight_dtype="fp8_e4m3fn")
    with pytest.raises(CheckpointError, match="not a diffusion model"):
        call(env, "UNETLoader", unet_name="misplaced-clip.safetensors", weight_dtype="default")


@pytest.mark.parametrize(("arch", "name"), [("sd1", "sd1-clip-l.safetensors"), ("sd2", "sd2-clip-h.safetensors"),
                                            ("sdxl-refiner", "sdxl-refiner-clip-g.safetensors")])
def test_clip_loader_encodes_as_the_checkpoint_clip(env, arch, name):
    clip = call(env, "CLIPLoader", clip_name=name, type="stable_diffusion")
    cond, extras = conditioning(env, clip)
    expected, expected_extras = checkpoint_conditioning(env, arch)
    assert torch.equal(cond, expected) and torch.equal(extras["pooled_output"], expected_extras["pooled_output"])


def test_clip_l_file_gives_transformers_last_hidden_state(env, models):
    cond, _ = conditioning(env, call(env, "CLIPLoader", clip_name="sd1-clip-l.safetensors", type="stable_diffusion"))
    ids = load_clip_tokenizer()(PROMPT, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = models["sd1"].text_encoders["l"](ids).last_hidden_state
    assert torch.equal(cond, expected)


@pytest.mark.parametrize("order", [("l", "g"), ("g", "l")])
def test_dual_clip_loader_makes_the_sdxl_clip_pair(env, order):
    names = {f"clip_name{i + 1}": f"sdxl-clip-{kind}.safetensors" for i, kind in enumerate(order)}
    cond, extras = conditioning(env, call(env, "DualCLIPLoader", **names, type="sdxl"))
    expected, expected_extras = checkpoint_conditioning(env, "sdxl")
    assert cond.shape[-1] == 64
    assert torch.equal(cond, expected) and torch.equal(extras["pooled_output"], expected_extras["pooled_output"])


@pytest.mark.parametrize(("node", "inputs", "message"), [
    ("DualCLIPLoader", {"clip_name1": "sd1-clip-l.safetensors", "clip_name2": "sdxl-clip-l.safetensors",
                        "type": "sdxl"}, "got CLIP-L and CLIP-L"),
    ("DualCLIPLoader", {"clip_name1": "sdxl-clip-l.safetensors", "clip_name2": "sdxl-clip-g.safetensors",
                        "type": "flux"}, "not supported"),
    ("CLIPLoader", {"clip_name": "sd1-clip-l.safetensors", "type": "sd3"}, "not supported"),
    ("CLIPLoader", {"clip_name": "../unet/sd1-unet.safetensors", "type": "stable_diffusion"}, "unsafe path"),
    ("CLIPLoader", {"clip_name": "misplaced-unet.safetensors", "type": "stable_diffusion"}, "not a CLIP text encoder"),
])
def test_wrong_text_encoder_files_and_types_are_refused(env, node, inputs, message):
    with pytest.raises((ValueError, CheckpointError), match=message):
        call(env, node, **inputs)


def test_checkpoint_loader_ignores_the_config(env):
    model, clip, vae = call(env, "CheckpointLoader", config_name="v1-inference.yaml", ckpt_name="sd1.safetensors")
    simple = call(env, "CheckpointLoaderSimple", ckpt_name="sd1.safetensors")
    assert model.family == simple.MODEL.family
    assert torch.equal(conditioning(env, clip)[0], conditioning(env, simple.CLIP)[0])
    for ours, theirs in ((model.unet, simple.MODEL.unet), (vae.vae, simple.VAE.vae)):
        assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))


@pytest.fixture(scope="module")
def taesd(env):
    """TAESD and TAESDXL (same architecture, other weights) written as their encoder and decoder files."""
    folder = env.paths.models("vae_approx")
    built = {}
    for seed, name in enumerate(("taesd", "taesdxl")):
        torch.manual_seed(seed)
        built[name] = AutoencoderTiny().eval()
        encoder, decoder = original_layout.taesd_to_original(built[name].state_dict())
        _save(encoder, folder / f"{name}_encoder.safetensors")
        _save(decoder, folder / f"{name}_decoder.safetensors")
    return built


def vae_names(env) -> list[str]:
    return builtin_registry().object_info(env)["VAELoader"]["input"]["required"]["vae_name"][0]


@pytest.mark.parametrize(("name", "scale"), [("taesd", 0.18215), ("taesdxl", 0.13025)])
def test_vae_loader_loads_taesd_with_its_latent_scale(env, taesd, name, scale):
    g = torch.Generator().manual_seed(1)
    pixels = torch.rand(1, 32, 40, 3, generator=g)
    latent = torch.randn(1, 4, 4, 5, generator=g)
    handle = call(env, "VAELoader", vae_name=name)
    with torch.no_grad():
        decoded = ((taesd[name].decode(latent * scale).sample + 1) / 2).clamp(0, 1).movedim(1, -1)
        encoded = taesd[name].encode(pixels.movedim(-1, 1) * 2 - 1).latents / scale
    assert torch.equal(handle.decode(latent), decoded)
    assert torch.equal(handle.encode(pixels), encoded)


def test_vae_loader_offers_taesd_only_with_both_halves(env, taesd):
    assert vae_names(env) == ["taesd", "taesdxl", "pixel_space"]
    decoder = env.paths.models("vae_approx") / "taesdxl_decoder.safetensors"
    kept = decoder.read_bytes()
    decoder.unlink()
    try:
        assert vae_names(env) == ["taesd", "pixel_space"]
        with pytest.raises(FileNotFoundError, match="taesdxl_decoder"):
            call(env, "VAELoader", vae_name="taesdxl")
    finally:
        decoder.write_bytes(kept)
    with pytest.raises(ValueError, match="pixel-space"):
        call(env, "VAELoader", vae_name="pixel_space")


def test_model_folders_and_their_legacy_names_are_listed(env):
    info = builtin_registry().object_info(env)
    assert info["UNETLoader"]["input"]["required"]["unet_name"][0] == [
        "misplaced-clip.safetensors", "sd1-unet.safetensors", "sd2-unet.safetensors",
        "sdxl-refiner-unet.safetensors", "sdxl-unet.safetensors"]
    assert "sd2-clip-h.safetensors" in info["CLIPLoader"]["input"]["required"]["clip_name"][0]  # from models/clip
    assert info["CheckpointLoader"]["input"]["required"]["config_name"][0] == ["v1-inference.yaml"]
