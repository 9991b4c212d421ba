"""From a submitted document to the prompt that is validated and run: one path for the CLI and `POST /prompt`.

1. A ComfyUI UI-format document (`nodes`/`links`) goes through the one converter (`ui_format.ui_to_api`); the
   original is kept as `extra_data["extra_pnginfo"]["workflow"]`, so saved images carry it as ComfyUI's do.
2. Models a loader names but this machine lacks (or has with other bytes) are swapped for the file with the
   recorded sha256 (`nodes.identity.resolve_models`); this may hash model files the first time, so servers call
   `prepare` off their event loop.
Seeds are resolved afterwards by the caller (`executor.seeds.resolve_seeds`) with its own counters: the server's
persist in its store, a one-off run starts each stream at the submitted value.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from executor.ui_format import is_ui_format, ui_to_api
from nodes.api import Environment
from nodes.identity import ModelResolution, resolve_models
from nodes.registry import Registry


@dataclass
class Prepared:
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    models: ModelResolution
    notes: list[str] = field(default_factory=list)  # what the UI-format conversion dropped or changed


def prepare(doc: Any, registry: Registry, env: Environment,
            extra_data: Mapping[str, Any] | None = None) -> Prepared:
    """Convert (UI format) and resolve models by hash. Raises `WorkflowError` for an unconvertible document."""
    extra = dict(extra_data or {})
    notes: list[str] = []
    if is_ui_format(doc):
        conversion = ui_to_api(doc, registry, env)
        notes = list(conversion.notes)
        pnginfo = dict(extra.get("extra_pnginfo") or {})
        pnginfo.setdefault("workflow", doc)
        extra["extra_pnginfo"] = pnginfo
        doc = conversion.prompt
    if not isinstance(doc, Mapping):
        return Prepared(doc, extra, ModelResolution(doc), notes)  # parse_workflow names the problem
    models = resolve_models(doc, env)
    return Prepared(models.prompt, extra, models, notes)
