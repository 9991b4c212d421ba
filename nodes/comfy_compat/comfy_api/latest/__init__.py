"""`comfy_api.latest`: ComfyUI's V3 node API (reference §4.10): `ComfyExtension`, `io` (schemas, types, `ComfyNode`,
`NodeOutput`), `ui` (UI results).

A pack exports `comfy_entrypoint()` (sync or async) returning a `ComfyExtension` whose async `get_node_list()`
lists `io.ComfyNode` classes. The plugin loader registers each under its schema's `node_id` through
`io.v1_class`: the V1 class ComfyUI itself synthesises from a schema, adapted like any V1 class, so V1 and V3 nodes
validate, cache and run identically (lazy inputs and expansion included).
"""
from __future__ import annotations

from . import _io as io
from . import _ui as ui


class ComfyExtension:
    """A pack's V3 entry: `on_load()` runs first, then `get_node_list()` gives the node classes."""

    async def on_load(self) -> None:
        return None

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        raise NotImplementedError("a ComfyExtension must implement get_node_list()")


__all__ = ["ComfyExtension", "io", "ui"]
