"""Files holding one model component: a diffusion UNet alone, a text encoder alone, TAESD's two halves.

These are what ComfyUI's UNETLoader (`models/diffusion_models`), CLIPLoader / DualCLIPLoader
(`models/text_encoders`) and VAELoader's `taesd` / `taesdxl` entries (`models/vae_approx`) read. Each goes
through the same detection and loading as the full checkpoints (`families.py`, `checkpoint.py`):

- UNet: the original (LDM) layout, keys bare (`input_blocks.0.0.weight`, as diffusion-model files are saved) or
  under `model.diffusion_model.`; the family (SD1, SD2 eps / v, SDXL base or refiner, inpainting) comes from the
  shapes alone. diffusers-layout UNet files (`conv_in.weight`, `down_blocks.…`) are refused: use the diffusers
  folder instead.
- Text encoder: transformers' layout (`text_model.…`, as `clip_l.safetensors` / `clip_g.safetensors` are
  shared) or OpenCLIP's (`transformer.resblocks.…`, as SD2's ViT-H is stored), keys bare. Which encoder it is
  comes from its width for the real models (768 CLIP-L, 1024 OpenCLIP ViT-H, 1280 ViT-bigG); other widths (the
  tiny test models) go by layout: OpenCLIP → ViT-H, transformers with a `text_projection` → ViT-bigG (SDXL's
  pooled vector is projected), without → CLIP-L.
- TAESD: `taesd[xl]_encoder.*` and `taesd[xl]_decoder.*` hold the original taesd.py `nn.Sequential` indices;
  diffusers' `AutoencoderTiny` has the same layers under `encoder.layers.` / `decoder.layers.`, the decoder's
  shifted by one (the original's index 0 is a parameter-free clamp, which diffusers applies in `forward`).

Public API: `load_unet_file(path, *, allow_pickle=False, dtype=None) -> (ModelFamily, UNet2DConditionModel)`,
`load_text_encoder_file(path, *, allow_pickle=False, dtype=None) -> (kind, text model)` with kind "l"/"h"/"g",
`load_taesd(encoder_path, decoder_path, *, dtype=None) -> AutoencoderTiny`.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from diffusers import AutoencoderTiny, UNet2DConditionModel
from diffusers.loaders.single_file_utils import LDM_UNET_KEY

from nodes.sd.checkpoint import TextEncoder, build_empty, fill_weights, load_text_encoder, load_unet
from nodes.sd.devices import DtypePolicy, as_policy
from nodes.sd.configs import CLIP_L, OPENCLIP_G, OPENCLIP_H, CLIPShape, EncoderKind
from nodes.sd.errors import CheckpointError
from nodes.sd.families import ModelFamily, analyse_clip, detect, unet_prefix
from nodes.sd.statedict import StateDict, open_state_dict

REAL_WIDTHS: dict[int, EncoderKind] = {
    CLIP_L.hidden_size: "l", OPENCLIP_H.hidden_size: "h", OPENCLIP_G.hidden_size: "g"
}


def load_unet_file(
    path: str | Path, *, allow_pickle: bool = False, dtype: torch.dtype | DtypePolicy | None = None
) -> tuple[ModelFamily, UNet2DConditionModel]:
    """A diffusion-model file (or a full checkpoint, of which only the UNet is read)."""
    state = open_state_dict(Path(path), allow_pickle=allow_pickle)
    if unet_prefix(state.shapes) is None:
        if "conv_in.weight" in state.shapes:
            raise CheckpointError(state.path, "a diffusers-layout UNet file: put the diffusers folder into "
                                              "models/checkpoints, or convert the UNet to the original layout")
        if "input_blocks.0.0.weight" not in state.shapes:
            raise CheckpointError(state.path, "not a diffusion model (no input_blocks.0.0.weight)")
        # Bare keys: seen through the checkpoint prefix, so detection and conversion work unchanged.
        state = StateDict(state.path, {LDM_UNET_KEY + k: v for k, v in state.shapes.items()}, state.metadata,
                          _loaded={LDM_UNET_KEY + k: t for k, t in state.tensors().items()})
    arch = detect(state)
    return arch.family, load_unet(state, arch, as_policy(dtype).unet)


def load_text_encoder_file(
    path: str | Path, *, allow_pickle: bool = False, dtype: torch.dtype | DtypePolicy | None = None
) -> tuple[EncoderKind, TextEncoder]:
    """A text-encoder file: which encoder it is ("l", "h" or "g") and the loaded model."""
    state = open_state_dict(Path(path), allow_pickle=allow_pickle)
    shapes = state.shapes
    layout = "open_clip" if "transformer.resblocks.0.ln_1.weight" in shapes else "hf"
    try:
        shape = analyse_clip(shapes, "", layout)
    except Exception as exc:  # families' detection error for an incomplete encoder
        raise CheckpointError(state.path, f"unknown text encoder architecture ({exc})") from None
    if shape is None:
        raise CheckpointError(state.path, "not a CLIP text encoder (no token embedding)")
    kind = _encoder_kind(shapes, layout, shape)
    if kind == "g":
        projection = shape.projection_dim or shapes.get("text_projection.weight", (None,))[0]
        if projection is None:
            raise CheckpointError(state.path, "a CLIP-G text encoder without its text projection")
        shape = replace(shape, projection_dim=projection)
    else:  # SD1/SD2 condition on hidden states only: the model is built without a projection
        shape = replace(shape, projection_dim=None)
    return kind, load_text_encoder(state, "", layout, kind, shape, as_policy(dtype).text_encoder)


def _encoder_kind(shapes: dict, layout: str, shape: CLIPShape) -> EncoderKind:
    if shape.hidden_size in REAL_WIDTHS:
        return REAL_WIDTHS[shape.hidden_size]
    if layout == "open_clip":
        return "h"
    return "g" if "text_projection.weight" in shapes else "l"


def load_taesd(encoder_path: str | Path, decoder_path: str | Path, *, dtype: torch.dtype | DtypePolicy | None = None):
    """TAESD / TAESDXL from its encoder and decoder files (safetensors) as diffusers' `AutoencoderTiny`."""
    weights = {}
    for part, path in (("encoder", Path(encoder_path)), ("decoder", Path(decoder_path))):
        shift = 1 if part == "decoder" else 0
        for key, tensor in open_state_dict(path).tensors().items():
            index, _, rest = key.partition(".")
            if not index.isdigit():
                raise CheckpointError(path, f"not a TAESD {part} (unexpected key {key!r})")
            weights[f"{part}.layers.{int(index) - shift}.{rest}"] = tensor
    vae_dtype = as_policy(dtype).vae
    model = build_empty(Path(decoder_path), "TAESD", AutoencoderTiny)
    return fill_weights(model, weights, Path(decoder_path), "TAESD", vae_dtype)
