"""Admission: from a submitted document to the prompt that is stored and run — one path for every entry point.

`admit` is what `POST /prompt`, `main.py run`/`validate`, `main.py reproduce` and the worker (again, when a
queued prompt's turn comes) call. In order:

1. A ComfyUI UI-format document (`nodes`/`links`) goes through the one converter (`ui_format.ui_to_api`); the
   original is kept as `extra_data["extra_pnginfo"]["workflow"]`, so saved images carry it as ComfyUI's do.
2. Models a loader names but this machine lacks (or has with other bytes) are swapped for the file with the
   recorded sha256 (`nodes.identity.resolve_models`); this may hash model files the first time, so servers call
   `admit` off their event loop.
3. Seeds are resolved (`executor.seeds.resolve_seeds`) with the caller's counters: the server's persist in its
   store, a one-off run starts each stream at the submitted value; a prompt that was admitted before (a queued
   or reproduced one) passes none, so the seeds that ran stay.
4. The API-format prompt is parsed and validated.

Every refusal is one `executor.errors.PromptError` carrying ComfyUI's `error` and `node_errors`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from executor.errors import PromptError
from executor.seeds import SeedCounters, resolve_seeds
from executor.ui_format import is_ui_format, ui_to_api
from executor.validate import ValidationReport, validate
from executor.workflow import not_an_object, parse_workflow
from nodes.api import Environment
from nodes.identity import ModelResolution, resolve_models
from nodes.registry import Registry


@dataclass
class Prepared:
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    models: ModelResolution
    notes: list[str] = field(default_factory=list)  # what the UI-format conversion dropped or changed


@dataclass
class Admitted:
    """A prompt that may run: `prompt` (converted, models swapped, seeds resolved) is what is stored and run."""

    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    report: ValidationReport  # ok; may still list failing outputs (ComfyUI runs the others)
    notes: list[str] = field(default_factory=list)  # conversion notes, then models found by hash or missing


def admit(doc: Any, registry: Registry, env: Environment, *, extra_data: Mapping[str, Any] | None = None,
          seeds: SeedCounters | None = None, client_id: str = "", targets: list[str] | None = None,
          known_models: Mapping[tuple[str, str], str] | None = None) -> Admitted:
    """Admit a submitted document (API or UI format, already decoded from JSON) or raise `PromptError`.

    `seeds`: the counters of increment/decrement streams; None leaves seeds as they are (a prompt admitted
    before). `client_id` names the submitter's seed streams. `targets`: only these output nodes (ComfyUI's
    `partial_execution_targets`). `known_models`: `(folder, name) → sha256` recorded outside the prompt (an
    image's `latentloom` chunk), to find renamed models by hash.
    """
    prepared = prepare(doc, registry, env, extra_data, known_models)
    prompt = prepared.prompt
    if seeds is not None:
        prompt = resolve_seeds(prompt, registry, seeds, client_id=client_id)
    report = validate(parse_workflow(prompt), registry, env, targets)
    if report.error is not None:
        error = report.error
        raise PromptError(error.type, error.message, error.details, error.extra_info,
                          prepared.models.annotate(report.node_errors()))
    return Admitted(prompt, prepared.extra_data, report, prepared.notes + prepared.models.messages())


def prepare(doc: Any, registry: Registry, env: Environment, extra_data: Mapping[str, Any] | None = None,
            known_models: Mapping[tuple[str, str], str] | None = None) -> Prepared:
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
        raise not_an_object(doc)
    models = resolve_models(doc, env, known_models)
    return Prepared(models.prompt, extra, models, notes)
