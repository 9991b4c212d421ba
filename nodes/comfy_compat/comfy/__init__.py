"""`comfy`: the part of ComfyUI's `comfy` package that node packs use without ComfyUI's models (reference §4.9).

Imported only as `comfy` (see `nodes.comfy_compat`). Submodules: `comfy.utils` (ProgressBar, state dicts, tiled
scaling), `comfy.model_management` (devices, memory, interrupts), `comfy.samplers` (the sampler and scheduler
lists, KSampler) and `comfy.sample` (noise, sampling). Any other `comfy.x` (sd, model_patcher, ldm, …) does not
exist here, so a pack that needs ComfyUI's model classes fails to import with ModuleNotFoundError, naming it.
The submodules are also reachable as attributes of `comfy` without importing them first, as packs that only
`import comfy` expect.
"""
from __future__ import annotations

import importlib
from types import ModuleType

SUBMODULES = ("utils", "model_management", "samplers", "sample")


def __getattr__(name: str) -> ModuleType:
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r} (latentloom provides {SUBMODULES})")
