"""The disk tier of the output cache: serialisable node outputs that survive restarts.

What is kept: an entry whose outputs are made only of tensors, strings, numbers, booleans, None, lists, tuples and
dicts with string keys — latents, conditioning, images, masks, primitives — with its UI dict. Model handles and
other objects are never written (their nodes simply run again). Each entry is one safetensors file named by its
cache key (`<key>.safetensors`, hex only, so no path can be smuggled in); the tensors are stored as tensors and
the structure around them as JSON in the file's metadata. Loading never unpickles anything.

Rules:
- Writes are atomic (a temporary file, then a rename): a crash leaves the old entry or none, never half of one.
- The tier is bounded in bytes; the least recently used files go first (use time = file mtime, touched on read).
  An entry bigger than the whole budget is not written.
- A file that cannot be read back (truncated, edited, from an incompatible version) is a miss and is removed.
- Tensors are read back onto the CPU, in their stored dtype; nodes move them where they need them.

`TieredCache` puts the memory tier (`MemoryCache`) in front: a disk hit is promoted to memory; `clear()` empties
the memory tier only (`POST /free`), which is what the disk tier is for.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from executor.cache import CacheEntry, MemoryCache, estimate_nbytes

log = logging.getLogger(__name__)
FOLDER = Path("cache") / "outputs"  # under the data folder
FORMAT = 1
META_KEY = "latentloom.cache"
KEY_RE = re.compile(r"^[0-9a-f]{64}$")
SUFFIX = ".safetensors"


class NotSerialisable(TypeError):
    """A value the disk tier does not write."""


def encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """`value` as JSON, each tensor replaced by `{"$t": name}` and stored in `tensors`."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        name = str(len(tensors))
        # a copy on the CPU: safetensors refuses tensors sharing storage, and the cached one must not change
        tensors[name] = value.detach().to("cpu", copy=True).contiguous()
        return {"$t": name}
    if isinstance(value, list):
        return [encode(item, tensors) for item in value]
    if isinstance(value, tuple) and type(value) is tuple:
        return {"$tuple": [encode(item, tensors) for item in value]}
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {"$dict": {key: encode(item, tensors) for key, item in value.items()}}
    raise NotSerialisable(type(value).__qualname__)


def decode(doc: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(doc, list):
        return [decode(item, tensors) for item in doc]
    if isinstance(doc, dict):
        if "$t" in doc:
            return tensors[doc["$t"]]
        if "$tuple" in doc:
            return tuple(decode(item, tensors) for item in doc["$tuple"])
        return {key: decode(item, tensors) for key, item in doc["$dict"].items()}
    return doc


class DiskCache:
    """Entries as files under `root`, bounded by `max_bytes`."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}
        for path in self.root.glob(f"*{SUFFIX}"):
            key = path.name.removesuffix(SUFFIX)
            if KEY_RE.match(key):
                self._sizes[key] = path.stat().st_size
        self.total_bytes = sum(self._sizes.values())
        self._evict()

    def _path(self, key: str) -> Path:
        if not KEY_RE.match(key):
            raise ValueError(f"not a cache key: {key!r}")
        return self.root / f"{key}{SUFFIX}"

    def __contains__(self, key: object) -> bool:
        return key in self._sizes

    def __len__(self) -> int:
        return len(self._sizes)

    def get(self, key: str) -> CacheEntry | None:
        if key not in self._sizes:
            return None
        path = self._path(key)
        try:
            with safe_open(path, framework="pt") as stored:
                doc = json.loads((stored.metadata() or {})[META_KEY])
                tensors = {name: stored.get_tensor(name) for name in stored.keys()}
            if doc["format"] != FORMAT:
                raise ValueError(f"format {doc['format']}")
            outputs = decode(doc["outputs"], tensors)
            os.utime(path)
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
            log.warning("dropping unreadable cache file %s: %s", path.name, exc)
            self._remove(key)
            return None
        return CacheEntry(outputs, doc["ui"], estimate_nbytes(outputs))

    def put(self, key: str, entry: CacheEntry) -> bool:
        """Write `entry` if it is serialisable and fits; True when it was written."""
        tensors: dict[str, torch.Tensor] = {}
        try:
            outputs = encode(entry.outputs, tensors)
            meta = json.dumps({"format": FORMAT, "outputs": outputs, "ui": entry.ui}, allow_nan=True)
        except (NotSerialisable, TypeError, ValueError):
            return False
        size = sum(t.nelement() * t.element_size() for t in tensors.values()) + len(meta)
        if size > self.max_bytes:
            return False
        path = self._path(key)
        temporary = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
        try:
            save_file(tensors, temporary, metadata={META_KEY: meta})
            os.replace(temporary, path)
        except Exception as exc:  # a full disk or an odd dtype must never fail the node that produced the value
            log.warning("could not write cache file %s: %s", path.name, exc)
            temporary.unlink(missing_ok=True)
            return False
        with self._lock:
            self.total_bytes += path.stat().st_size - self._sizes.get(key, 0)
            self._sizes[key] = path.stat().st_size
        self._evict()
        return True

    def _evict(self) -> None:
        with self._lock:
            if self.total_bytes <= self.max_bytes:
                return
            by_use = sorted(self._sizes, key=lambda k: self._mtime(k))
        for key in by_use:
            if self.total_bytes <= self.max_bytes:
                break
            self._remove(key)

    def _mtime(self, key: str) -> float:
        try:
            return self._path(key).stat().st_mtime
        except OSError:
            return 0.0

    def _remove(self, key: str) -> None:
        with self._lock:
            size = self._sizes.pop(key, None)
            if size is not None:
                self.total_bytes -= size
        self._path(key).unlink(missing_ok=True)


class TieredCache:
    """Memory first, then disk; the executor's cache interface (`get`, `put`, `in`, `clear`, `len`)."""

    def __init__(self, memory: MemoryCache, disk: DiskCache) -> None:
        self.memory = memory
        self.disk = disk

    def __contains__(self, key: object) -> bool:
        return key in self.memory or key in self.disk

    def __len__(self) -> int:
        return len(self.memory)

    def get(self, key: str) -> CacheEntry | None:
        entry = self.memory.get(key)
        if entry is None:
            entry = self.disk.get(key)
            if entry is not None:
                self.memory.put(key, entry)
        return entry

    def put(self, key: str, entry: CacheEntry) -> None:
        self.memory.put(key, entry)
        if key not in self.disk:
            self.disk.put(key, entry)

    def clear(self) -> None:
        self.memory.clear()


def output_cache(memory_bytes: int, folder: Path, disk_bytes: int) -> MemoryCache | TieredCache:
    """The executor's cache: memory only when `disk_bytes` is 0, else memory in front of `folder` on disk."""
    memory = MemoryCache(memory_bytes)
    return TieredCache(memory, DiskCache(folder, disk_bytes)) if disk_bytes > 0 else memory
