"""latentloom's nodes: the node API, the registry, plugins and the built-in nodes (see ARCHITECTURE.md).

This package is also the `nodes` that ComfyUI packs import. Those names are provided lazily (module `__getattr__`),
so importing this package stays cheap and has no side effects:
- `MAX_RESOLUTION` (16384): the largest width or height the image and latent nodes accept.
- ComfyUI's core node classes by name (`nodes.SaveImage`, `nodes.KSampler`, `nodes.LoraLoader`, …): the V1 face of
  every built-in node (`nodes.comfy_face`), and `NODE_CLASS_MAPPINGS` / `NODE_DISPLAY_NAME_MAPPINGS` listing them.
- `common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, …)`.
Only CamelCase names are looked up among the node classes, so `from nodes import api` never builds them.
"""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "MAX_RESOLUTION":
        from nodes.types import MAX_RESOLUTION

        return MAX_RESOLUTION
    if name in ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "common_ksampler") or name[:1].isupper():
        from nodes import comfy_face

        if name == "NODE_CLASS_MAPPINGS":
            return comfy_face.core_classes()
        if name == "NODE_DISPLAY_NAME_MAPPINGS":
            return comfy_face.display_names()
        if name == "common_ksampler":
            return comfy_face.common_ksampler
        classes = comfy_face.core_classes()
        if name in classes and classes[name].__module__ == "nodes":
            return classes[name]
    raise AttributeError(f"module 'nodes' has no attribute {name!r}")
