"""The built-in nodes, one module per category. `builtin_registry()` holds them alone; `full_registry(paths)` adds the
plugins, and is what a server or CLI starts from."""
from __future__ import annotations

import importlib

from nodes.paths import DataPaths
from nodes.plugins import Plugins, load_plugins
from nodes.registry import Registry

BUILTIN_MODULES = ("nodes.builtin.primitives", "nodes.builtin.utils", "nodes.builtin.image", "nodes.builtin.latent",
                   "nodes.builtin.loaders", "nodes.builtin.conditioning", "nodes.builtin.sampling",
                   "nodes.builtin.inpaint", "nodes.builtin.scale", "nodes.builtin.conditioning_tools",
                   "nodes.builtin.mask", "nodes.builtin.image_tools", "nodes.builtin.latent_tools",
                   "nodes.builtin.custom_sampling", "nodes.builtin.postprocessing", "nodes.builtin.model_patches",
                   "nodes.builtin.upscale_model", "nodes.builtin.preprocessors", "nodes.builtin.vision")


def builtin_registry() -> Registry:
    registry = Registry()
    for name in BUILTIN_MODULES:
        registry.add_module(importlib.import_module(name))
    return registry


def full_registry(paths: DataPaths, *, plugins: bool = True, entry_points: bool = True) -> tuple[Registry, Plugins]:
    """Built-ins, then every plugin (custom_nodes/ of the data folder, then installed entry points).

    The second value reports each plugin's nodes, version, status and error (`nodes.plugins`). `plugins=False`
    loads none (the CLI's `--disable-plugins`).
    """
    registry = builtin_registry()
    if not plugins:
        return registry, Plugins()
    return registry, load_plugins(registry, paths, entry_points=entry_points)
