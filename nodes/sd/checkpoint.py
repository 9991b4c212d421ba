"""Loading a Stable Diffusion checkpoint (SD1.x, SD2.x eps / v, SDXL base and refiner, inpainting) into diffusers
modules.

`load_checkpoint(path)` reads a single-file checkpoint in the original layout: `families.detect` finds the
family and shapes from the safetensors header, the modules are built from configs in code (`configs.py`) on the
meta device (no random initialisation), each component's tensors are renamed with diffusers' own single-file
conversion helpers and assigned into the modules (`load_state_dict(assign=True)`) straight from the
memory-mapped file, so no second copy exists in RAM. Tensors whose dtype differs from the target dtype are
converted once, while they are read, a batch at a time (`StateDict.tensors(dtype=…)`): the peak memory of an
fp16 file loaded as fp32 is the fp32 model plus one batch, not plus the whole file.
`load_diffusers_folder(path)` reads a diffusers folder and returns the same `Checkpoint`.

dtype=None picks the device policy (`devices.dtype_policy`): fp32 everywhere on the CPU; fp16 UNet and text
encoders and a bf16/fp32 VAE on CUDA; a `DtypePolicy` gives each component its own (`--precision` and its
per-model flags, `nodes.precision`). The modules stay on the CPU (in RAM); `devices.ModelManager` moves them.

Rules: pickle files only with `allow_pickle=True` (weights-only unpickling); every failure is a
`CheckpointError` naming the file and the reason; missing weights are an error, extra keys in the file
(EMA copies, position_ids, noise-schedule buffers, ...) are ignored as ComfyUI does.

Public API (what the CheckpointLoaderSimple node wraps):
- `Checkpoint`: family (`ModelFamily`), unet (`UNet2DConditionModel`), vae (`AutoencoderKL` or None when the file
  has none), text_encoders (dict "l"/"h"/"g" -> `CLIPTextModel` / `CLIPTextModelWithProjection`; only those
  present), source (Path), metadata (safetensors metadata).
- `load_checkpoint(path, *, allow_pickle=False, dtype=None) -> Checkpoint`
- `load_diffusers_folder(path, *, allow_pickle=False, dtype=None) -> Checkpoint`
- `load_model(path, **kw)`: either of the two, by whether `path` is a folder.
- `load_vae_file(path, *, allow_pickle=False, dtype=None) -> AutoencoderKL`: a standalone VAE file.
- For single-component files (`components.py`): `dtypes_for(dtype)`, `load_unet(state, arch, dtype)`,
  `load_text_encoder(state, prefix, layout, kind, shape, dtype)`, `build_empty(path, what, make)` (a module on
  the meta device) and `fill_weights(module, state_dict, path, what, dtype)` (assign its weights, check that
  none is missing).
- `CheckpointError` (re-exported from `errors`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    LDM_UNET_KEY,
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from transformers import CLIPTextModel, CLIPTextModelWithProjection

try:  # transformers >= 5
    from transformers.initialization import no_init_weights
except ImportError:  # transformers 4
    from transformers.modeling_utils import no_init_weights

from nodes.sd import configs
from nodes.sd.devices import DtypePolicy, as_policy
from nodes.sd.errors import CheckpointError
from nodes.sd.families import (
    BASE_TIME_EMBEDDINGS,
    REFINER_TIME_EMBEDDINGS,
    VAE_PREFIX,
    Architecture, ModelFamily,     analyse_vae,
    detect,
    family_spec,
)
from nodes.sd.statedict import StateDict, open_state_dict

log = logging.getLogger(__name__)

TextEncoder = CLIPTextModel | CLIPTextModelWithProjection
# A neutral prefix for OpenCLIP tensors handed to diffusers' converter: under the real SD2 prefix it drops the
# last layer and the projection (diffusers' SD2 text encoder has 23 of 24 layers); we keep every layer so that
# ComfyUI's CLIPSetLastLayer counts the same layers.
_OPEN_CLIP_NEUTRAL = "open_clip."


@dataclass
class Checkpoint:
    """A loaded model file: the diffusion UNet, the autoencoder and the text encoders, on the CPU."""

    family: ModelFamily
    unet: UNet2DConditionModel
    vae: AutoencoderKL | None
    text_encoders: dict[str, TextEncoder]
    source: Path
    metadata: dict[str, str] = field(default_factory=dict)


def load_model(path: str | Path, **kwargs) -> Checkpoint:
    """`load_diffusers_folder` for a folder, `load_checkpoint` for a file."""
    return load_diffusers_folder(path, **kwargs) if Path(path).is_dir() else load_checkpoint(path, **kwargs)


def load_checkpoint(
    path: str | Path, *, allow_pickle: bool = False, dtype: torch.dtype | DtypePolicy | None = None
) -> Checkpoint:
    """Load a single-file original-layout checkpoint (.safetensors; .ckpt/.pt only with allow_pickle).

    dtype: one dtype for every component, a `DtypePolicy`, or None for the compute device's policy (fp32 on the
    CPU).
    """
    path = Path(path)
    state = open_state_dict(path, allow_pickle=allow_pickle)
    arch = detect(state)
    dtypes = as_policy(dtype)
    unet = load_unet(state, arch, dtypes.unet)
    vae = _load_vae(state, arch, dtypes.vae) if arch.vae is not None else None
    encoders = {
        kind: load_text_encoder(state, *keys, kind, arch.text_encoders[kind], dtypes.text_encoder)
        for kind, keys in arch.text_encoder_keys.items()
    }
    return Checkpoint(arch.family, unet, vae, encoders, path, dict(state.metadata))


def load_vae_file(
    path: str | Path, *, allow_pickle: bool = False, dtype: torch.dtype | DtypePolicy | None = None
) -> AutoencoderKL:
    """Load a standalone VAE file (original layout, keys bare or under `first_stage_model.`)."""
    state = open_state_dict(Path(path), allow_pickle=allow_pickle)
    prefix = VAE_PREFIX if f"{VAE_PREFIX}decoder.conv_in.weight" in state.shapes else ""
    if f"{prefix}decoder.conv_in.weight" not in state.shapes:
        raise CheckpointError(state.path, "not a VAE (no decoder.conv_in.weight)")
    try:
        vae_shape = analyse_vae(state.shapes, prefix)
    except Exception as exc:  # families' detection error for shapes no autoencoder has
        raise CheckpointError(state.path, f"unknown VAE architecture ({exc})") from None
    dtypes = as_policy(dtype)
    config = configs.vae_config("sd1", vae_shape, prediction="eps")
    vae = build_empty(state.path, "VAE", lambda: AutoencoderKL.from_config(config))
    tensors = {VAE_PREFIX + k[len(prefix):]: v for k, v in _under(state, prefix, dtypes.vae).items()}
    return fill_weights(vae, convert_ldm_vae_checkpoint(tensors, config), state.path, "VAE", dtypes.vae)


def _under(state: StateDict, prefix: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The tensors under `prefix`, converted to `dtype` while reading (see `StateDict.tensors`)."""
    return state.tensors((k for k in state.shapes if k.startswith(prefix)), dtype=dtype)


