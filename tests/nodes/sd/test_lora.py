"""LoRA files applied by nodes/sd/lora.py equal diffusers + peft's fused LoRAs, and never change the base model.

Parity: the tiny SD1 and SDXL checkpoints are loaded through our loader; diffusers gets pipelines built from the
same seeded modules (`build_tiny`), loads the same file with `load_lora_weights` and fuses it with
`fuse_lora(lora_scale=s)`. Our handles, put to use through the model manager, must hold the same weights.
Files: kohya layout written here (random down/up, alpha ≠ rank, attention linears, 1×1 and 3×3 convs, the text
encoders; SDXL's UNet keys in the original SGM names kohya uses for it), and diffusers/PEFT layout written by
diffusers itself (`save_lora_weights` of peft adapters). Tolerance: float32 defaults of `assert_close`
(rtol 1.3e-6, atol 1e-5): both sides add the same float32 product but peft orders the conv product and the
scaling differently; the deltas are ~1e-2, so a wrong scale or a missing layer is off by orders more.
"""
from __future__ import annotations

import logging

import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file

from nodes.sd import original_layout, tiny
from nodes.sd.checkpoint import load_model
from nodes.sd.devices import ModelManager
from nodes.sd.errors import CheckpointError
from nodes.sd.handles import ClipHandle, ModelHandle
from nodes.sd.lora import LoraError, apply_lora, read_lora
from nodes.sd.text_encoder import TextEncoder

RANK, ALPHA = 4, 3.0
ATTENTION = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k", "attn2.to_v",
             "attn2.to_out.0", "ff.net.0.proj", "ff.net.2")
