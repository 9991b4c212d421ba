"""A1111 hypernetworks (`models/hypernetworks/*.pt`) as a UNet patch (nodes/sd/model_options.py).

The file is a pickled dict (no safetensors layout exists for it): integer keys are feature widths (320, 640, 768,
1280 for SD1), each holding two `nn.Sequential` state dicts, one for attention keys and one for values, plus
`activation_func`, `is_layer_norm`, `use_dropout`, `activate_output`, … The network for a width is rebuilt as
ComfyUI does: the `.weight` entries in file order are Linear layers, each followed by the activation (unless it
is the last entry and `activate_output` is off) and, with `is_layer_norm`, by the next entry as a LayerNorm.
(ComfyUI counts the LayerNorm entries when it decides which Linear is last, so with layer norms the final Linear
is activated too; A1111 does not. We follow ComfyUI.) Dropout layers do nothing at inference and are left out.

Applied as ComfyUI does, to self- and cross-attention alike: where an attention layer projects its key input k
and value input v (diffusers' `to_k` / `to_v`), k ← k + net_k(k)·strength and v ← v + net_v(v)·strength, using
the pair for the input's width; layers whose width the file lacks are untouched (SD1's cross-attention: 768).
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from nodes.sd.errors import CheckpointError
from nodes.sd.statedict import PICKLE_SUFFIXES

ACTIVATIONS = {
    "linear": torch.nn.Identity, "relu": torch.nn.ReLU, "leakyrelu": torch.nn.LeakyReLU, "elu": torch.nn.ELU,
    "swish": torch.nn.Hardswish, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
    "softsign": torch.nn.Softsign, "mish": torch.nn.Mish,
}


class HypernetworkError(CheckpointError):
    """A hypernetwork file that cannot be read or is not in the A1111 layout."""


def load_hypernetwork(path: Path, *, allow_pickle: bool = False) -> dict[int, tuple[torch.nn.Module, torch.nn.Module]]:
    """Width → (key network, value network), float32 on the CPU, in eval mode."""
    if path.suffix.lower() not in PICKLE_SUFFIXES:
        raise HypernetworkError(path, "hypernetworks are pickled .pt files (A1111's layout has no safetensors form)")
    if not allow_pickle:
        raise HypernetworkError(path, "hypernetwork files are pickles, which can run code when loaded; enable pickle "
                                      "files (--allow-pickle) to use this one")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise HypernetworkError(path, f"could not read the file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise HypernetworkError(path, f"holds a {type(data).__name__}, not a hypernetwork dict")
    activation = data.get("activation_func", "linear")
    if activation not in ACTIVATIONS:
        raise HypernetworkError(path, f"unsupported activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")
    options = dict(activation=activation, layer_norm=bool(data.get("is_layer_norm", False)),
                   activate_output=bool(data.get("activate_output", False)))
    networks = {}
    for key, pair in data.items():
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            try:
                networks[int(key)] = tuple(_network(pair[index], **options).eval() for index in (0, 1))
            except (KeyError, IndexError, TypeError, RuntimeError) as exc:
                raise HypernetworkError(path, f"width {key}: not an A1111 hypernetwork layer ({exc})") from exc
    if not networks:
        raise HypernetworkError(path, "no hypernetwork layers (integer width keys) in the file")
    return networks


def _network(state: dict, activation: str, layer_norm: bool, activate_output: bool) -> torch.nn.Sequential:
    names = [key[: -len(".weight")] for key in state if key.endswith(".weight")]
    layers: list[torch.nn.Module] = []
    i = 0
    while i < len(names):
        weight, bias = state[f"{names[i]}.weight"], state[f"{names[i]}.bias"]
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
        linear.load_state_dict({"weight": weight, "bias": bias})
        layers.append(linear)
        if activation != "linear" and (i != len(names) - 1 or activate_output):
            layers.append(ACTIVATIONS[activation]())
        if layer_norm:
            i += 1
            weight, bias = state[f"{names[i]}.weight"], state[f"{names[i]}.bias"]
            norm = torch.nn.LayerNorm(weight.shape[0])
            norm.load_state_dict({"weight": weight, "bias": bias})
            layers.append(norm)
        i += 1
    return torch.nn.Sequential(*layers).float()


def attention_projections(unet: torch.nn.Module) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
    """(to_k, to_v) of every self- and cross-attention layer of the UNet's transformer blocks."""
    return [(module.to_k, module.to_v) for name, module in unet.named_modules()
            if name.rsplit(".", 1)[-1] in ("attn1", "attn2")]


@dataclass(frozen=True, eq=False)  # holds modules
class Hypernetwork:
    """A `UNetPatch`: the file's networks applied to the attention key and value inputs with `strength`."""

    networks: dict[int, tuple[torch.nn.Module, torch.nn.Module]]
    strength: float

    @contextmanager
    def attach(self, unet: torch.nn.Module) -> Iterator[None]:
        # Copies on the UNet's device and dtype: the loaded networks stay as the cached MODEL holds them.
        placed = {width: tuple(copy.deepcopy(net).to(unet.device, unet.dtype) for net in pair)
                  for width, pair in self.networks.items()}
        hooks = []
        for to_k, to_v in attention_projections(unet):
            pair = placed.get(to_k.in_features)
            if pair is not None:
                hooks.append(to_k.register_forward_pre_hook(self._hook(pair[0])))
                hooks.append(to_v.register_forward_pre_hook(self._hook(pair[1])))
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()

    def _hook(self, network: torch.nn.Module):
        def add(module: torch.nn.Module, args: tuple) -> tuple:
            return (args[0] + network(args[0]) * self.strength,) + tuple(args[1:])
        return add