def load_unet(state: StateDict, arch: Architecture, dtype: torch.dtype) -> UNet2DConditionModel:
    """The UNet of a detected file (`families.detect`), as `dtype`."""
    family = arch.family
    config = configs.unet_config(family.name, arch.unet, prediction=family.prediction)
    unet = build_empty(state.path, "UNet", lambda: UNet2DConditionModel.from_config(config))
    # diffusers' converter only looks under the usual prefix; files using another one are renamed to it.
    tensors = {LDM_UNET_KEY + k[len(arch.unet_prefix):]: v for k, v in _under(state, arch.unet_prefix, dtype).items()}
    converted = convert_ldm_unet_checkpoint(tensors, config)
    return fill_weights(unet, converted, state.path, "UNet", dtype)


def _load_vae(state: StateDict, arch: Architecture, dtype: torch.dtype) -> AutoencoderKL:
    config = configs.vae_config(arch.family.name, arch.vae, prediction=arch.family.prediction)
    vae = build_empty(state.path, "VAE", lambda: AutoencoderKL.from_config(config))
    converted = convert_ldm_vae_checkpoint(_under(state, VAE_PREFIX, dtype), config)
    return fill_weights(vae, converted, state.path, "VAE", dtype)


def load_text_encoder(
    state: StateDict, prefix: str, layout: str, kind: str, shape: configs.CLIPShape, dtype: torch.dtype
) -> TextEncoder:
    """The text encoder under `prefix` in `layout` ("hf" or "open_clip") with `shape`, as `dtype`."""
    cls = CLIPTextModelWithProjection if shape.projection_dim is not None else CLIPTextModel
    model = build_empty(state.path, f"text encoder {kind}", lambda: cls(configs.clip_text_config(kind, shape)))
    tensors = _under(state, prefix, dtype)
    if layout == "hf":
        # Bare keys (a text-encoder file) already are transformers' names; the converter only strips prefixes.
        converted = convert_ldm_clip_checkpoint(tensors, remove_prefix=prefix) if prefix else tensors
    else:
        neutral = {_OPEN_CLIP_NEUTRAL + k[len(prefix):]: v for k, v in tensors.items()}
        converted = convert_open_clip_checkpoint(model, neutral, prefix=_OPEN_CLIP_NEUTRAL)
    return fill_weights(model, _match_text_model_prefix(model, converted), state.path, f"text encoder {kind}", dtype)


