"""LoRA files: read them, match their layers to a model's parameters, and hand back patched MODEL/CLIP handles.

Rule: a LoRA never changes the model it is given. `apply_lora` returns new handles whose manager view
(`devices.PatchedManager`) carries an immutable tuple of `LoraPatch`es per module; the model manager applies them,
in place and on the module's device, when the module is put to use, and restores the originals (kept as a
backup of the touched tensors only) before a use with other patches or when the module leaves the device. So
the executor's cached checkpoint handle keeps working on the base weights, stacking is chaining LoraLoader nodes
(each adds its patches after the ones already carried), and no module is ever copied as a whole.

Formula (reference §6.11): W' = W + strength · scale · (up @ down), reshaped to W's shape; scale = alpha / rank
when the file has an alpha for the layer (rank = down's first dimension), else 1. Computed in float32, cast to the
weight's dtype once per weight. Linear layers and convolutions (down 1×1 or k×k, up 1×1) are supported; other
LyCORIS kinds (LoHa, LoKr, DoRA scales, …) are not and count as unmatched keys.

Layouts:
- kohya / A1111: `lora_unet_<module path with _>.lora_down.weight` / `.lora_up.weight` / `.alpha`, text encoders
  `lora_te_` (SD1/SD2), `lora_te1_` / `lora_te2_` (SDXL's CLIP-L / CLIP-G). UNet paths in diffusers' naming
  (kohya's SD1/SD2) or the original SGM naming (`input_blocks_4_1_…`, kohya's SDXL). Names are converted with
  diffusers' own helpers (`StableDiffusionLoraLoaderMixin.lora_state_dict` with the UNet's config, then the
  state-dict mappings of `diffusers.utils.state_dict_utils`); alphas are paired back by tensor identity, since
  diffusers renames them inconsistently.
- diffusers / PEFT: `unet.<module>.lora_A.weight` / `.lora_B.weight` (or the older `.lora.down/up`, attention
  processor `to_q_lora` and `lora_linear_layer` spellings), `text_encoder.` / `text_encoder_2.` prefixes, optional
  `<module>.alpha`. Keys without a prefix are taken as UNet keys (diffusers' oldest attention-processor files).
  Adapter metadata in the file's header (diffusers' `lora_adapter_metadata`) is ignored, as ComfyUI does.

Matching: a layer applies when its module exists in the target model and its shapes fit the weight. A file none of
whose layers applies raises `LoraError` naming the file; in a file that matches, the keys that do not (unsupported
kinds, unknown modules, other shapes) are logged as one warning listing a few. Text-encoder layers given to a
model-only load are neither used nor reported.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from diffusers.loaders.lora_pipeline import StableDiffusionLoraLoaderMixin
from diffusers.utils.state_dict_utils import (
    DIFFUSERS_OLD_TO_PEFT,
    DIFFUSERS_TO_PEFT,
    convert_state_dict,
    convert_unet_state_dict_to_peft,
)

from nodes.sd.errors import CheckpointError
from nodes.sd.handles import ClipHandle, ModelHandle
from nodes.sd.statedict import open_state_dict

log = logging.getLogger(__name__)

KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
UNET = "unet"
#: diffusers' component names for the text encoders → our text-model keys, in order of preference.
TEXT_COMPONENTS = {"text_encoder": ("l", "h"), "text_encoder_2": ("g",)}
# How a diffusers-layout key of each spelling ends, for finding its `.alpha` under the file's own module name.
_DOWN_SUFFIXES = (".lora_A.weight", ".lora.down.weight", ".lora_linear_layer.down.weight", "_lora.down.weight")
_LISTED = 5  # unmatched keys named in the warning


class LoraError(CheckpointError):
    """A LoRA file that cannot be read or matches nothing of the model it is applied to."""


@dataclass(frozen=True, eq=False)
class LoraLayer:
    """One low-rank pair of a file. `key`: its down weight's name in the file (for messages).

    `down` is [rank, in] or [rank, in, kh, kw]; `up` is [out, rank] or [out, rank, 1, 1]. Compared by identity.
    """

    key: str
    down: torch.Tensor
    up: torch.Tensor
    alpha: float | None = None

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def scale(self) -> float:
        return self.alpha / self.rank if self.alpha is not None else 1.0

    def fits(self, shape: torch.Size | tuple[int, ...]) -> bool:
        """Whether up @ down has `shape`'s output rows and element count (so it reshapes to it)."""
        up_rank = math.prod(self.up.shape[1:])
        return (self.up.dim() >= 2 and up_rank == self.rank and len(shape) >= 2 and self.up.shape[0] == shape[0]
                and math.prod(self.down.shape[1:]) == math.prod(shape[1:]))

    def product(self, weight: torch.Tensor) -> torch.Tensor:
        """up @ down in float32 on `weight`'s device, shaped like `weight` (no scale, no strength)."""
        up = self.up.to(device=weight.device, dtype=torch.float32).flatten(1)
        down = self.down.to(device=weight.device, dtype=torch.float32).flatten(1)
        return (up @ down).reshape(weight.shape)


