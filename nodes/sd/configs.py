"""Model configurations for the Stable Diffusion families, kept in code (never fetched from a hub).

A checkpoint file holds tensors, not a config, so every config here is *derived*: a small frozen "shape"
dataclass holds exactly the values that tensor shapes in a checkpoint reveal (channel widths, block counts,
transformer depths, context width, ...), and one function per model class turns a shape plus the family name
into the config the diffusers / transformers class takes. The full-size shapes of the real models are
constants below; `reference_configs()` gives their configs. Detection (`families.py`) reads the same shape
dataclasses out of a file, and the tiny test builder (`tiny.py`) picks small widths, so real and tiny
checkpoints go through one set of rules.

Values that shapes do not reveal follow the real models:
- attention heads: SD1 uses 8 heads per block; SD2, SDXL and all CLIP text towers use 64-wide heads, so
  heads = width // 64 (at least 1, so tiny widths still build);
- GroupNorm uses 32 groups (UNet and VAE), so tiny widths must be multiples of 32;
- the CLIP activation is quick_gelu for OpenAI CLIP-L and gelu for the OpenCLIP towers (ViT-H, ViT-bigG).

Public API:
- `UNetShape`, `VAEShape`, `CLIPShape`: the shape-visible values of each component.
- `unet_config(family, shape, *, prediction="eps") -> dict` for `UNet2DConditionModel.from_config`.
- `vae_config(family, shape) -> dict` for `AutoencoderKL.from_config`.
- `clip_text_config(kind, shape) -> CLIPTextConfig` (kind "l", "h" or "g").
- `reference_configs(family, *, prediction="eps", inpaint=False) -> ComponentConfigs` for the real models.
- `SD1_UNET`, `SD2_UNET`, `SDXL_UNET`, `SDXL_REFINER_UNET`, `SD_VAE`, `CLIP_L`, `OPENCLIP_H`, `OPENCLIP_G`:
  full-size shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from transformers import CLIPTextConfig

FamilyName = Literal["sd1", "sd2", "sdxl", "sdxl_refiner"]
EncoderKind = Literal["l", "h", "g"]

# Latent scale factors (ComfyUI's process_in/out and diffusers' vae.config.scaling_factor).
LATENT_SCALE = {"sd1": 0.18215, "sd2": 0.18215, "sdxl": 0.13025, "sdxl_refiner": 0.13025}
#: The families with SDXL's added conditioning (pooled text + size / aesthetic embeddings) and latent space.
SDXL_FAMILIES = ("sdxl", "sdxl_refiner")

# Default image sizes in pixels; only used as `sample_size` hints (pipelines' default resolution, VAE tiling).
_IMAGE_SIZE = {("sd1", "eps"): 512, ("sd2", "eps"): 512, ("sd2", "v"): 768, ("sdxl", "eps"): 1024, ("sdxl", "v"): 1024,
               ("sdxl_refiner", "eps"): 1024}


@dataclass(frozen=True)
class UNetShape:
    """What a checkpoint's UNet tensor shapes reveal.

    transformer_depth has one entry per resolution level (0 = that level has no attention); the middle block's
    depth is separate. adm_in_channels is the size of SDXL's extra conditioning vector `y` (None for SD1/SD2),
    and addition_time_embed_dim the width of each of its six size embeddings (256 in SDXL).
    """

    block_out_channels: tuple[int, ...]
    layers_per_block: int
    transformer_depth: tuple[int, ...]
    mid_transformer_depth: int
    context_dim: int
    linear_projection: bool
    in_channels: int = 4
    out_channels: int = 4
    adm_in_channels: int | None = None
    addition_time_embed_dim: int | None = None


@dataclass(frozen=True)
class VAEShape:
    """What a checkpoint's VAE tensor shapes reveal."""

    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    in_channels: int = 3
    out_channels: int = 3


@dataclass(frozen=True)
class CLIPShape:
    """What a checkpoint's text-encoder tensor shapes reveal. projection_dim is None without a projection."""

    hidden_size: int
    num_layers: int
    intermediate_size: int
    vocab_size: int = 49408
    max_positions: int = 77
    projection_dim: int | None = None


@dataclass(frozen=True)
class ComponentConfigs:
    """The configs of one checkpoint's components; text encoders keyed "l" / "h" / "g"."""

    unet: dict
    vae: dict
    text_encoders: dict[str, CLIPTextConfig] = field(default_factory=dict)


SD1_UNET = UNetShape(
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    transformer_depth=(1, 1, 1, 0),
    mid_transformer_depth=1,
    context_dim=768,
    linear_projection=False,
)
SD2_UNET = replace(SD1_UNET, context_dim=1024, linear_projection=True)
SDXL_UNET = UNetShape(
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    transformer_depth=(0, 2, 10),
    mid_transformer_depth=10,
    context_dim=2048,
    linear_projection=True,
    adm_in_channels=2816,
    addition_time_embed_dim=256,
)
# The SDXL refiner: a wider UNet (384) with four levels, attention only in the middle two, conditioned on
# OpenCLIP ViT-bigG alone (context 1280) and y = pooled G (1280) + five 256-wide embeddings.
SDXL_REFINER_UNET = UNetShape(
    block_out_channels=(384, 768, 1536, 1536),
    layers_per_block=2,
    transformer_depth=(0, 4, 4, 0),
    mid_transformer_depth=4,
    context_dim=1280,
    linear_projection=True,
    adm_in_channels=2560,
    addition_time_embed_dim=256,
)
SD_VAE = VAEShape()
# SD and SDXL checkpoints hold CLIP-L's text tower without its projection (the pooled output is unprojected).
CLIP_L = CLIPShape(hidden_size=768, num_layers=12, intermediate_size=3072)
# SD2's OpenCLIP ViT-H text tower has 24 layers; the checkpoint also stores a 1024x1024 text projection that
# SD2 never uses (it conditions on hidden states only), so the model built for it has no projection.
OPENCLIP_H = CLIPShape(hidden_size=1024, num_layers=24, intermediate_size=4096)
OPENCLIP_G = CLIPShape(hidden_size=1280, num_layers=32, intermediate_size=5120, projection_dim=1280)


