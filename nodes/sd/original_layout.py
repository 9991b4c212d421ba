"""diffusers / transformers state dicts -> the original (CompVis / Stability "LDM") single-file key layout.

The inverse of diffusers' single-file conversion helpers, written from the key-naming facts of the original
checkpoints, so that models built here can be saved as files the rest of the ecosystem (and our own loader,
through diffusers' helpers) reads:

- UNet (`model.diffusion_model.`): `input_blocks.N.{0 resnet, 1 transformer}` with N = 1 + level·(L+1) + j
  for L ResNet blocks per level, the level's downsampler at `input_blocks.N.0.op`; `middle_block.{0,1,2}`;
  `output_blocks.N` with N = level·(L+1) + j and the upsampler at `.1.conv` (or `.2.conv` after a
  transformer); ResNet parts in_layers.0/2, out_layers.0/3, emb_layers.1, skip_connection; time_embed.0/2,
  label_emb.0.0/2 (SDXL), out.0/2. Transformer internals keep their names.
- VAE (`first_stage_model.`): encoder.down.i.block.j / downsample, decoder.up.(n-1-i) (reversed order),
  mid.block_1/2, mid.attn_1 with norm/q/k/v/proj_out as 1x1 convolutions, nin_shortcut, norm_out.
- CLIP-L (`cond_stage_model.transformer.` / `conditioner.embedders.0.transformer.`): transformers' names
  under `text_model.`.
- OpenCLIP (`cond_stage_model.model.` / `conditioner.embedders.1.model.`): token_embedding,
  positional_embedding, transformer.resblocks.i.{ln_1, attn.in_proj_weight (q,k,v stacked), attn.out_proj,
  ln_2, mlp.c_fc, mlp.c_proj}, ln_final, text_projection stored transposed ([hidden, projection]).

- TAESD (two files, `taesd[xl]_encoder` / `taesd[xl]_decoder`): taesd.py's `nn.Sequential` indices, diffusers'
  `AutoencoderTiny` `encoder.layers.i` as is, `decoder.layers.i` at i + 1 (the original decoder opens with a
  parameter-free clamp).

Public API: `unet_to_original(sd, config, prefix)`, `vae_to_original(sd, config, prefix)`,
`clip_to_original(sd, prefix)`, `open_clip_to_original(sd, prefix)`, `taesd_to_original(sd) -> (encoder,
decoder)`; each returns a new dict whose tensors
are the inputs (or views / concatenations of them). An unknown key raises ValueError: a silently dropped
weight would make a broken file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_UNET_BLOCK = re.compile(r"(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)")
_UNET_MID = re.compile(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)")


def _module_param(key: str) -> tuple[str, str]:
    module, _, param = key.rpartition(".")
    return module, param


def _resnet(rest: str) -> str:
    part, _, tail = rest.partition(".")
    if part not in _UNET_RESNET:
        raise ValueError(f"unknown ResNet weight {rest!r}")
    return f"{_UNET_RESNET[part]}.{tail}"


def unet_to_original(sd: Mapping[str, torch.Tensor], config: Mapping, prefix: str = "model.diffusion_model.") -> dict:
    """Rename a diffusers `UNet2DConditionModel` state dict (with `config`) into the LDM layout."""
    per_level = config["layers_per_block"] + 1
    up_has_attention = [t.startswith("CrossAttn") for t in config["up_block_types"]]
    out = {}
    for key, tensor in sd.items():
        module, param = _module_param(key)
        if module in _UNET_TOP:
            out[f"{prefix}{_UNET_TOP[module]}.{param}"] = tensor
        elif m := _UNET_BLOCK.fullmatch(key):
            side, level, kind, j, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
            out[prefix + _unet_block_key(side, level, kind, j, rest, per_level, up_has_attention)] = tensor
        elif m := _UNET_MID.fullmatch(key):
            kind, j, rest = m.group(1), int(m.group(2)), m.group(3)
            index = 1 if kind == "attentions" else 2 * j
            out[f"{prefix}middle_block.{index}.{_resnet(rest) if kind == 'resnets' else rest}"] = tensor
        else:
            raise ValueError(f"no original-layout name for UNet weight {key!r}")
    return out


def _unet_block_key(side: str, level: int, kind: str, j: int, rest: str, per_level: int, up_attn: list) -> str:
    if side == "down_blocks":
        base = 1 + level * per_level
        if kind == "downsamplers":
            return f"input_blocks.{base + per_level - 1}.0.op.{rest.removeprefix('conv.')}"
        sub = "0." + _resnet(rest) if kind == "resnets" else "1." + rest
        return f"input_blocks.{base + j}.{sub}"
    base = level * per_level
    if kind == "upsamplers":
        return f"output_blocks.{base + per_level - 1}.{2 if up_attn[level] else 1}.{rest}"
    sub = "0." + _resnet(rest) if kind == "resnets" else "1." + rest
    return f"output_blocks.{base + j}.{sub}"


_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_VAE_BLOCK = re.compile(
    r"(encoder|decoder)\.(down_blocks|up_blocks)\.(\d+)\.(resnets|downsamplers|upsamplers)\.(\d+)\.(.+)"
)
_VAE_MID = re.compile(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.+)")


def vae_to_original(sd: Mapping[str, torch.Tensor], config: Mapping, prefix: str = "first_stage_model.") -> dict:
    """Rename a diffusers `AutoencoderKL` state dict (with `config`) into the LDM layout."""
    levels = len(config["block_out_channels"])
    out = {}
    for key, tensor in sd.items():
        if m := _VAE_BLOCK.fullmatch(key):
            coder, _, i, kind, j, rest = m.groups()
            level = int(i) if coder == "encoder" else levels - 1 - int(i)
            side = "down" if coder == "encoder" else "up"
            if kind == "resnets":
                name = f"{side}.{level}.block.{j}.{rest.replace('conv_shortcut', 'nin_shortcut')}"
            else:
                name = f"{side}.{level}.{'downsample' if side == 'down' else 'upsample'}.{rest}"
            out[f"{prefix}{coder}.{name}"] = tensor
        elif m := _VAE_MID.fullmatch(key):
            coder, kind, j, rest = m.groups()
            if kind == "resnets":
                out[f"{prefix}{coder}.mid.block_{int(j) + 1}.{rest.replace('conv_shortcut', 'nin_shortcut')}"] = tensor
            else:
                module, param = _module_param(rest)
                if module not in _VAE_ATTENTION:
                    raise ValueError(f"unknown VAE attention weight {key!r}")
                # The original attention is made of 1x1 convolutions; diffusers' are linear layers.
                value = tensor[:, :, None, None] if param == "weight" and tensor.ndim == 2 else tensor
                out[f"{prefix}{coder}.mid.attn_1.{_VAE_ATTENTION[module]}.{param}"] = value
        else:
            out[prefix + _vae_top(key)] = tensor
    return out


def _vae_top(key: str) -> str:
    module, param = _module_param(key)
    coder, _, part = module.partition(".")
    if module in ("quant_conv", "post_quant_conv") or part in ("conv_in", "conv_out"):
        return key
    if part == "conv_norm_out" and coder in ("encoder", "decoder"):
        return f"{coder}.norm_out.{param}"
    raise ValueError(f"no original-layout name for VAE weight {key!r}")


def clip_to_original(sd: Mapping[str, torch.Tensor], prefix: str) -> dict:
    """A transformers CLIP text model in the original layout: its own names under `prefix` + "text_model."."""
    out = {}
    for key, tensor in sd.items():
        if key.startswith("text_projection"):
            raise ValueError("CLIP-L in SD/SDXL checkpoints has no text projection")
        out[prefix + "text_model." + key.removeprefix("text_model.")] = tensor
    return out


_OPEN_CLIP_TOP = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}
_OPEN_CLIP_LAYER = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
_LAYER = re.compile(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)")


def open_clip_to_original(sd: Mapping[str, torch.Tensor], prefix: str) -> dict:
    """A transformers CLIP text model (with or without projection) in OpenCLIP's layout under `prefix`."""
    sd = {key.removeprefix("text_model."): tensor for key, tensor in sd.items()}
    out = {}
    for key, tensor in sd.items():
        if key in _OPEN_CLIP_TOP:
            out[prefix + _OPEN_CLIP_TOP[key]] = tensor
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = tensor.T.contiguous()  # OpenCLIP applies x @ P, a Linear x @ W.T
        elif m := _LAYER.fullmatch(key):
            layer, module, param = m.groups()
            base = f"{prefix}transformer.resblocks.{layer}."
            if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                if module.endswith("q_proj"):  # q, k and v are stored stacked in one in_proj tensor
                    parts = [sd[f"encoder.layers.{layer}.self_attn.{p}_proj.{param}"] for p in "qkv"]
                    out[f"{base}attn.in_proj_{param}"] = torch.cat(parts, dim=0)
            elif module in _OPEN_CLIP_LAYER:
                out[f"{base}{_OPEN_CLIP_LAYER[module]}.{param}"] = tensor
            else:
                raise ValueError(f"no OpenCLIP name for text-encoder weight {key!r}")
        else:
            raise ValueError(f"no OpenCLIP name for text-encoder weight {key!r}")
    return out


def taesd_to_original(sd: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """An `AutoencoderTiny` state dict as TAESD's encoder and decoder files."""
    halves: dict[str, dict] = {"encoder": {}, "decoder": {}}
    for key, tensor in sd.items():
        part, _, rest = key.partition(".layers.")
        index, _, name = rest.partition(".")
        if part not in halves or not index.isdigit():
            raise ValueError(f"no TAESD name for weight {key!r}")
        halves[part][f"{int(index) + (part == 'decoder')}.{name}"] = tensor
    return halves["encoder"], halves["decoder"]
