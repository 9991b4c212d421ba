"""Checkpoint detection and loading against tiny real-architecture files (nodes/sd/checkpoint.py, families.py).

Every comparison is exact (torch.equal): loading only renames and assigns tensors (and upcasts fp16/bf16, which
is exact), so any difference is a wrong or missing key.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPTextModel

from nodes.sd import tiny
from nodes.sd.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_diffusers_folder,
    load_model,
    load_vae_file,
)
from nodes.sd.families import V_PRED_STD_THRESHOLD, detect
from nodes.sd.statedict import StateDict, open_state_dict

ARCHS = tiny.ARCHITECTURES
EXPECTED = {  # family, prediction, inpaint, latent scale, text encoders
    "sd1": ("sd1", "eps", False, 0.18215, ("l",)),
    "sd1-inpaint": ("sd1", "eps", True, 0.18215, ("l",)),
    "sd2": ("sd2", "eps", False, 0.18215, ("h",)),
    "sd2-v": ("sd2", "v", False, 0.18215, ("h",)),
    "sdxl": ("sdxl", "eps", False, 0.13025, ("l", "g")),
    "sdxl-refiner": ("sdxl_refiner", "eps", False, 0.13025, ("g",)),
}


def components(model: Checkpoint | tiny.TinyModels) -> dict[str, torch.nn.Module]:
    return {"unet": model.unet, "vae": model.vae, **{f"text_encoder_{k}": v for k, v in model.text_encoders.items()}}


def assert_same_weights(actual: torch.nn.Module, expected: torch.nn.Module, *, cast=None) -> None:
    got, want = actual.state_dict(), expected.state_dict()
    assert got.keys() == want.keys()
    for key, tensor in want.items():
        if cast is not None and tensor.is_floating_point():
            tensor = cast(tensor)
        assert got[key].dtype == tensor.dtype, key
        assert torch.equal(got[key], tensor), key


def assert_fully_loaded(module: torch.nn.Module) -> None:
    tensors = [*module.named_parameters(), *module.named_buffers()]
    assert not [name for name, t in tensors if t.is_meta or t.device.type != "cpu"]
    assert not any(p.requires_grad for p in module.parameters())
    assert not module.training


@pytest.mark.parametrize("arch", ARCHS)
def test_single_file_holds_exactly_the_built_weights(tiny_checkpoints, arch):
    checkpoint = load_checkpoint(tiny_checkpoints.single_file(arch))
    built = tiny_checkpoints.models(arch)
    assert checkpoint.family == built.spec.family
    assert checkpoint.metadata["latentloom.tiny"] == arch
    assert components(checkpoint).keys() == components(built).keys()
    for name, module in components(checkpoint).items():
        assert type(module) is type(components(built)[name]), name
        assert_fully_loaded(module)
        assert_same_weights(module, components(built)[name])


@pytest.mark.parametrize("arch", ARCHS)
def test_detection_finds_family_and_shapes(tiny_checkpoints, arch):
    found = detect(open_state_dict(tiny_checkpoints.single_file(arch)))
    name, prediction, inpaint, scale, encoders = EXPECTED[arch]
    family = found.family
    assert (family.name, family.prediction, family.inpaint, family.latent_scale) == (name, prediction, inpaint, scale)
    assert tuple(spec.key for spec in family.text_encoders) == encoders
    spec = tiny.tiny_spec(arch)
    assert (found.unet, found.vae, found.text_encoders) == (spec.unet, spec.vae, spec.text_encoders)


@pytest.mark.parametrize("arch", ARCHS)
def test_diffusers_folder_loads_the_same_model(tiny_checkpoints, arch):
    single = load_checkpoint(tiny_checkpoints.single_file(arch))
    folder = load_diffusers_folder(tiny_checkpoints.folder(arch))
    assert load_model(tiny_checkpoints.folder(arch)).family == folder.family
    for field in ("name", "prediction", "inpaint", "latent_scale", "in_channels"):
        assert getattr(folder.family, field) == getattr(single.family, field), field
    # The configs we derive from tensor shapes are the ones the builder saved with the folder.
    for part in ("unet", "vae"):
        saved = {k: v for k, v in getattr(folder, part).config.items() if not k.startswith("_")}
        derived = {k: v for k, v in getattr(single, part).config.items() if not k.startswith("_")}
        assert {k: list(v) if isinstance(v, tuple) else v for k, v in derived.items()} == {
            k: list(v) if isinstance(v, tuple) else v for k, v in saved.items()
        }
    for name, module in components(folder).items():
        assert_fully_loaded(module)
        if name != "text_encoder_h":
            assert_same_weights(module, components(single)[name])


@pytest.mark.parametrize("arch", ["sd2", "sd2-v"])
def test_sd2_folder_text_encoder_lacks_the_last_layer_but_encodes_the_same(tiny_checkpoints, arch):
    single = load_checkpoint(tiny_checkpoints.single_file(arch))
    folder = load_diffusers_folder(tiny_checkpoints.folder(arch))
    full, truncated = single.text_encoders["h"], folder.text_encoders["h"]
    assert truncated.config.num_hidden_layers == full.config.num_hidden_layers - 1
    assert (single.family.encoder("h").layers_missing, folder.family.encoder("h").layers_missing) == (0, 1)
    full_weights = full.state_dict()
    for key, tensor in truncated.state_dict().items():
        assert torch.equal(tensor, full_weights[key]), key
    # ComfyUI's default SD2 layer (-2 of the full stack) is the truncated model's last hidden state.
    ids = torch.tensor([[49406, 320, 1125, 539, 320, 2368, 49407] + [0] * 70])
    with torch.no_grad():
        a = full(ids, output_hidden_states=True).hidden_states[-2]
        b = truncated(ids, output_hidden_states=True).hidden_states[-1]
    assert torch.equal(a, b)


@pytest.mark.parametrize("stored", [torch.float16, torch.bfloat16])
def test_half_precision_file_loads_as_float32_on_cpu(tiny_checkpoints, stored):
    path = tiny_checkpoints.single_file("sdxl", dtype=stored)
    built = tiny_checkpoints.models("sdxl")
    checkpoint = load_checkpoint(path)
    for name, module in components(checkpoint).items():
        assert_same_weights(module, components(built)[name], cast=lambda t: t.to(stored).float())
    kept = load_checkpoint(path, dtype=stored)
    assert_same_weights(kept.unet, built.unet, cast=lambda t: t.to(stored))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_weights_stay_in_the_memory_mapped_file(tiny_checkpoints):
    path = tiny_checkpoints.single_file("sd1")
    checkpoint = load_checkpoint(path)
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == os.path.realpath(path):
                start, end = (int(x, 16) for x in parts[0].split("-"))
                ranges.append((start, end))
    for module in (checkpoint.unet, checkpoint.vae, checkpoint.text_encoders["l"]):
        for name, param in module.named_parameters():
            assert any(start <= param.data_ptr() < end for start, end in ranges), f"{name} was copied"


def test_in_place_edits_of_mapped_weights_stay_private(tiny_checkpoints):
    # The file is mapped copy-on-write: patching weights in place (LoRA) must not touch the file or other loads.
    path = tiny_checkpoints.single_file("sd1")
    before = path.read_bytes()
    first, second = load_checkpoint(path), load_checkpoint(path)
    with torch.no_grad():
        first.unet.conv_in.weight.add_(1.0)
    assert path.read_bytes() == before
    assert torch.equal(second.unet.conv_in.weight, tiny_checkpoints.models("sd1").unet.conv_in.weight)


def _with_bias(state: StateDict, key: str, bias: torch.Tensor) -> StateDict:
    return StateDict(state.path, state.shapes, state.metadata, _loaded={**state.tensors(), key: bias})


def test_sd2_v_prediction_rule_is_population_std_over_threshold(tiny_checkpoints):
    state = open_state_dict(tiny_checkpoints.single_file("sd2"))
    key = "model.diffusion_model.output_blocks.3.1.transformer_blocks.0.norm1.bias"
    n = state.shapes[key][0]
    signs = torch.tensor([1.0, -1.0]).repeat(n // 2)
    just_under = signs * (V_PRED_STD_THRESHOLD - 0.001)  # population std 0.089, sample std above 0.09
    assert torch.std(just_under) > V_PRED_STD_THRESHOLD
    assert detect(_with_bias(state, key, just_under)).family.prediction == "eps"
    assert detect(_with_bias(state, key, signs * (V_PRED_STD_THRESHOLD + 0.001))).family.prediction == "v"


def test_pickle_checkpoint_needs_the_opt_in(tiny_checkpoints, tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": tiny.original_state_dict(tiny_checkpoints.models("sd1")), "global_step": 3}, path)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    assert str(path) in str(refused.value) and "allow_pickle=True" in str(refused.value)
    checkpoint = load_checkpoint(path, allow_pickle=True)
    for name, module in components(checkpoint).items():
        assert_fully_loaded(module)
        assert_same_weights(module, components(tiny_checkpoints.models("sd1"))[name])


class _NotAWeight:
    pass


def test_pickle_with_code_objects_is_refused_even_with_opt_in(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _NotAWeight()}, path)
    with pytest.raises(CheckpointError, match="could not read pickle checkpoint") as err:
        load_checkpoint(path, allow_pickle=True)
    assert str(path) in str(err.value)


def _sd1_tensors(tiny_checkpoints) -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in tiny.original_state_dict(tiny_checkpoints.models("sd1")).items()}


def _broken_files(tiny_checkpoints, root: Path) -> dict[str, Path]:
    """One broken file per failure, named by the words its error message must contain."""
    good = tiny_checkpoints.single_file("sd1").read_bytes()
    files = {"truncated": root / "truncated.safetensors", "not a safetensors file": root / "noise.safetensors"}
    files["truncated"].write_bytes(good[: len(good) - 100])
    files["not a safetensors file"].write_bytes(random.Random(0).randbytes(4096))
    files["could not detect model type of"] = root / "unrelated.safetensors"
    unrelated = {"encoder.weight": torch.zeros(4, 4), "decoder.bias": torch.zeros(4)}
    save_file(unrelated, files["could not detect model type of"])
    tensors = _sd1_tensors(tiny_checkpoints)
    tensors["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(32, 8, 3, 3)
    files["unknown architecture"] = root / "eight_channels.safetensors"
    save_file(tensors, files["unknown architecture"])
    tensors = _sd1_tensors(tiny_checkpoints)
    del tensors["first_stage_model.decoder.mid.attn_1.q.weight"]
    files["VAE weights missing"] = root / "missing.safetensors"
    save_file(tensors, files["VAE weights missing"])
    return files


def test_broken_files_give_checkpoint_errors_naming_file_and_reason(tiny_checkpoints, tmp_path):
    for reason, path in _broken_files(tiny_checkpoints, tmp_path).items():
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        assert reason in str(err.value) and str(path) in str(err.value), str(err.value)
        assert err.value.path == str(path)


def test_folder_errors(tiny_checkpoints, tmp_path):
    with pytest.raises(CheckpointError, match="not a diffusers folder"):
        load_diffusers_folder(tmp_path)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_checkpoint_without_text_encoders_or_vae_loads_what_it_has(tiny_checkpoints, tmp_path):
    tensors = {k: v for k, v in _sd1_tensors(tiny_checkpoints).items() if k.startswith("model.diffusion_model.")}
    path = tmp_path / "unet_only.safetensors"
    save_file(tensors, path)
    checkpoint = load_checkpoint(path)
    assert (checkpoint.family.name, checkpoint.vae, checkpoint.text_encoders) == ("sd1", None, {})
    assert_same_weights(checkpoint.unet, tiny_checkpoints.models("sd1").unet)


def test_loaded_text_encoder_class_and_unet_attention(tiny_checkpoints):
    from diffusers.models.attention_processor import AttnProcessor2_0

    checkpoint = load_checkpoint(tiny_checkpoints.single_file("sd2"))
    assert type(checkpoint.text_encoders["h"]) is CLIPTextModel  # SD2 never applies OpenCLIP's projection
    assert all(isinstance(p, AttnProcessor2_0) for p in checkpoint.unet.attn_processors.values())


@pytest.mark.parametrize("prefix", ["", "first_stage_model."])
def test_standalone_vae_file_loads_bare_or_prefixed_keys(tiny_checkpoints, tmp_path, prefix):
    vae_keys = {
        prefix + k.removeprefix("first_stage_model."): v
        for k, v in _sd1_tensors(tiny_checkpoints).items()
        if k.startswith("first_stage_model.")
    }
    path = tmp_path / "vae.safetensors"
    save_file(vae_keys, path)
    vae = load_vae_file(path)
    assert_fully_loaded(vae)
    assert_same_weights(vae, tiny_checkpoints.models("sd1").vae)
    unet_only = tmp_path / "unet_only.safetensors"
    save_file({k: v for k, v in _sd1_tensors(tiny_checkpoints).items() if k.startswith("model.")}, unet_only)
    with pytest.raises(CheckpointError, match="not a VAE"):
        load_vae_file(unet_only)
