"""Content-addressed output cache.

A node's key is the sha256 of canonical JSON over what determines its result: node type and version, constant
inputs, the keys (and output slots) of the nodes it links to, a fingerprint for nodes that read the outside world,
and the node id only for nodes declared not idempotent. Keys are Merkle-style — each built from its parents'
keys — so computing them is linear in the graph, and identical work hits the cache whatever the node ids,
workflow or client. Never Python's `hash()`: keys must agree across processes.

The memory tier holds `CacheEntry`s up to a byte budget, evicting least-recently-used entries. Sizes are
estimated from tensors and arrays (their `nbytes`) and containers; model handles are owned and budgeted by the
model manager, not here.
"""
from __future__ import annotations

import hashlib
import json
import sys
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from executor.workflow import Link


@dataclass(slots=True)
class CacheEntry:
    """Outputs of one node run: per output slot, the list of items (ComfyUI list semantics), plus its UI."""

    outputs: list[list[Any]]
    ui: dict[str, list[Any]] | None
    nbytes: int


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)


def node_key(class_type: str, version: str, constants: dict[str, Any], links: dict[str, Link],
             upstream: dict[str, str], fingerprint: Any = None, node_id: str | None = None) -> str:
    """The cache key of one node; `upstream` maps source node ids to their keys."""
    linked = {name: [upstream[link.node], int(link.slot)] for name, link in links.items()}
    doc = [class_type, version, constants, linked, fingerprint, node_id]
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def estimate_nbytes(value: Any, _depth: int = 0) -> int:
    """Bytes held by a value: tensor/array payloads plus a small overhead for everything else."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value.nelement() * value.element_size()
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return int(value.nbytes)
    if _depth < 6 and isinstance(value, (list, tuple)):
        return 64 + sum(estimate_nbytes(v, _depth + 1) for v in value)
    if _depth < 6 and isinstance(value, dict):
        return 64 + sum(estimate_nbytes(v, _depth + 1) for v in value.values())
    if isinstance(value, (str, bytes)):
        return 49 + len(value)
    return 32


class MemoryCache:
    """LRU cache of `CacheEntry`s bounded in bytes. An entry bigger than the budget is not kept."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.total_bytes = 0
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()

    def get(self, key: str) -> CacheEntry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: CacheEntry) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.total_bytes -= old.nbytes
        if entry.nbytes > self.max_bytes:
            return
        self._entries[key] = entry
        self.total_bytes += entry.nbytes
        while self.total_bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.total_bytes -= evicted.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self.total_bytes = 0

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)