def _heads(family: FamilyName, width: int) -> int:
    if family == "sd1":
        return 8
    return max(1, width // 64)


def _compact(values: list[int]) -> int | list[int]:
    # diffusers' own configs write a single int when every block has the same value; keep that form.
    return values[0] if len(set(values)) == 1 else values


def unet_config(family: FamilyName, shape: UNetShape, *, prediction: str = "eps") -> dict:
    """Config dict for `UNet2DConditionModel` of `family` with the widths and depths of `shape`."""
    attn = [depth > 0 for depth in shape.transformer_depth]
    down = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn]
    up = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)]
    heads = [_heads(family, width) for width in shape.block_out_channels]
    # diffusers reads one depth per level (ignored where a level has no attention; 1 is its default there) and
    # gives the middle block the last level's: a last level without attention (SDXL refiner) carries the mid depth.
    depths = [depth or 1 for depth in shape.transformer_depth]
    if shape.transformer_depth[-1] == 0:
        depths[-1] = shape.mid_transformer_depth
    config = {
        "sample_size": _IMAGE_SIZE.get((family, prediction), 512) // 8,
        "in_channels": shape.in_channels,
        "out_channels": shape.out_channels,
        "down_block_types": down,
        "up_block_types": up,
        "block_out_channels": list(shape.block_out_channels),
        "layers_per_block": shape.layers_per_block,
        "cross_attention_dim": shape.context_dim,
        "attention_head_dim": _compact(heads) if family == "sd1" else heads,
        "transformer_layers_per_block": _compact(depths),
        "use_linear_projection": shape.linear_projection,
        # ComfyUI computes SD2 attention in float32 (its attn_precision); diffusers' name for that is upcast.
        "upcast_attention": family == "sd2",
    }
    if shape.mid_transformer_depth != depths[-1]:
        raise ValueError(f"mid-block depth {shape.mid_transformer_depth} differs from the last level's")
    if family in SDXL_FAMILIES:
        config.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=shape.addition_time_embed_dim,
            projection_class_embeddings_input_dim=shape.adm_in_channels,
        )
    return config


def vae_config(family: FamilyName, shape: VAEShape, *, prediction: str = "eps") -> dict:
    """Config dict for `AutoencoderKL` (the SD / SDXL KL-f8 autoencoder) with the widths of `shape`."""
    levels = len(shape.block_out_channels)
    return {
        "in_channels": shape.in_channels,
        "out_channels": shape.out_channels,
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": list(shape.block_out_channels),
        "layers_per_block": shape.layers_per_block,
        "latent_channels": shape.latent_channels,
        "norm_num_groups": 32,
        "sample_size": _IMAGE_SIZE.get((family, prediction), 512),
        "scaling_factor": LATENT_SCALE[family],
        # SDXL's VAE overflows in fp16; diffusers marks it so pipelines upcast. Harmless for the others.
        "force_upcast": True,
    }


def clip_text_config(kind: EncoderKind, shape: CLIPShape) -> CLIPTextConfig:
    """`CLIPTextConfig` for an OpenAI CLIP-L ("l") or OpenCLIP ViT-H ("h") / ViT-bigG ("g") text tower."""
    return CLIPTextConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=max(1, shape.hidden_size // 64),
        max_position_embeddings=shape.max_positions,
        hidden_act="quick_gelu" if kind == "l" else "gelu",
        layer_norm_eps=1e-5,
        projection_dim=shape.projection_dim or shape.hidden_size,
        bos_token_id=49406,
        eos_token_id=49407,
        # The pad id only matters to tokenizers; ComfyUI pads CLIP-L with the end token, OpenCLIP with 0.
        pad_token_id=49407 if kind == "l" else 0,
    )


def reference_configs(family: FamilyName, *, prediction: str = "eps", inpaint: bool = False) -> ComponentConfigs:
    """Configs of the real full-size models: SD1.x, SD2.x (eps or v), SDXL base and refiner, and their 9-channel
    inpainting variants (in_channels 9: 4 latent + 1 mask + 4 masked-image latent)."""
    unet = {"sd1": SD1_UNET, "sd2": SD2_UNET, "sdxl": SDXL_UNET, "sdxl_refiner": SDXL_REFINER_UNET}[family]
    if inpaint:
        unet = replace(unet, in_channels=9)
    encoders = {"sd1": {"l": CLIP_L}, "sd2": {"h": OPENCLIP_H}, "sdxl": {"l": CLIP_L, "g": OPENCLIP_G},
                "sdxl_refiner": {"g": OPENCLIP_G}}[family]
    return ComponentConfigs(
        unet=unet_config(family, unet, prediction=prediction),
        vae=vae_config(family, SD_VAE, prediction=prediction),
        text_encoders={kind: clip_text_config(kind, shape) for kind, shape in encoders.items()},
    )
