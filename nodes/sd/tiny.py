"""Tiny random-weight Stable Diffusion models with the real architectures, written in the real file formats.

Tests (and `main.py`, for a demo checkpoint on a fresh machine) need model files without downloading weights.
Each tiny architecture uses the real diffusers / transformers classes with the configs of `configs.py` at
small widths: UNet blocks (32, 64) with one ResNet per level; a VAE with the real model's four levels (three
downsamples, so pixels = 8 × latent as in every SD file) at width 32 with one ResNet per level; CLIP width 32
with 2 layers, the full 49408-token vocabulary so real tokenizer ids fit, 77 positions. Weights are seeded: the classes' own random
initialisation, plus small random offsets on every norm weight and bias (which start at exactly 1 and 0) so
that a swapped or dropped norm tensor shows up in comparisons.

Architectures (`ARCHITECTURES`): "sd1", "sd1-inpaint" (9 input channels), "sd2" (eps), "sd2-v", "sdxl",
"sdxl-refiner" (the refiner's four-level UNet with attention in the middle two levels and CLIP-G alone).
SD2 v-prediction is detected, as ComfyUI does, from the spread of one LayerNorm bias in the last output block
(`families.py`); the "sd2-v" builder gives that bias a std of 0.2 (eps models keep ~0.02, under the 0.09 line).

Files:
- `write_single_file(arch, path, *, seed=0, dtype=torch.float32)`: one original-layout .safetensors
  (`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.transformer.*` /
  `cond_stage_model.model.*` / `conditioner.embedders.N.*`), renamed by `original_layout.py`, with the extra
  tensors real files carry (CLIP-L position_ids, SD2's unused OpenCLIP projection).
- `write_diffusers_folder(arch, path, *, seed=0)`: model_index.json + unet/ vae/ text_encoder/
  [text_encoder_2/] scheduler/ via `save_pretrained`. As in diffusers' own SD2 folders, the SD2 text encoder
  is stored without its last layer.
- `build_tiny(arch, *, seed=0) -> TinyModels`: the modules themselves (what both files contain).
- `without_last_layer(encoder) -> CLIPTextModel`: a copy of a text encoder minus its last layer (diffusers'
  SD2 layout; a diffusers SD2 pipeline given it encodes like ComfyUI's penultimate-layer default).

Must not import pytest: it is library code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import diffusers
import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from nodes.sd import configs, original_layout
from nodes.sd.configs import SDXL_FAMILIES, CLIPShape, UNetShape, VAEShape
from nodes.sd.families import TEXT_ENCODER_KEYS, ModelFamily, family_spec

ARCHITECTURES = ("sd1", "sd1-inpaint", "sd2", "sd2-v", "sdxl", "sdxl-refiner")

_UNET_SD = UNetShape(
    block_out_channels=(32, 64),
    layers_per_block=1,
    transformer_depth=(1, 0),
    mid_transformer_depth=1,
    context_dim=32,
    linear_projection=False,
)
_UNET_XL = UNetShape(
    block_out_channels=(32, 64),
    layers_per_block=1,
    transformer_depth=(0, 2),
    mid_transformer_depth=2,
    context_dim=64,  # CLIP-L width + CLIP-G width
    linear_projection=True,
    adm_in_channels=32 + 6 * 8,  # pooled CLIP-G projection + six 8-wide size embeddings
    addition_time_embed_dim=8,
)
_UNET_XL_REFINER = UNetShape(
    block_out_channels=(32, 32, 64, 64),
    layers_per_block=1,
    transformer_depth=(0, 2, 2, 0),
    mid_transformer_depth=2,
    context_dim=32,  # CLIP-G width
    linear_projection=True,
    adm_in_channels=32 + 5 * 8,  # pooled CLIP-G projection + five 8-wide embeddings (sizes, aesthetic score)
    addition_time_embed_dim=8,
)
# Four levels as in the real KL-f8 autoencoder (factor 2 per downsample); 32 is the narrowest width GroupNorm's
# 32 groups allow.
_VAE = VAEShape(block_out_channels=(32, 32, 32, 32), layers_per_block=1)
_CLIP = CLIPShape(hidden_size=32, num_layers=2, intermediate_size=64)
V_PRED_BIAS_STD = 0.2
_NORM_JITTER = 0.02


@dataclass(frozen=True)
class TinySpec:
    """The family and component shapes of one tiny architecture."""

    family: ModelFamily
    unet: UNetShape
    vae: VAEShape
    text_encoders: dict[str, CLIPShape]


@dataclass
class TinyModels:
    """Seeded tiny modules of one architecture (float32, CPU)."""

    spec: TinySpec
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoders: dict[str, CLIPTextModel | CLIPTextModelWithProjection]


def tiny_spec(arch: str) -> TinySpec:
    """The shapes of tiny architecture `arch` (one of `ARCHITECTURES`)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
    clip_g = replace(_CLIP, projection_dim=32)
    if arch == "sdxl":
        return TinySpec(family_spec("sdxl"), _UNET_XL, _VAE, {"l": _CLIP, "g": clip_g})
    if arch == "sdxl-refiner":
        return TinySpec(family_spec("sdxl_refiner"), _UNET_XL_REFINER, _VAE, {"g": clip_g})
    name = "sd1" if arch.startswith("sd1") else "sd2"
    in_channels = 9 if arch.endswith("inpaint") else 4
    unet = replace(_UNET_SD, linear_projection=name == "sd2", in_channels=in_channels)
    family = family_spec(name, prediction="v" if arch == "sd2-v" else "eps", in_channels=in_channels)
    return TinySpec(family, unet, _VAE, {"l" if name == "sd1" else "h": _CLIP})


