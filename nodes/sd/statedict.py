"""Reading a single-file checkpoint's tensors: names and shapes first, data only when asked, memory-mapped.

A safetensors file is an 8-byte little-endian header length, a JSON header (tensor name -> dtype, shape, byte
range; plus an optional "__metadata__" of strings) and the raw data. Detection needs only names and shapes, so
`open_state_dict` parses the header itself (cheap, and it lets us say precisely why a file is unreadable or
truncated) and hands out tensors through safetensors' `safe_open`, whose tensors are views of a memory map of
the file: assigning them into a module makes no copy in RAM.

Pickle checkpoints (.ckpt/.pt/...) can run code when unpickled, so they are read only when the caller opts in
(`allow_pickle=True`), and then with `torch.load(weights_only=True)`; weights that training code saved under a
top-level key are unwrapped (`WRAPPER_KEYS`: Lightning's "state_dict", BasicSR's "params_ema"/"params", which
ESRGAN-family upscale models use).

Public API:
- `StateDict`: `.path`, `.shapes` (name -> shape), `.metadata` (str -> str),
  `.tensors(keys=None, *, dtype=None) -> dict` (dtype: floating tensors converted while reading).
- `open_state_dict(path, *, allow_pickle=False) -> StateDict`, raising `CheckpointError` with the reason.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from nodes.sd.errors import CheckpointError

WRAPPER_KEYS = ("state_dict", "params_ema", "params")  # the first present wins (EMA weights before raw ones)
PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".pt2", ".bin", ".pkl"}
# A header larger than this is not a checkpoint header (real SDXL files have ~200 KB headers).
_MAX_HEADER_BYTES = 100 * 1024 * 1024
# Elements converted per mapping of the file (64 Mi: 128 MiB of fp16 source at a time).
_CONVERT_BATCH_ELEMENTS = 64 * 1024 * 1024


@dataclass
class StateDict:
    """A checkpoint's tensor names and shapes; the tensors themselves are read on demand."""

    path: Path
    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str] = field(default_factory=dict)
    # Only for pickle checkpoints, which cannot be read lazily: the tensors already in memory.
    _loaded: dict[str, torch.Tensor] | None = None

    def tensors(
        self, keys: Iterable[str] | None = None, *, dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        """The tensors named by `keys` (all when None), memory-mapped for safetensors files.

        dtype: convert floating-point tensors to it while reading (tensors already of that dtype stay mapped).
        The conversion goes batch by batch, each batch through its own mapping of the file that is released
        once converted: the file's pages read so far would otherwise stay resident next to the converted
        copies (a 2 GB fp16 file loaded as fp32 would peak at 6 GB instead of 4).
        """
        wanted = list(self.shapes) if keys is None else list(keys)
        if self._loaded is not None:
            return {key: _cast(self._loaded[key], dtype) for key in wanted}
        batches = [wanted] if dtype is None else list(self._batches(wanted))
        out: dict[str, torch.Tensor] = {}
        try:
            for batch in batches:
                with safe_open(str(self.path), framework="pt", device="cpu") as handle:
                    out.update((key, _cast(handle.get_tensor(key), dtype)) for key in batch)
        except Exception as exc:  # safetensors raises its own error types; the caller needs ours
            raise CheckpointError(self.path, f"could not read tensors ({exc})") from exc
        return out

    def _batches(self, keys: list[str]) -> Iterable[list[str]]:
        batch: list[str] = []
        count = 0
        for key in keys:
            batch.append(key)
            count += math.prod(self.shapes[key])
            if count >= _CONVERT_BATCH_ELEMENTS:
                yield batch
                batch, count = [], 0
        if batch:
            yield batch


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    if dtype is None or not tensor.is_floating_point():
        return tensor
    return tensor.to(dtype)


def open_state_dict(path: str | Path, *, allow_pickle: bool = False) -> StateDict:
    """Open a single-file checkpoint: safetensors always, pickle formats only with `allow_pickle`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise CheckpointError(
                path,
                "pickle checkpoints can run code when loaded; loading one needs the explicit opt-in "
                "(allow_pickle=True), or convert it to .safetensors",
            )
        return _open_pickle(path)
    shapes, metadata = read_safetensors_header(path)
    return StateDict(path=path, shapes=shapes, metadata=metadata)


def read_safetensors_header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Names -> shapes and the metadata of a safetensors file, checking that the data is all there."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CheckpointError(path, "not a safetensors file (shorter than a header)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > min(size - 8, _MAX_HEADER_BYTES):
            raise CheckpointError(path, "not a safetensors file (no valid header)")
        raw = handle.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(path, "not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "not a safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    shapes: dict[str, tuple[int, ...]] = {}
    data_end = 0
    for name, info in header.items():
        try:
            shapes[name] = tuple(int(d) for d in info["shape"])
            data_end = max(data_end, int(info["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise CheckpointError(path, f"not a safetensors file (bad header entry {name!r})") from None
    if 8 + header_len + data_end > size:
        raise CheckpointError(
            path, f"truncated file ({size} bytes, the header describes {8 + header_len + data_end})"
        )
    return shapes, {str(k): str(v) for k, v in metadata.items()}


def _open_pickle(path: Path) -> StateDict:
    try:
        # mmap keeps the weights in the file's pages (zip-format files only; the legacy format cannot map).
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        loaded = None
    except Exception as exc:
        raise CheckpointError(path, f"could not read pickle checkpoint ({type(exc).__name__}: {exc})") from exc
    if loaded is None:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(path, f"could not read pickle checkpoint ({type(exc).__name__}: {exc})") from exc
    wrapper = next((key for key in WRAPPER_KEYS if isinstance(loaded, dict) and isinstance(loaded.get(key), dict)),
                   None)
    if wrapper is not None:
        loaded = loaded[wrapper]
    if not isinstance(loaded, dict):
        raise CheckpointError(path, f"pickle checkpoint holds a {type(loaded).__name__}, not a state dict")
    tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    return StateDict(path=path, shapes=shapes, _loaded=tensors)
