"""Which Stable Diffusion family a single-file checkpoint is, read from its tensor names and shapes.

Detection follows ComfyUI's rules (reference §7.2) but reads widths from the shapes instead of matching fixed
numbers, so a tiny test checkpoint with the real architecture at small widths is recognised like the real one:
- the UNet lives under `model.diffusion_model.` (or `model.model.` / `net.`, whichever holds most keys);
- its convolution vs. linear `proj_in`, the presence of SDXL's `label_emb` (the "adm" vector), block widths and
  transformer depths come from shapes (`UNetShape`); the family is SD1 (conv proj_in, no adm), SD2 (linear,
  no adm) or SDXL (linear + adm), and the text encoders found must fit the UNet's context width;
- SD2 is v-prediction when the UNet takes 4 channels and the population std of
  `output_blocks.<last>.1.transformer_blocks.0.norm1.bias` exceeds 0.09. ComfyUI names block 11, which *is*
  the last output block of every full-size SD2 UNet; we say "the last" so that tiny UNets with fewer blocks
  follow the same rule (tiny.py sets that bias accordingly);
- SDXL is v-prediction when the file has a `v_pred` key (and zero-terminal-SNR with `ztsnr`);
- an SDXL UNet is the refiner's (`sdxl_refiner`: y = pooled CLIP-G + five embeddings, the last one the aesthetic
  score) when the file keeps OpenCLIP ViT-bigG as embedder 0 (`conditioner.embedders.0.model.`), the base
  model's (y = pooled + six size embeddings) when it keeps CLIP-L there; a file with the UNet alone is the
  refiner's when y minus the context width (the refiner's pooled G is as wide as its context) splits into five
  equal even-width embeddings, as the real refiner (2560 = 1280 + 5·256) and no base model does;
- 9 input channels = inpainting (latent + mask + masked-image latent).

Public API:
- `ModelFamily` and `TextEncoderSpec`: what the rest of the engine needs to know about a loaded checkpoint.
- `family_spec(name, *, prediction="eps", in_channels=4, zsnr=False, truncated_h=False) -> ModelFamily`.
- `Architecture`: a family plus the component shapes and key prefixes found in the file.
- `detect(state_dict: StateDict) -> Architecture`, raising `CheckpointError`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from nodes.sd.configs import (
    LATENT_SCALE,
    SDXL_FAMILIES,
    CLIPShape,
    EncoderKind,
    FamilyName,
    UNetShape,
    VAEShape,
    unet_config,
)
from nodes.sd.errors import CheckpointError
from nodes.sd.statedict import StateDict

Prediction = Literal["eps", "v"]
UNET_PREFIXES = ("model.diffusion_model.", "model.model.", "net.")
VAE_PREFIX = "first_stage_model."
# Where each family keeps its text encoders in the original layout, and in which layout ("hf": transformers'
# CLIP names, "open_clip": OpenCLIP's resblocks with fused q/k/v).
TEXT_ENCODER_KEYS: dict[str, dict[str, tuple[str, str]]] = {
    "sd1": {"l": ("cond_stage_model.transformer.", "hf")},
    "sd2": {"h": ("cond_stage_model.model.", "open_clip")},
    "sdxl": {"l": ("conditioner.embedders.0.transformer.", "hf"), "g": ("conditioner.embedders.1.model.", "open_clip")},
    "sdxl_refiner": {"g": ("conditioner.embedders.0.model.", "open_clip")},
}
V_PRED_STD_THRESHOLD = 0.09
# How many size embeddings SDXL's y appends to the pooled CLIP-G vector: the refiner's fifth is the aesthetic score.
REFINER_TIME_EMBEDDINGS, BASE_TIME_EMBEDDINGS = 5, 6


@dataclass(frozen=True)
class TextEncoderSpec:
    """How the family uses one text encoder (ComfyUI's conventions, reference §6.10).

    default_layer: the hidden layer ComfyUI encodes with by default, counted from the end of the encoder's
        full original layer stack (-1 = last layer, -2 = penultimate); CLIPSetLastLayer(n) replaces it by n.
    final_layer_norm: whether that hidden state then goes through the final LayerNorm.
    layers_missing: how many of the original stack's last layers the loaded model lacks. Single files keep all
        layers (0); diffusers' SD2 folders drop the last OpenCLIP layer (1), so there the model's last
        hidden state already is ComfyUI's default. Hidden-state index to use = layer + layers_missing.
    pad_token_id: ComfyUI pads CLIP-L with the end token 49407 and the OpenCLIP towers (H, G) with 0.
    projected_pooled: whether the pooled output goes through text_projection (SDXL's CLIP-G).
    """

    key: EncoderKind
    pad_token_id: int
    default_layer: int
    final_layer_norm: bool
    projected_pooled: bool = False
    layers_missing: int = 0


@dataclass(frozen=True)
class ModelFamily:
    """What kind of Stable Diffusion model a checkpoint is.

    name "sd1" / "sd2" / "sdxl" / "sdxl_refiner"; prediction "eps" or "v"; latent_scale 0.18215 (SD1/SD2) or
    0.13025 (SDXL base and refiner); inpaint for 9-channel UNets; text_encoders in conditioning order (SDXL:
    "l" then "g", concatenated; the refiner: "g" alone).
    """

    name: FamilyName
    prediction: Prediction
    latent_scale: float
    inpaint: bool
    in_channels: int
    text_encoders: tuple[TextEncoderSpec, ...]
    zsnr: bool = False

    def encoder(self, key: str) -> TextEncoderSpec:
        """The spec of text encoder `key` ("l", "h" or "g")."""
        for spec in self.text_encoders:
            if spec.key == key:
                return spec
        raise KeyError(f"{self.name} has no text encoder {key!r}")


def family_spec(
    name: FamilyName,
    *,
    prediction: Prediction = "eps",
    in_channels: int = 4,
    zsnr: bool = False,
    truncated_h: bool = False,
) -> ModelFamily:
    """The `ModelFamily` of `name`; `truncated_h` marks an SD2 text encoder without its last layer."""
    encoders = {
        "sd1": (TextEncoderSpec("l", 49407, -1, True),),
        "sd2": (TextEncoderSpec("h", 0, -2, True, layers_missing=1 if truncated_h else 0),),
        "sdxl": (TextEncoderSpec("l", 49407, -2, False), TextEncoderSpec("g", 0, -2, False, projected_pooled=True)),
        "sdxl_refiner": (TextEncoderSpec("g", 0, -2, False, projected_pooled=True),),
    }[name]
    return ModelFamily(
        name=name,
        prediction=prediction,
        latent_scale=LATENT_SCALE[name],
        inpaint=in_channels == 9,
        in_channels=in_channels,
        text_encoders=encoders,
        zsnr=zsnr,
    )


@dataclass(frozen=True)
class Architecture:
    """The result of detection: the family, each component's shape, and where its keys live in the file.

    vae is None and text_encoders lacks an entry when the file does not contain that component.
    text_encoder_keys maps an encoder to (key prefix, layout), layout "hf" or "open_clip".
    """

    family: ModelFamily
    unet: UNetShape
    unet_prefix: str
    vae: VAEShape | None
    text_encoders: dict[str, CLIPShape] = field(default_factory=dict)
    text_encoder_keys: dict[str, tuple[str, str]] = field(default_factory=dict)


class _Unknown(Exception):
    """Raised inside detection; `detect` turns it into a CheckpointError naming the file."""


def detect(state_dict: StateDict) -> Architecture:
    """Detect the family and component shapes of a single-file original-layout checkpoint."""
    shapes = state_dict.shapes
    prefix = unet_prefix(shapes)
    if prefix is None or f"{prefix}input_blocks.0.0.weight" not in shapes:
        raise CheckpointError(state_dict.path, "could not detect model type of")
    try:
        _reject_unsupported(shapes)
        unet = analyse_unet(shapes, prefix)
        name: FamilyName = _sdxl_variant(shapes, unet) if unet.adm_in_channels else (
            "sd2" if unet.linear_projection else "sd1"
        )
        if name in SDXL_FAMILIES and not unet.linear_projection:
            raise _Unknown("a UNet with SDXL's adm input but convolutional attention projections")
        encoders, keys = _text_encoders(shapes, name)
        unet = _fit_text_encoders(name, unet, encoders)
        _check_buildable(name, unet)
        family = family_spec(
            name,
            prediction=_prediction(state_dict, name, unet, prefix),
            in_channels=unet.in_channels,
            zsnr=name == "sdxl" and "ztsnr" in shapes,
        )
        vae = analyse_vae(shapes, VAE_PREFIX) if f"{VAE_PREFIX}decoder.conv_in.weight" in shapes else None
    except _Unknown as exc:
        raise CheckpointError(state_dict.path, f"unknown architecture ({exc})") from None
    except (KeyError, IndexError) as exc:  # a key the layout implies is absent
        raise CheckpointError(state_dict.path, f"unknown architecture (incomplete model, no {exc})") from None
    return Architecture(family, unet, prefix, vae, encoders, keys)


def unet_prefix(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """The UNet key prefix: whichever known prefix holds most keys (more than 5), else "model." or None."""
    counts = {p: sum(1 for k in shapes if k.startswith(p)) for p in UNET_PREFIXES}
    best = max(UNET_PREFIXES, key=lambda p: counts[p])
    if counts[best] > 5:
        return best
    return "model." if sum(1 for k in shapes if k.startswith("model.")) > 5 else None


def _reject_unsupported(shapes: dict[str, tuple[int, ...]]) -> None:
    if "edm_mean" in shapes or "edm_vpred.sigma_max" in shapes:
        raise _Unknown("EDM-parameterised SDXL models (Playground 2.5 and the like) are not supported")


def _sdxl_variant(shapes: dict[str, tuple[int, ...]], unet: UNetShape) -> FamilyName:
    """The family of a UNet with SDXL's adm input: the refiner's or the base model's (see the module's rules)."""
    for name, kind in (("sdxl_refiner", "g"), ("sdxl", "l")):  # the text encoder kept as embedder 0
        if any(k.startswith(TEXT_ENCODER_KEYS[name][kind][0]) for k in shapes):
            return name
    width, rest = divmod(unet.adm_in_channels - unet.context_dim, REFINER_TIME_EMBEDDINGS)
    return "sdxl_refiner" if rest == 0 and width > 0 and width % 2 == 0 else "sdxl"


_BLOCK = re.compile(r"(input_blocks|output_blocks)\.(\d+)\.(\d+)\.")
_DEPTH = re.compile(r"(input_blocks\.\d+|middle_block)\.1\.transformer_blocks\.(\d+)\.")


def analyse_unet(shapes: dict[str, tuple[int, ...]], prefix: str) -> UNetShape:
    """The `UNetShape` of the LDM-layout UNet under `prefix`."""
    unet = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
    depth: dict[str, int] = defaultdict(int)
    blocks: dict[str, set[int]] = defaultdict(set)
    for key in unet:
        if m := _BLOCK.match(key):
            blocks[m.group(1)].add(int(m.group(2)))
        if m := _DEPTH.match(key):
            depth[m.group(1)] = max(depth[m.group(1)], int(m.group(2)) + 1)
    conv_in = unet["input_blocks.0.0.weight"]
    levels = _levels(unet, max(blocks["input_blocks"]), depth)
    layers = {len(level) for level in levels}
    if len(layers) != 1:
        raise _Unknown(f"levels with different block counts {sorted(layers)}")
    widths, depths = [], []
    for level in levels:
        if len({w for w, _ in level}) != 1 or len({d for _, d in level}) != 1:
            raise _Unknown("a resolution level whose blocks differ in width or depth")
        widths.append(level[0][0])
        depths.append(level[0][1])
    if len(blocks["output_blocks"]) != len(levels) * (layers.pop() + 1):
        raise _Unknown("output blocks that do not mirror the input blocks")
    to_k = next((v for k, v in unet.items() if k.endswith("transformer_blocks.0.attn2.to_k.weight")), None)
    proj_in = next((v for k, v in unet.items() if k.endswith(".1.proj_in.weight")), None)
    if to_k is None or proj_in is None:
        raise _Unknown("a UNet without cross-attention")
    adm = unet.get("label_emb.0.0.weight")
    return UNetShape(
        block_out_channels=tuple(widths),
        layers_per_block=len(levels[0]),
        transformer_depth=tuple(depths),
        mid_transformer_depth=depth["middle_block"],
        context_dim=to_k[1],
        linear_projection=len(proj_in) == 2,
        in_channels=conv_in[1],
        out_channels=unet["out.2.weight"][0],
        adm_in_channels=adm[1] if adm else None,
    )


def _levels(unet: dict, last_input: int, depth: dict[str, int]) -> list[list[tuple[int, int]]]:
    """Input blocks 1..last grouped by resolution level as (width, transformer depth), split at downsamplers."""
    levels: list[list[tuple[int, int]]] = [[]]
    for i in range(1, last_input + 1):
        if f"input_blocks.{i}.0.op.weight" in unet:
            levels.append([])
            continue
        conv2 = unet.get(f"input_blocks.{i}.0.out_layers.3.weight")
        if conv2 is None:
            raise _Unknown(f"input block {i} is neither a ResNet block nor a downsampler")
        levels[-1].append((conv2[0], depth.get(f"input_blocks.{i}", 0)))
    if not levels[-1]:
        raise _Unknown("a UNet ending in a downsampler")
    return levels


def analyse_vae(shapes: dict[str, tuple[int, ...]], prefix: str) -> VAEShape:
    """The `VAEShape` of the LDM-layout KL autoencoder under `prefix`."""
    levels = sorted({int(k[len(prefix):].split(".")[2]) for k in shapes if k.startswith(f"{prefix}encoder.down.")})
    first = f"{prefix}encoder.down.0.block."
    per_level = {k[len(first):].split(".")[0] for k in shapes if k.startswith(first)}
    try:
        widths = tuple(shapes[f"{prefix}encoder.down.{i}.block.0.conv2.weight"][0] for i in levels)
        latent = shapes[f"{prefix}decoder.conv_in.weight"][1]
        in_channels = shapes[f"{prefix}encoder.conv_in.weight"][1]
        out_channels = shapes[f"{prefix}decoder.conv_out.weight"][0]
    except KeyError as exc:
        raise _Unknown(f"an autoencoder without {exc.args[0]}") from None
    return VAEShape(widths, len(per_level), latent, in_channels, out_channels)


def analyse_clip(shapes: dict[str, tuple[int, ...]], prefix: str, layout: str) -> CLIPShape | None:
    """The `CLIPShape` of a text encoder under `prefix` in `layout` ("hf" or "open_clip"); None if absent."""
    if layout == "hf":
        if f"{prefix}text_model.embeddings.token_embedding.weight" in shapes:
            prefix += "text_model."
        names = ("embeddings.token_embedding.weight", "embeddings.position_embedding.weight", "encoder.layers.")
        fc1 = "mlp.fc1.weight"
    else:
        names = ("token_embedding.weight", "positional_embedding", "transformer.resblocks.")
        fc1 = "mlp.c_fc.weight"
    token, position, layer = (prefix + n for n in names)
    if token not in shapes:
        return None
    layers = {int(k[len(layer):].split(".")[0]) for k in shapes if k.startswith(layer)}
    try:
        intermediate = shapes[f"{layer}0.{fc1}"][0]
        projection = shapes.get(f"{prefix}text_projection")
        return CLIPShape(
            hidden_size=shapes[token][1],
            num_layers=len(layers),
            intermediate_size=intermediate,
            vocab_size=shapes[token][0],
            max_positions=shapes[position][0],
            projection_dim=projection[1] if projection else None,
        )
    except (KeyError, IndexError) as exc:
        raise _Unknown(f"an incomplete text encoder under {prefix}") from exc


def _text_encoders(shapes: dict, name: FamilyName) -> tuple[dict[str, CLIPShape], dict[str, tuple[str, str]]]:
    found, keys = {}, {}
    for kind, (prefix, layout) in TEXT_ENCODER_KEYS[name].items():
        shape = analyse_clip(shapes, prefix, layout)
        if shape is not None:
            # SD2 never uses the OpenCLIP projection, so its model is built without one.
            found[kind] = replace(shape, projection_dim=None) if kind == "h" else shape
            keys[kind] = (prefix, layout)
    return found, keys


def _fit_text_encoders(name: FamilyName, unet: UNetShape, encoders: dict[str, CLIPShape]) -> UNetShape:
    """Check that the text encoders fit the UNet's context width; complete SDXL's adm layout."""
    if name in SDXL_FAMILIES:
        refiner = name == "sdxl_refiner"
        wanted = ("g",) if refiner else ("l", "g")
        g = encoders.get("g")
        # Without CLIP-G in the file: the refiner's pooled G is as wide as its context; assume the real base's.
        pooled = g.projection_dim if g else (unet.context_dim if refiner else 1280)
        if g is not None and g.projection_dim is None:
            raise _Unknown("an SDXL CLIP-G without text projection")
        count = REFINER_TIME_EMBEDDINGS if refiner else BASE_TIME_EMBEDDINGS
        time_dims, rest = divmod(unet.adm_in_channels - pooled, count)
        if rest or time_dims <= 0:
            raise _Unknown(f"SDXL adm width {unet.adm_in_channels} does not fit a {pooled}-wide pooled vector")
        unet = replace(unet, addition_time_embed_dim=time_dims)
    else:
        wanted = ("l",) if name == "sd1" else ("h",)
    if all(k in encoders for k in wanted):
        width = sum(encoders[k].hidden_size for k in wanted)
        if width != unet.context_dim:
            raise _Unknown(f"{name} UNet with context width {unet.context_dim} but text encoders of width {width}")
    return unet


def _check_buildable(name: FamilyName, unet: UNetShape) -> None:
    """Reject shapes the SD classes cannot be built with, before building anything."""
    if unet.in_channels not in (4, 9):
        raise _Unknown(f"a UNet with {unet.in_channels} input channels (only 4, or 9 for inpainting)")
    if any(width % 32 for width in unet.block_out_channels):
        raise _Unknown(f"UNet widths {unet.block_out_channels} are not multiples of 32 (SD's GroupNorm groups)")
    try:
        unet_config(name, unet)
    except ValueError as exc:
        raise _Unknown(str(exc)) from None


def _prediction(state_dict: StateDict, name: FamilyName, unet: UNetShape, prefix: str) -> Prediction:
    if name == "sdxl":
        return "v" if "v_pred" in state_dict.shapes else "eps"
    if name != "sd2" or unet.in_channels != 4:
        return "eps"
    last = len(unet.block_out_channels) * (unet.layers_per_block + 1) - 1
    key = f"{prefix}output_blocks.{last}.1.transformer_blocks.0.norm1.bias"
    if key not in state_dict.shapes:
        return "eps"
    bias = state_dict.tensors([key])[key].float()
    return "v" if torch.std(bias, unbiased=False).item() > V_PRED_STD_THRESHOLD else "eps"