def build_empty(path: Path, what: str, make):
    """Build a module on the meta device: parameters get no storage and no random initialisation."""
    try:
        # no_init_weights: transformers would still run its initialisers over the meta tensors (a fifth of an
        # SD1.5 load's time above reading and converting the weights).
        with init_empty_weights(), no_init_weights():
            return make()
    except (ValueError, RuntimeError, AssertionError) as exc:  # widths the classes cannot take
        raise CheckpointError(path, f"unknown architecture ({what} cannot be built: {exc})") from None


def _match_text_model_prefix(model: TextEncoder, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers >= 5.6 flattened `CLIPTextModel` (no `text_model.` level); the projection model kept it."""
    bare = {k.removeprefix("text_model."): v for k, v in sd.items()}
    if isinstance(model, CLIPTextModelWithProjection):
        return {k if k.startswith("text_projection") else "text_model." + k: v for k, v in bare.items()}
    return bare


def fill_weights(module: torch.nn.Module, sd: dict, path: Path, what: str, dtype: torch.dtype) -> torch.nn.Module:
    """Assign `sd` into a meta-device `module`, check nothing is left unset, convert to `dtype` once."""
    try:
        result = module.load_state_dict(sd, strict=False, assign=True)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1].strip()
        raise CheckpointError(path, f"{what} weights do not fit the detected architecture ({detail})") from None
    if result.missing_keys:
        shown = ", ".join(result.missing_keys[:3])
        raise CheckpointError(path, f"{len(result.missing_keys)} {what} weights missing ({shown}, ...)")
    if result.unexpected_keys:
        log.debug("%s: ignored %d %s keys", path, len(result.unexpected_keys), what)
    left = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(path, f"{what} tensors left uninitialised ({', '.join(left[:3])})")
    if any(p.dtype != dtype for p in module.parameters()):
        module.to(dtype)
    module.requires_grad_(False)
    return module.eval()


def load_diffusers_folder(
    path: str | Path, *, allow_pickle: bool = False, dtype: torch.dtype | DtypePolicy | None = None
) -> Checkpoint:
    """Load a diffusers folder (model_index.json with unet/, vae/, text_encoder/ and/or text_encoder_2/).

    Weights are read from safetensors files (an "fp16" variant when only that exists); `.bin` pickles only
    with allow_pickle. The family comes from the UNet config, the prediction type from scheduler/.
    """
    path = Path(path)
    index = _read_json(path / "model_index.json", path, "not a diffusers folder (no readable model_index.json)")
    dtypes = as_policy(dtype)
    unet = _from_pretrained(UNet2DConditionModel, path, "unet", dtypes.unet, allow_pickle)
    name = folder_family(unet.config, path)
    roles = {"sd1": {"text_encoder": "l"}, "sd2": {"text_encoder": "h"}, "sdxl_refiner": {"text_encoder_2": "g"}}.get(
        name, {"text_encoder": "l", "text_encoder_2": "g"}
    )
    encoders = {}
    for sub, kind in roles.items():
        if sub in index and (path / sub).is_dir():
            cls = _TEXT_ENCODER_CLASSES.get(index[sub][1])
            if cls is None:
                raise CheckpointError(path / sub, f"unsupported text encoder class {index[sub][1]}")
            encoders[kind] = _from_pretrained(cls, path, sub, dtypes.text_encoder, allow_pickle)
    vae = _from_pretrained(AutoencoderKL, path, "vae", dtypes.vae, allow_pickle) if (path / "vae").is_dir() else None
    scheduler = path / "scheduler" / "scheduler_config.json"
    schedule = _read_json(scheduler, scheduler, "unreadable scheduler config") if scheduler.is_file() else {}
    family = family_spec(
        name,
        prediction="v" if schedule.get("prediction_type") == "v_prediction" else "eps",
        in_channels=unet.config.in_channels,
        zsnr=bool(schedule.get("rescale_betas_zero_snr")),
        # diffusers' SD2 conversion drops the last of OpenCLIP-H's layers; its folders all lack it.
        truncated_h=True,
    )
    _check_widths(path, family, unet, encoders)
    return Checkpoint(family, unet, vae, encoders, path)


_TEXT_ENCODER_CLASSES = {"CLIPTextModel": CLIPTextModel, "CLIPTextModelWithProjection": CLIPTextModelWithProjection}
_WEIGHT_NAMES = {UNet2DConditionModel: "diffusion_pytorch_model", AutoencoderKL: "diffusion_pytorch_model"}


def _read_json(file: Path, path: Path, reason: str) -> dict:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(path, reason) from None


def _from_pretrained(cls, root: Path, sub: str, dtype: torch.dtype, allow_pickle: bool):
    folder = root / sub
    stem = _WEIGHT_NAMES.get(cls, "model")
    has = {suffix: any(folder.glob(f"{stem}*{suffix}")) for suffix in (".safetensors", ".bin")}
    if not has[".safetensors"] and not (allow_pickle and has[".bin"]):
        reason = "only pickle (.bin) weights; loading them needs allow_pickle=True" if has[".bin"] else "no weights"
        raise CheckpointError(folder, reason)
    plain = (folder / f"{stem}.safetensors").exists() or (folder / f"{stem}.safetensors.index.json").exists()
    variant = None if plain or not any(folder.glob(f"{stem}.fp16.safetensors*")) else "fp16"
    kwargs = {"torch_dtype": dtype} if cls in _WEIGHT_NAMES else {"dtype": dtype}
    try:
        model = cls.from_pretrained(
            folder, local_files_only=True, use_safetensors=has[".safetensors"], variant=variant, **kwargs
        )
    except Exception as exc:  # diffusers / transformers raise many types; the caller needs one
        raise CheckpointError(folder, f"could not load {sub} ({type(exc).__name__}: {exc})") from exc
    model.requires_grad_(False)
    return model.eval()


def folder_family(config, path: Path) -> str:
    if config.get("addition_embed_type") == "text_time":
        return _sdxl_folder_variant(config, path)
    if config.get("addition_embed_type") or config.get("class_embed_type"):
        raise CheckpointError(path, "unknown architecture (a UNet with class conditioning)")
    return "sd2" if config.get("use_linear_projection") else "sd1"


def _sdxl_folder_variant(config, path: Path) -> str:
    """The base model adds six size embeddings to the pooled CLIP-G vector, the refiner five (the last one the
    aesthetic score); the pooled width is text_encoder_2's projection."""
    encoder = path / "text_encoder_2" / "config.json"
    pooled = _read_json(encoder, encoder, "unreadable text encoder config").get("projection_dim", 0)
    count, rest = divmod(config["projection_class_embeddings_input_dim"] - pooled, config["addition_time_embed_dim"])
    variant = {BASE_TIME_EMBEDDINGS: "sdxl", REFINER_TIME_EMBEDDINGS: "sdxl_refiner"}.get(count)
    if rest or variant is None:
        raise CheckpointError(path, f"unknown architecture (SDXL UNet with {count} size embeddings, not 5 or 6)")
    return variant


def _check_widths(path: Path, family: ModelFamily, unet, encoders: dict) -> None:
    if len(encoders) == len(family.text_encoders):
        width = sum(encoders[spec.key].config.hidden_size for spec in family.text_encoders)
        if width != unet.config.cross_attention_dim:
            raise CheckpointError(
                path, f"unknown architecture (UNet context {unet.config.cross_attention_dim}, text width {width})"
            )
    if family.in_channels not in (4, 9):
        raise CheckpointError(path, f"unknown architecture ({family.in_channels} UNet input channels)")


__all__ = ["Checkpoint", "CheckpointError", "load_checkpoint", "load_diffusers_folder", "load_model"]