def build_tiny(arch: str, *, seed: int = 0) -> TinyModels:
    """Build the seeded modules of `arch`; the global RNG state is left as it was."""
    spec = tiny_spec(arch)
    family = spec.family
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet_config = configs.unet_config(family.name, spec.unet, prediction=family.prediction)
        unet = UNet2DConditionModel.from_config(unet_config)
        vae = AutoencoderKL.from_config(configs.vae_config(family.name, spec.vae, prediction=family.prediction))
        encoders = {}
        for kind, shape in spec.text_encoders.items():
            cls = CLIPTextModelWithProjection if shape.projection_dim else CLIPTextModel
            encoders[kind] = cls(configs.clip_text_config(kind, shape))
        for module in (unet, vae, *encoders.values()):
            _jitter_norms(module)
        if family.prediction == "v" and family.name == "sd2":
            bias = unet.up_blocks[-1].attentions[-1].transformer_blocks[0].norm1.bias
            with torch.no_grad():
                bias.copy_(torch.randn_like(bias) * V_PRED_BIAS_STD)
    for module in (unet, vae, *encoders.values()):
        module.requires_grad_(False).eval()
    return TinyModels(spec, unet, vae, encoders)


def _jitter_norms(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and sub.weight is not None:
                sub.weight.add_(torch.randn_like(sub.weight) * _NORM_JITTER)
                sub.bias.add_(torch.randn_like(sub.bias) * _NORM_JITTER)


def original_state_dict(models: TinyModels) -> dict[str, torch.Tensor]:
    """All weights of `models` under their original single-file names, plus the extras real files carry."""
    out = original_layout.unet_to_original(models.unet.state_dict(), models.unet.config)
    out.update(original_layout.vae_to_original(models.vae.state_dict(), models.vae.config))
    name = models.spec.family.name
    generator = torch.Generator().manual_seed(1)
    for kind, encoder in models.text_encoders.items():
        prefix, layout = TEXT_ENCODER_KEYS[name][kind]
        if layout == "hf":
            out.update(original_layout.clip_to_original(encoder.state_dict(), prefix))
            positions = encoder.config.max_position_embeddings
            out[f"{prefix}text_model.embeddings.position_ids"] = torch.arange(positions)[None]
        else:
            out.update(original_layout.open_clip_to_original(encoder.state_dict(), prefix))
        if kind == "h":  # SD2 files store OpenCLIP's projection although SD2 never applies it
            width = encoder.config.hidden_size
            out[f"{prefix}text_projection"] = torch.randn(width, width, generator=generator)
    return out


def write_single_file(arch: str, path: str | Path, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """Write tiny `arch` as one original-layout safetensors file (float tensors stored as `dtype`)."""
    path = Path(path)
    tensors = original_state_dict(build_tiny(arch, seed=seed))
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"latentloom.tiny": arch, "latentloom.seed": str(seed)})
    return path


def write_diffusers_folder(arch: str, path: str | Path, *, seed: int = 0) -> Path:
    """Write tiny `arch` as a diffusers folder (float32 safetensors)."""
    path = Path(path)
    models = build_tiny(arch, seed=seed)
    family = models.spec.family
    models.unet.save_pretrained(path / "unet")
    models.vae.save_pretrained(path / "vae")
    index = {
        "_class_name": _PIPELINES[(family.name, family.inpaint)],
        "_diffusers_version": diffusers.__version__,
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    }
    subfolders = {"l": "text_encoder", "g": "text_encoder_2"} if family.name in SDXL_FAMILIES else {}
    if family.name == "sdxl_refiner":  # as in the released refiner's model_index.json
        index.update(text_encoder=[None, None], tokenizer=[None, None], requires_aesthetics_score=True,
                     force_zeros_for_empty_prompt=False)
    for kind, encoder in models.text_encoders.items():
        sub = subfolders.get(kind, "text_encoder")
        encoder = without_last_layer(encoder) if kind == "h" else encoder
        encoder.save_pretrained(path / sub)
        index[sub] = ["transformers", type(encoder).__name__]
    _scheduler(family).save_pretrained(path / "scheduler")
    (path / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return path


_PIPELINES = {
    ("sd1", False): "StableDiffusionPipeline",
    ("sd1", True): "StableDiffusionInpaintPipeline",
    ("sd2", False): "StableDiffusionPipeline",
    ("sd2", True): "StableDiffusionInpaintPipeline",
    ("sdxl", False): "StableDiffusionXLPipeline",
    ("sdxl", True): "StableDiffusionXLInpaintPipeline",
    ("sdxl_refiner", False): "StableDiffusionXLImg2ImgPipeline",
}


def without_last_layer(encoder: CLIPTextModel) -> CLIPTextModel:
    """diffusers' SD2 layout: the OpenCLIP text tower minus its last layer (SD2 encodes with the penultimate)."""
    config = encoder.config.__class__.from_dict(encoder.config.to_dict())
    config.num_hidden_layers -= 1
    truncated = CLIPTextModel(config)
    dropped = f"encoder.layers.{config.num_hidden_layers}."
    truncated.load_state_dict({k: v for k, v in encoder.state_dict().items() if not k.startswith(dropped)})
    return truncated.eval()


def _scheduler(family: ModelFamily) -> EulerDiscreteScheduler:
    # The SD training schedule (reference §6.3): scaled-linear betas from 0.00085 to 0.012 over 1000 steps.
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction" if family.prediction == "v" else "epsilon",
        timestep_spacing="leading",
        steps_offset=1,
    )
