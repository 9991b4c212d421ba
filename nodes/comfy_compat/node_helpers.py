"""`node_helpers`: ComfyUI's small helpers for node code (imported only under that name).

- `conditioning_set_values(conditioning, values, append=False)`: a new CONDITIONING whose entries' dicts have
  `values` set (with `append`, added to the value already there); the input is not changed.
- `pillow(fn, arg)`: `fn(arg)`, retried once with truncated images allowed when PIL refuses the file.
- `hasher()`: the hash constructor files are fingerprinted with (sha256, as `nodes.identity`).
- `string_to_torch_dtype(name)`: "fp32" / "fp16" / "bf16" → the torch dtype.
- `image_alpha_fix(destination, source)`: `source` with as many channels as `destination` (alpha dropped, or
  added as 1).
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, TypeVar

import torch
from PIL import Image, ImageFile, UnidentifiedImageError

T = TypeVar("T")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def conditioning_set_values(conditioning: list[Any], values: dict[str, Any] | None = None,
                            append: bool = False) -> list[list[Any]]:
    out = []
    for embedding, options in conditioning:
        options = dict(options)
        for key, value in (values or {}).items():
            if append and options.get(key) is not None:
                value = options[key] + value
            options[key] = value
        out.append([embedding, options])
    return out


def pillow(fn: Callable[[T], Image.Image], arg: T) -> Image.Image:
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        return fn(arg)
    except (OSError, UnidentifiedImageError, ValueError):
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            return fn(arg)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def hasher() -> Callable[..., Any]:
    return hashlib.sha256


def string_to_torch_dtype(string: str) -> torch.dtype:
    if string not in DTYPES:
        raise ValueError(f"unknown dtype name {string!r}; expected one of {', '.join(DTYPES)}")
    return DTYPES[string]


def image_alpha_fix(destination: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    want, have = destination.shape[-1], source.shape[-1]
    if have > want:
        source = source[..., :want]
    elif have < want:
        pad = torch.ones((*source.shape[:-1], want - have), dtype=source.dtype, device=source.device)
        source = torch.cat((source, pad), dim=-1)
    return destination, source