@dataclass(frozen=True)
class LoraPatch:
    """One LoRA layer on one parameter at one strength: a `devices.WeightPatch`."""

    target: str
    layer: LoraLayer
    strength: float

    def delta(self, weight: torch.Tensor) -> torch.Tensor:
        return self.layer.product(weight) * (self.strength * self.layer.scale)


@dataclass(frozen=True, eq=False)
class LoraFile:
    """A file's LoRA layers by (diffusers component, module path), and its keys that are no LoRA layer."""

    path: Path
    layers: dict[tuple[str, str], LoraLayer]
    unsupported: tuple[str, ...]


def read_lora(path: str | Path, *, unet_config: Mapping, allow_pickle: bool = False) -> LoraFile:
    """Read a LoRA file in either layout. `unet_config`: the target UNet's config (SGM block numbers need it).

    Pickle files (.pt/.ckpt/…) are read only with `allow_pickle`, as checkpoints.
    """
    path = Path(path)
    tensors = open_state_dict(path, allow_pickle=allow_pickle).tensors()
    kohya = {k: v for k, v in tensors.items() if k.startswith(KOHYA_PREFIXES)}
    other = {k: v for k, v in tensors.items() if k not in kohya}
    layers, used = _kohya_layers(path, kohya, unet_config)
    more, used_more = _diffusers_layers(other)
    layers.update(more)
    unsupported = tuple(k for k in tensors if k not in used and k not in used_more)
    return LoraFile(path, layers, unsupported)


def _kohya_layers(path: Path, tensors: dict[str, torch.Tensor], unet_config: Mapping):
    """kohya keys → layers, converted to diffusers' module names by diffusers itself; and the keys used."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        name, _, part = key.partition(".")
        groups.setdefault(name, {})[part] = tensor
    pairs = {name: g for name, g in groups.items() if {"lora_down.weight", "lora_up.weight"} <= set(g)}
    if not pairs:
        return {}, set()
    flat = {f"{name}.{part}": g[part] for name, g in pairs.items() for part in ("lora_down.weight", "lora_up.weight")}
    origin = {id(g["lora_down.weight"]): name for name, g in pairs.items()}
    try:
        converted, _alphas = StableDiffusionLoraLoaderMixin.lora_state_dict(flat, unet_config=unet_config)
    except ValueError as exc:  # diffusers' conversion refuses block layouts it does not know
        raise LoraError(path, f"unsupported kohya LoRA layout ({exc})") from exc
    layers, used = {}, set()
    for (component, module), (down, up) in _pairs(_to_peft(converted)).items():
        name = origin.get(id(down))
        if name is None:  # not one of the file's tensors (a conversion that computes): leave its keys unmatched
            continue
        alpha = pairs[name].get("alpha")
        layers[(component, module)] = LoraLayer(f"{name}.lora_down.weight", down, up,
                                                float(alpha) if alpha is not None else None)
        used.update(f"{name}.{part}" for part in ("lora_down.weight", "lora_up.weight", "alpha") if part in pairs[name])
    return layers, used


def _diffusers_layers(tensors: dict[str, torch.Tensor]):
    """diffusers / PEFT keys → layers (alphas from `<module>.alpha` in either spelling); and the keys used."""
    origin = {id(tensor): key for key, tensor in tensors.items()}
    layers, used = {}, set()
    for (component, module), (down, up) in _pairs(_to_peft(tensors)).items():
        down_key, up_key = origin[id(down)], origin[id(up)]
        prefix = "" if not down_key.startswith(f"{component}.") else f"{component}."
        candidates = [f"{prefix}{module}.alpha"]
        candidates += [down_key.removesuffix(s) + ".alpha" for s in _DOWN_SUFFIXES if down_key.endswith(s)]
        alpha_key = next((k for k in candidates if k in tensors), None)
        alpha = float(tensors[alpha_key]) if alpha_key is not None else None
        layers[(component, module)] = LoraLayer(down_key, down, up, alpha)
        used.update(k for k in (down_key, up_key, alpha_key) if k is not None)
    return layers, used


def _to_peft(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers' old and new spellings → PEFT's `<module>.lora_A/B.weight`, per component (their names differ:
    the UNet's `to_q_lora` is `to_q`, a text encoder's is `q_proj`)."""
    unet = {k: v for k, v in tensors.items() if not k.startswith(tuple(f"{c}." for c in TEXT_COMPONENTS))}
    text = {k: v for k, v in tensors.items() if k not in unet}
    text = convert_state_dict(convert_state_dict(text, DIFFUSERS_OLD_TO_PEFT), DIFFUSERS_TO_PEFT)
    return {**convert_unet_state_dict_to_peft(unet), **text}


