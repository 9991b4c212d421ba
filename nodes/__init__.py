"""latentloom's nodes: the node API, the registry, plugins and the built-in nodes (see ARCHITECTURE.md).

This package is also the `nodes` that ComfyUI packs import (`from nodes import MAX_RESOLUTION`). Those names are
provided lazily (module `__getattr__`), so importing this package stays cheap and has no side effects:
- `MAX_RESOLUTION` (16384): the largest width or height the image and latent nodes accept.
Not provided: `NODE_CLASS_MAPPINGS` and ComfyUI's node classes (`nodes.SaveImage`, `nodes.KSampler`, …). Our
built-in nodes are declarations of another shape, whose values (MODEL, CLIP, VAE handles) are not ComfyUI's
objects, so a mapping of "ComfyUI classes" here could only pretend; a pack that needs them fails to import, clearly.
"""
from __future__ import annotations

from typing import Any

NOT_PROVIDED = ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS")


def __getattr__(name: str) -> Any:
    if name == "MAX_RESOLUTION":
        from nodes.types import MAX_RESOLUTION

        return MAX_RESOLUTION
    if name in NOT_PROVIDED:
        raise AttributeError(f"latentloom does not provide nodes.{name}: its built-in nodes are not ComfyUI classes")
    raise AttributeError(f"module 'nodes' has no attribute {name!r}")
