"""The built-in nodes, one module per category. `builtin_registry()` is the registry a server or CLI starts from."""
from __future__ import annotations

import importlib

from nodes.registry import Registry

BUILTIN_MODULES = ("nodes.builtin.primitives", "nodes.builtin.utils", "nodes.builtin.image", "nodes.builtin.latent",
                   "nodes.builtin.loaders", "nodes.builtin.conditioning")


def builtin_registry() -> Registry:
    registry = Registry()
    for name in BUILTIN_MODULES:
        registry.add_module(importlib.import_module(name))
    return registry