def _pairs(peft: dict[str, torch.Tensor]) -> dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]]:
    """(component, module path) → (down, up) for every complete lora_A/lora_B pair."""
    out = {}
    for key, down in peft.items():
        if not key.endswith(".lora_A.weight"):
            continue
        up = peft.get(key.removesuffix(".lora_A.weight") + ".lora_B.weight")
        if up is None:
            continue
        path = key.removesuffix(".lora_A.weight")
        first, _, rest = path.partition(".")
        component, module = (first, rest) if first == UNET or first in TEXT_COMPONENTS else (UNET, path)
        out[(component, module)] = (down, up)
    return out


@dataclass
class LoraMatch:
    """Which of a file's layers apply to which module: `targets[component]` = [(parameter name, layer)]."""

    targets: dict[str, list[tuple[str, LoraLayer]]]
    unmatched: list[str]

    def patches(self, component: str, strength: float) -> tuple[LoraPatch, ...]:
        return tuple(LoraPatch(name, layer, strength) for name, layer in self.targets.get(component, ()))


def match_lora(lora: LoraFile, modules: Mapping[str, torch.nn.Module]) -> LoraMatch:
    """Match `lora`'s layers to `modules` (by diffusers component: "unet", "text_encoder", "text_encoder_2").

    Text-encoder layers are skipped without a word when `modules` has no text encoder at all (a model-only load).
    """
    params = {component: dict(module.named_parameters()) for component, module in modules.items()}
    with_text = any(component in TEXT_COMPONENTS for component in modules)
    targets: dict[str, list[tuple[str, LoraLayer]]] = {}
    unmatched = list(lora.unsupported)
    for (component, module_path), layer in lora.layers.items():
        if component in TEXT_COMPONENTS and not with_text:
            continue
        name = _parameter(params.get(component, {}), module_path)
        if name is None or not layer.fits(params[component][name].shape):
            unmatched.append(layer.key)
            continue
        targets.setdefault(component, []).append((name, layer))
    return LoraMatch(targets, unmatched)


def _parameter(params: Mapping[str, torch.nn.Parameter], module_path: str) -> str | None:
    """The weight of `module_path`; CLIP's `text_model.` level exists in some transformers classes, not others."""
    bare = module_path.removeprefix("text_model.")
    for candidate in (module_path, bare, f"text_model.{bare}"):
        if f"{candidate}.weight" in params:
            return f"{candidate}.weight"
    return None


def text_modules(clip: ClipHandle) -> dict[str, torch.nn.Module]:
    """A CLIP handle's text models under diffusers' component names."""
    models = clip.encoder.models
    out = {}
    for component, keys in TEXT_COMPONENTS.items():
        key = next((k for k in keys if k in models), None)
        if key is not None:
            out[component] = models[key]
    return out


def apply_lora(path: str | Path, model: ModelHandle, clip: ClipHandle | None, *, strength_model: float,
               strength_clip: float = 0.0, allow_pickle: bool = False) -> tuple[ModelHandle, ClipHandle | None]:
    """LoraLoader: `model` and `clip` with the file's layers added at the given strengths (`clip` None: model
    only). Inputs come back unchanged where a strength is 0; the file is not read when both are."""
    if strength_model == 0 and (clip is None or strength_clip == 0):
        return model, clip
    path = Path(path)
    lora = read_lora(path, unet_config=model.unet.config, allow_pickle=allow_pickle)
    modules = {UNET: model.unet, **(text_modules(clip) if clip is not None else {})}
    match = match_lora(lora, modules)
    if not match.targets:
        what = "diffusion model or text encoders" if clip is not None else "diffusion model"
        raise LoraError(path, f"no LoRA layer of this file matches the {what} of this {model.family.name} "
                              f"checkpoint ({len(lora.layers)} layers, {len(lora.unsupported)} other keys)")
    if match.unmatched:
        listed = ", ".join(match.unmatched[:_LISTED]) + (", …" if len(match.unmatched) > _LISTED else "")
        log.warning("LoRA %s: %d keys match nothing of the %s model and are not loaded: %s",
                    path.name, len(match.unmatched), model.family.name, listed)
    if strength_model != 0 and match.targets.get(UNET):
        model = replace(model, manager=model.manager.with_patches(model.unet, match.patches(UNET, strength_model)))
    if clip is not None and strength_clip != 0:
        manager = clip.manager
        for component, module in modules.items():
            if component in TEXT_COMPONENTS and match.targets.get(component):
                manager = manager.with_patches(module, match.patches(component, strength_clip))
        if manager is not clip.manager:
            clip = replace(clip, manager=manager)
    return model, clip