TEXT = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2")
# Per family: UNet modules (diffusers names) covering linears, a 1×1 conv, a 3×3 conv and a 3×3 downsampler.
UNET_MODULES = {
    "sd1": [f"down_blocks.0.attentions.0.transformer_blocks.0.{m}" for m in ATTENTION]
    + ["down_blocks.0.attentions.0.proj_in", "up_blocks.1.attentions.1.proj_out", "down_blocks.0.resnets.0.conv1",
       "mid_block.resnets.1.conv2", "up_blocks.0.resnets.1.conv_shortcut", "down_blocks.0.downsamplers.0.conv"],
    "sdxl": [f"down_blocks.1.attentions.0.transformer_blocks.1.{m}" for m in ATTENTION]
    + [f"mid_block.attentions.0.transformer_blocks.0.{m}" for m in ATTENTION[:4]]
    + ["up_blocks.0.attentions.1.proj_in", "down_blocks.0.resnets.0.conv1", "down_blocks.1.resnets.0.conv_shortcut",
       "up_blocks.0.resnets.0.conv2"],
}
# kohya's text-encoder prefixes per diffusers component, by family.
KOHYA_TEXT = {"sd1": {"text_encoder": "lora_te_"}, "sdxl": {"text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}}
TEXT_KEYS = {"text_encoder": "l", "text_encoder_2": "g"}


def handles(path) -> tuple[ModelHandle, ClipHandle]:
    loaded = load_model(path)
    manager = ModelManager("cpu")
    return (ModelHandle(loaded.unet, loaded.family, manager, "base"),
            ClipHandle(TextEncoder(loaded.family, loaded.text_encoders), manager, "base"))


def used_weights(manager, module) -> dict[str, torch.Tensor]:
    with manager.use(module) as m:
        return {k: v.clone() for k, v in m.state_dict().items()}


def pair(weight: torch.Tensor, gen: torch.Generator, rank: int = RANK) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (down, up) for `weight`: linear, or conv with a k×k down and a 1×1 up, as kohya writes them."""
    kernel, ones = tuple(weight.shape[2:]), (1,) * (weight.dim() - 2)
    down = torch.randn(rank, weight.shape[1], *kernel, generator=gen) * 0.1
    up = torch.randn(weight.shape[0], rank, *ones, generator=gen) * 0.1
    return down, up


def kohya_unet_name(arch: str, unet, module: str) -> str:
    """kohya's key stem: diffusers names for SD1 (kohya trains SD1 on diffusers' UNet), SGM names for SDXL."""
    if arch == "sdxl":
        weight = {f"{module}.weight": torch.zeros(1)}
        module = next(iter(original_layout.unet_to_original(weight, unet.config, prefix=""))).removesuffix(".weight")
    return "lora_unet_" + module.replace(".", "_")


def write_kohya(path, arch: str, *, seed: int = 0, alpha: float | None = ALPHA, unet: bool = True,
                text: bool = True) -> dict[str, torch.Tensor]:
    models = tiny.build_tiny(arch)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    stems = []
    if unet:
        params = dict(models.unet.named_parameters())
        stems += [(kohya_unet_name(arch, models.unet, m), params[f"{m}.weight"]) for m in UNET_MODULES[arch]]
    if text:
        for component, prefix in KOHYA_TEXT[arch].items():
            encoder = models.text_encoders[TEXT_KEYS[component]]
            params = {k.removeprefix("text_model."): v for k, v in encoder.named_parameters()}
            stems += [(f"{prefix}text_model_encoder_layers_{layer}_{m.replace('.', '_')}",
                       params[f"encoder.layers.{layer}.{m}.weight"]) for layer in (0, 1) for m in TEXT]
    for stem, weight in stems:
        out[f"{stem}.lora_down.weight"], out[f"{stem}.lora_up.weight"] = pair(weight, gen)
        if alpha is not None:
            out[f"{stem}.alpha"] = torch.tensor(alpha)
    save_file(out, str(path))
    return out


def write_peft(directory, arch: str) -> None:
    """A diffusers/PEFT-layout file written by diffusers: peft adapters with random A and B, saved by the pipeline."""
    models = tiny.build_tiny(arch, seed=5)
    torch.manual_seed(11)
    unet_targets = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "conv1", "conv_shortcut"]
    models.unet.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights=False, target_modules=unet_targets))
    layers = {"unet_lora_layers": get_peft_model_state_dict(models.unet)}
    names = {"l": "text_encoder_lora_layers", "g": "text_encoder_2_lora_layers"}
    for key, encoder in models.text_encoders.items():
        # peft itself: transformers' own `add_adapter` wants a newer peft than the registry has
        inject_adapter_in_model(LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights=False,
                                           target_modules=["q_proj", "v_proj", "out_proj", "fc1"]), encoder)
        layers[names[key]] = get_peft_model_state_dict(encoder)
    for tensor in (t for group in layers.values() for t in group.values()):
        tensor.mul_(0.3)  # peft's init is for training: keep the deltas moderate
    cls = StableDiffusionXLPipeline if arch == "sdxl" else StableDiffusionPipeline
    cls.save_lora_weights(str(directory), **layers)


def diffusers_fused(arch: str, path, scale: float) -> tuple[dict, dict]:
    """diffusers + peft: load the file into a pipeline of the same weights, fuse, unload the adapters."""
    models = tiny.build_tiny(arch)
    if arch == "sdxl":
        pipe = StableDiffusionXLPipeline(vae=models.vae, text_encoder=models.text_encoders["l"],
                                         text_encoder_2=models.text_encoders["g"], tokenizer=None, tokenizer_2=None,
                                         unet=models.unet, scheduler=tiny._scheduler(models.spec.family))
    else:
        pipe = StableDiffusionPipeline(vae=models.vae, text_encoder=models.text_encoders["l"], tokenizer=None,
                                       unet=models.unet, scheduler=tiny._scheduler(models.spec.family),
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.load_lora_weights(str(path))
    pipe.fuse_lora(lora_scale=scale)
    pipe.unload_lora_weights()
    text = {key: encoder.state_dict() for key, encoder in models.text_encoders.items()}
    return models.unet.state_dict(), text


def assert_same_patched(ours: dict, theirs: dict, base: dict) -> None:
    """Same keys changed on both sides, every value equal (float32 tolerance)."""
    changed = {k for k in base if not torch.equal(theirs[k], base[k])}
    assert changed == {k for k in base if not torch.equal(ours[k], base[k])}
    assert changed, "the file changed nothing"
    for key in base:
        torch.testing.assert_close(ours[key], theirs[key], msg=key)


def check_parity(arch: str, path, base_file, scale: float) -> None:
    model, clip = handles(base_file)
    base_unet = used_weights(model.manager, model.unet)
    base_text = {k: used_weights(clip.manager, m) for k, m in clip.encoder.models.items()}
    model, clip = apply_lora(path, model, clip, strength_model=scale, strength_clip=scale)
    their_unet, their_text = diffusers_fused(arch, path, scale)
    assert_same_patched(used_weights(model.manager, model.unet), their_unet, base_unet)
    for key, module in clip.encoder.models.items():
        ours = used_weights(clip.manager, module)
        theirs = {k.removeprefix("text_model.") if k not in ours else k: v for k, v in their_text[key].items()}
        assert_same_patched(ours, theirs, base_text[key])


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
def test_kohya_file_equals_diffusers_fuse(arch, tiny_checkpoints, tmp_path, one_torch_thread):
    write_kohya(tmp_path / "kohya.safetensors", arch)
    check_parity(arch, tmp_path / "kohya.safetensors", tiny_checkpoints.single_file(arch), 0.7)


@pytest.mark.parametrize("arch", ["sd1", "sdxl"])
def test_peft_file_written_by_diffusers_equals_diffusers_fuse(arch, tiny_checkpoints, tmp_path, one_torch_thread):
    write_peft(tmp_path, arch)
    path = tmp_path / "pytorch_lora_weights.safetensors"
    assert any(k.startswith("unet.") and k.endswith("lora_A.weight") for k in read_keys(path))
    check_parity(arch, path, tiny_checkpoints.single_file(arch), -1.3)


def read_keys(path) -> list[str]:
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        return list(f.keys())


KOHYA_NAMES = {
    "sd1": {  # kohya's SD1 names are diffusers' with "_"; A1111-era files use the LDM block names
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0":
            ("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0"),
        "lora_unet_up_blocks_1_attentions_1_proj_out": ("unet", "up_blocks.1.attentions.1.proj_out"),
        "lora_unet_mid_block_resnets_1_conv2": ("unet", "mid_block.resnets.1.conv2"),
        "lora_unet_down_blocks_0_resnets_0_time_emb_proj": ("unet", "down_blocks.0.resnets.0.time_emb_proj"),
        "lora_te_text_model_encoder_layers_1_self_attn_out_proj":
            ("text_encoder", "text_model.encoder.layers.1.self_attn.out_proj"),
        "lora_te_text_model_encoder_layers_0_mlp_fc1": ("text_encoder", "text_model.encoder.layers.0.mlp.fc1"),
    },
    "sd1-ldm": {
        "lora_unet_input_blocks_1_1_proj_in": ("unet", "down_blocks.0.attentions.0.proj_in"),
        "lora_unet_output_blocks_2_0_skip_connection": ("unet", "up_blocks.1.resnets.0.conv_shortcut"),
        "lora_unet_middle_block_1_transformer_blocks_0_attn2_to_v":
            ("unet", "mid_block.attentions.0.transformer_blocks.0.attn2.to_v"),
    },
    "sdxl": {  # tiny SDXL: level 0 without attention, level 1 with two transformer blocks; one ResNet per level
        "lora_unet_input_blocks_3_1_transformer_blocks_1_attn2_to_k":
            ("unet", "down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k"),
        "lora_unet_input_blocks_1_0_in_layers_2": ("unet", "down_blocks.0.resnets.0.conv1"),
        "lora_unet_input_blocks_2_0_op": ("unet", "down_blocks.0.downsamplers.0.conv"),
        "lora_unet_middle_block_1_proj_in": ("unet", "mid_block.attentions.0.proj_in"),
        "lora_unet_output_blocks_1_0_out_layers_3": ("unet", "up_blocks.0.resnets.1.conv2"),
        "lora_unet_output_blocks_1_1_transformer_blocks_0_attn1_to_out_0":
            ("unet", "up_blocks.0.attentions.1.transformer_blocks.0.attn1.to_out.0"),
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj":
            ("text_encoder", "text_model.encoder.layers.0.self_attn.q_proj"),
        "lora_te2_text_model_encoder_layers_1_mlp_fc2": ("text_encoder_2", "text_model.encoder.layers.1.mlp.fc2"),
    },
}


@pytest.mark.parametrize("layout", KOHYA_NAMES)
def test_kohya_names_map_to_our_modules(layout, tiny_checkpoints, tmp_path):
    arch = layout.removesuffix("-ldm")
    tensors = {}
    for stem in KOHYA_NAMES[layout]:
        tensors[f"{stem}.lora_down.weight"], tensors[f"{stem}.lora_up.weight"] = torch.ones(1, 2), torch.ones(2, 1)
    save_file(tensors, str(tmp_path / "names.safetensors"))
    model, _ = handles(tiny_checkpoints.single_file(arch))
    lora = read_lora(tmp_path / "names.safetensors", unet_config=model.unet.config)
    assert {layer.key.removesuffix(".lora_down.weight"): target for target, layer in lora.layers.items()} == \
        KOHYA_NAMES[layout]
    assert lora.unsupported == ()


def test_patch_is_the_formula_per_layer(tiny_checkpoints, tmp_path):
    """W + strength · alpha/rank · up @ down (scale 1 without alpha), from either layout, against float64."""
    model, clip = handles(tiny_checkpoints.single_file("sd1"))
    base = used_weights(model.manager, model.unet)
    base_text = used_weights(clip.manager, clip.encoder.models["l"])
    gen = torch.Generator().manual_seed(3)
    to_q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    conv = "down_blocks.0.resnets.0.conv1"  # 3×3
    fc1 = "encoder.layers.0.mlp.fc1"
    specs = {  # (component, module, base weight, rank, alpha)
        f"unet.{to_q}": (base[f"{to_q}.weight"], 4, 1.0),
        f"unet.{conv}": (base[f"{conv}.weight"], 2, 8.0),
        f"text_encoder.text_model.{fc1}": (base_text[f"{fc1}.weight"], 3, None),
    }
    tensors, expected = {}, {}
    for stem, (weight, rank, alpha) in specs.items():
        down, up = pair(weight, gen, rank)
        tensors[f"{stem}.lora_A.weight"], tensors[f"{stem}.lora_B.weight"] = down, up
        if alpha is not None:
            tensors[f"{stem}.alpha"] = torch.tensor(alpha)
        scale = alpha / rank if alpha is not None else 1.0
        product = (up.double().flatten(1) @ down.double().flatten(1)).reshape(weight.shape)
        expected[stem] = (weight.double(), scale * product)
    save_file(tensors, str(tmp_path / "peft.safetensors"))
    strength_model, strength_clip = 0.8, -2.0
    model, clip = apply_lora(tmp_path / "peft.safetensors", model, clip, strength_model=strength_model,
                             strength_clip=strength_clip)
    unet = used_weights(model.manager, model.unet)
    text = used_weights(clip.manager, clip.encoder.models["l"])
    for stem, (weight, delta) in expected.items():
        if stem.startswith("unet."):
            got, strength = unet[stem.removeprefix("unet.") + ".weight"], strength_model
        else:
            got, strength = text[f"{fc1}.weight"], strength_clip
        torch.testing.assert_close(got.double(), weight + strength * delta, rtol=1e-6, atol=1e-6)
    untouched = [k for k in base if k not in (f"{to_q}.weight", f"{conv}.weight")]
    assert all(torch.equal(unet[k], base[k]) for k in untouched)


def test_half_precision_weights_are_patched_in_float32_and_cast_once():
    from nodes.sd.lora import LoraLayer, LoraPatch

    linear = torch.nn.Linear(16, 8, bias=False).half().requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    first = LoraLayer("a", torch.randn(2, 16, generator=gen), torch.randn(8, 2, generator=gen), alpha=1.0)
    second = LoraLayer("b", torch.randn(4, 16, generator=gen).half(), torch.randn(8, 4, generator=gen).half())
    original = linear.weight.data.clone()
    manager = ModelManager("cpu")
    patches = (LoraPatch("weight", first, 0.3), LoraPatch("weight", second, 0.7))
    with manager.use(linear, patches) as used:
        merged = original.float()
        merged += (first.up @ first.down) * (0.3 * 0.5)
        merged += (second.up.float() @ second.down.float()) * 0.7
        assert used.weight.dtype == torch.float16 and torch.equal(used.weight, merged.half())
        in_half = original + (first.up @ first.down).half() * 0.15 + (second.up @ second.down) * 0.7
        assert not torch.equal(used.weight, in_half)  # what patching in the weight's own dtype would give
    with manager.use(linear):
        assert torch.equal(linear.weight, original)


def test_base_weights_come_back_untouched(tiny_checkpoints, tmp_path):
    write_kohya(tmp_path / "k.safetensors", "sd1")
    model, clip = handles(tiny_checkpoints.single_file("sd1"))
    expected = tiny_checkpoints.models("sd1").unet.state_dict()
    original = {k: p.data_ptr() for k, p in model.unet.named_parameters()}
    patched, _ = apply_lora(tmp_path / "k.safetensors", model, clip, strength_model=1.0, strength_clip=1.0)
    with patched.manager.use(patched.unet) as unet:
        touched = {k.removesuffix(".weight") for k, p in unet.named_parameters() if p.data_ptr() != original[k]}
        assert touched == set(UNET_MODULES["sd1"])
    with model.manager.use(model.unet) as unet:  # the base handle: the very same tensors again, no copy
        assert all(p.data_ptr() == original[k] for k, p in unet.named_parameters())
        assert all(torch.equal(v, expected[k]) for k, v in unet.state_dict().items())
    with patched.manager.use(patched.unet):
        pass
    model.manager.offload_all()  # leaving the device restores too
    assert all(p.data_ptr() == original[k] for k, p in model.unet.named_parameters())


def test_same_patches_are_not_recomputed_and_in_use_weights_cannot_change(tiny_checkpoints, tmp_path):
    write_kohya(tmp_path / "k.safetensors", "sd1")
    model, clip = handles(tiny_checkpoints.single_file("sd1"))
    patched, _ = apply_lora(tmp_path / "k.safetensors", model, clip, strength_model=1.0)
    weight = "down_blocks.0.attentions.0.proj_in.weight"
    with patched.manager.use(patched.unet) as unet:
        first = unet.get_parameter(weight).data_ptr()
    with patched.manager.use(patched.unet) as unet:
        assert unet.get_parameter(weight).data_ptr() == first
        with pytest.raises(RuntimeError, match="in use with other weight patches"):
            with model.manager.use(model.unet):
                pass
        with patched.manager.use(patched.unet):  # nested, same weights: fine
            pass


def test_strength_zero_returns_the_inputs_without_reading_the_file(tiny_checkpoints, tmp_path):
    model, clip = handles(tiny_checkpoints.single_file("sd1"))
    missing = tmp_path / "not-there.safetensors"
    assert apply_lora(missing, model, clip, strength_model=0.0, strength_clip=0.0) == (model, clip)
    write_kohya(tmp_path / "k.safetensors", "sd1")
    new_model, new_clip = apply_lora(tmp_path / "k.safetensors", model, clip, strength_model=0.0, strength_clip=1.0)
    assert new_model is model and new_clip is not clip
    new_model, new_clip = apply_lora(tmp_path / "k.safetensors", model, clip, strength_model=1.0, strength_clip=0.0)
    assert new_model is not model and new_clip is clip


def test_stacked_loras_add_their_deltas(tiny_checkpoints, tmp_path):
    first, second = (write_kohya(tmp_path / f"{n}.safetensors", "sd1", seed=n) for n in (1, 2))
    model, clip = handles(tiny_checkpoints.single_file("sd1"))
    base = used_weights(model.manager, model.unet)
    stacked, _ = apply_lora(tmp_path / "1.safetensors", model, clip, strength_model=0.5)
    stacked, _ = apply_lora(tmp_path / "2.safetensors", stacked, clip, strength_model=-1.5)
    got = used_weights(stacked.manager, stacked.unet)
    for module in UNET_MODULES["sd1"]:
        stem, key = "lora_unet_" + module.replace(".", "_"), f"{module}.weight"
        delta = sum(strength * ALPHA / RANK * (f[f"{stem}.lora_up.weight"].double().flatten(1)
                                               @ f[f"{stem}.lora_down.weight"].double().flatten(1))
                    for f, strength in ((first, 0.5), (second, -1.5)))
        torch.testing.assert_close(got[key].double(), base[key].double() + delta.reshape(base[key].shape),
                                   rtol=1e-6, atol=1e-6)


def test_unmatched_keys_are_logged_and_a_file_matching_nothing_fails(tiny_checkpoints, tmp_path, caplog):
    model, clip = handles(tiny_checkpoints.single_file("sd1"))
    tensors = write_kohya(tmp_path / "k.safetensors", "sd1", text=False)
    extra = {"lora_unet_no_such_block_proj.lora_down.weight": torch.ones(1, 4),
             "lora_unet_no_such_block_proj.lora_up.weight": torch.ones(4, 1),
             "lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a": torch.ones(2, 2)}
    save_file({**tensors, **extra}, str(tmp_path / "partly.safetensors"))
    with caplog.at_level(logging.WARNING, logger="nodes.sd.lora"):
        apply_lora(tmp_path / "partly.safetensors", model, clip, strength_model=1.0, strength_clip=1.0)
    [record] = caplog.records
    assert "partly.safetensors" in record.message and "2 keys" in record.message
    assert "lora_unet_no_such_block_proj.lora_down.weight" in record.message and "hada_w1_a" in record.message

    # Our modules' names but other widths (a LoRA for a bigger model of the same layout): nothing fits.
    wide = {k: torch.cat([v, v], dim=1 if "lora_down" in k else 0) if v.dim() else v for k, v in tensors.items()}
    save_file(wide, str(tmp_path / "wide.safetensors"))
    with pytest.raises(LoraError, match="wide.safetensors") as error:
        apply_lora(tmp_path / "wide.safetensors", model, clip, strength_model=1.0, strength_clip=1.0)
    assert f"{len(UNET_MODULES['sd1'])} layers" in str(error.value)
    save_file({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.ones(1, 4),
               "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": torch.ones(4, 1)},
              str(tmp_path / "flux.safetensors"))
    with pytest.raises(LoraError, match="flux.safetensors"):
        apply_lora(tmp_path / "flux.safetensors", model, clip, strength_model=1.0, strength_clip=1.0)


def test_model_only_ignores_text_layers_and_refuses_a_text_only_file(tiny_checkpoints, tmp_path, caplog):
    model, _ = handles(tiny_checkpoints.single_file("sd1"))
    write_kohya(tmp_path / "both.safetensors", "sd1")
    with caplog.at_level(logging.WARNING, logger="nodes.sd.lora"):
        patched, clip = apply_lora(tmp_path / "both.safetensors", model, None, strength_model=1.0)
    assert clip is None and patched is not model and caplog.records == []
    write_kohya(tmp_path / "text.safetensors", "sd1", unet=False)
    with pytest.raises(LoraError, match="text.safetensors"):
        apply_lora(tmp_path / "text.safetensors", model, None, strength_model=1.0)


def test_pickle_loras_need_the_opt_in(tiny_checkpoints, tmp_path):
    tensors = write_kohya(tmp_path / "k.safetensors", "sd1")
    torch.save(tensors, tmp_path / "k.pt")
    model, clip = handles(tiny_checkpoints.single_file("sd1"))
    with pytest.raises(CheckpointError, match="k.pt"):  # the checkpoint reader's refusal, naming the file
        apply_lora(tmp_path / "k.pt", model, clip, strength_model=1.0)
    from_pickle, _ = apply_lora(tmp_path / "k.pt", model, clip, strength_model=1.0, allow_pickle=True)
    from_file, _ = apply_lora(tmp_path / "k.safetensors", model, clip, strength_model=1.0)
    pickled = used_weights(from_pickle.manager, from_pickle.unet)
    assert all(torch.equal(v, pickled[k]) for k, v in used_weights(from_file.manager, from_file.unet).items())
