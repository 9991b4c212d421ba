"""A random-weight checkpoint with SD1.5's exact architecture, for benchmarks (bench/sampling.py, bench/gpu.py).

No real weights are needed: modules are built on the meta device from `nodes.sd.configs` (no memory, no
initialisation), renamed to the original single-file layout with the conversion `nodes.sd.tiny` uses, filled with
cheap fp16 random values (scaled by 1/sqrt(fan-in) so activations stay finite; norms 1, biases 0) and saved as one
fp16 safetensors file (~2 GB), with a diffusers config folder for the same model (`from_single_file(config=…)`
keeps diffusers off the hub). `prepare(cache_dir, tiny)` writes both once and reuses them; `tiny=True` gives the
tiny test architecture instead (seconds, for smoke tests).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

GIB = 1024**3


def model_shapes(tiny: bool):
    """UNet, VAE and CLIP-L shapes: SD1.5's, or the tiny test architecture's."""
    from nodes.sd import configs
    from nodes.sd.tiny import tiny_spec

    if tiny:
        spec = tiny_spec("sd1")
        return spec.unet, spec.vae, spec.text_encoders["l"]
    return configs.SD1_UNET, configs.SD_VAE, configs.CLIP_L


def component_configs(tiny: bool) -> tuple[dict, dict, object]:
    """diffusers / transformers configs of the benchmarked model (UNet dict, VAE dict, CLIPTextConfig)."""
    from nodes.sd import configs

    unet, vae, clip = model_shapes(tiny)
    return configs.unet_config("sd1", unet), configs.vae_config("sd1", vae), configs.clip_text_config("l", clip)


def meta_models(tiny: bool):
    """The model's modules on the meta device, as `TinyModels` so that tiny.py's key conversion applies."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from nodes.sd.families import family_spec
    from nodes.sd.tiny import TinyModels, TinySpec

    unet_config, vae_config, clip_config = component_configs(tiny)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(unet_config)
        vae = AutoencoderKL.from_config(vae_config)
        clip = CLIPTextModel(clip_config)
    shapes = model_shapes(tiny)
    spec = TinySpec(family_spec("sd1"), shapes[0], shapes[1], {"l": shapes[2]})
    return TinyModels(spec, unet, vae, {"l": clip})


def random_like(name: str, meta, generator):
    """Random fp16 values of `meta`'s shape: N(0, 1/fan-in) weights, 0.02 embeddings, norm weights 1, biases 0."""
    import torch

    if not meta.is_floating_point():
        return meta  # position_ids: real values already
    if meta.dim() == 1:
        return (torch.zeros if name.endswith("bias") else torch.ones)(meta.shape, dtype=torch.float16)
    fan_in = meta[0].numel()
    std = 0.02 if "embedding" in name else fan_in**-0.5
    return torch.empty(meta.shape, dtype=torch.float16).normal_(0.0, std, generator=generator)


def write_checkpoint(path: Path, tiny: bool) -> None:
    """Write the random-weight original-layout fp16 single file (atomically: a partial file is never reused)."""
    import torch
    from safetensors.torch import save_file

    from nodes.sd.tiny import original_state_dict

    generator = torch.Generator().manual_seed(0)
    names = original_state_dict(meta_models(tiny))
    tensors = {name: random_like(name, meta, generator).contiguous() for name, meta in names.items()}
    partial = path.with_suffix(".partial")
    save_file(tensors, str(partial), metadata={"latentloom.bench": "random-weight SD1.5 architecture"})
    partial.replace(path)


def write_diffusers_config(folder: Path, tiny: bool) -> None:
    """A diffusers StableDiffusionPipeline folder with configs and tokenizer only: `from_single_file(config=…)`."""
    from diffusers import EulerDiscreteScheduler

    from nodes.sd.tokenizer import load_clip_tokenizer

    unet, vae, clip = component_configs(tiny)
    for sub, cls, config in (("unet", "UNet2DConditionModel", unet), ("vae", "AutoencoderKL", vae)):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / sub / "config.json").write_text(json.dumps({"_class_name": cls, **config}, indent=2))
    clip.save_pretrained(folder / "text_encoder")
    load_clip_tokenizer().save_pretrained(folder / "tokenizer")
    sd_scheduler().save_pretrained(folder / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def sd_scheduler():
    """diffusers' Euler on SD's training schedule (initial noise sqrt(1 + σ_max²) as ComfyUI: "leading")."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                  beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1)


def prepare(cache_dir: Path, tiny: bool) -> tuple[Path, Path]:
    """The cached checkpoint and config folder, written when absent."""
    stem = "sd15-random-tiny" if tiny else "sd15-random-fp16"
    path, config = cache_dir / f"{stem}.safetensors", cache_dir / f"{stem}-diffusers-config"
    cache_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        start = time.perf_counter()
        write_checkpoint(path, tiny)
        print(f"wrote {path} ({path.stat().st_size / GIB:.2f} GiB) in {time.perf_counter() - start:.0f} s")
    if not (config / "model_index.json").exists():
        write_diffusers_config(config, tiny)
    return path, config
