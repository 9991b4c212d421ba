"""The workflow document: ComfyUI's API format, parsed once at the boundary.

`{"<node id>": {"class_type": "KSampler", "inputs": {...}, "_meta": {...}}}`. An input value that is a
2-element list is a link `["<source id>", <output index>]`; `{"__value__": x}` is a constant that would
otherwise look like a link; anything else is a constant. `_meta` (editor positions, titles) and other extra keys
are kept and written back unchanged by `Workflow.to_api`.

Malformed input never raises anything but `WorkflowError` (an `executor.errors.PromptError`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from executor.errors import PromptError


class WorkflowError(PromptError):
    """The whole request is unusable (ComfyUI's top-level `error`; no node errors)."""


@dataclass(frozen=True, slots=True)
class Link:
    """A link to output `slot` of node `node` (both as written; validation checks them)."""

    node: str
    slot: Any

    def to_api(self) -> list[Any]:
        return [self.node, self.slot]


@dataclass(frozen=True, slots=True)
class Wrapped:
    """A constant written as `{"__value__": x}` (so that a list constant is not taken for a link)."""

    value: Any


@dataclass(slots=True)
class WorkflowNode:
    id: str
    class_type: str
    inputs: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def links(self) -> dict[str, Link]:
        return {k: v for k, v in self.inputs.items() if isinstance(v, Link)}


@dataclass
class Workflow:
    nodes: dict[str, WorkflowNode]

    def to_api(self) -> dict[str, Any]:
        """The API-format dict again, `_meta` and extra keys included."""
        out: dict[str, Any] = {}
        for nid, n in self.nodes.items():
            entry: dict[str, Any] = {"inputs": {k: _api_value(v) for k, v in n.inputs.items()},
                                     "class_type": n.class_type}
            if n.meta:
                entry["_meta"] = n.meta
            entry.update(n.extra)
            out[nid] = entry
        return out


class _ApiNode(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    class_type: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict, alias="_meta")


def _api_value(value: Any) -> Any:
    if isinstance(value, Link):
        return value.to_api()
    if isinstance(value, Wrapped):
        return {"__value__": value.value}
    return value


def _parse_value(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 2:
        return Link(str(value[0]) if isinstance(value[0], (str, int)) else value[0], value[1])
    if isinstance(value, dict) and set(value) == {"__value__"}:
        return Wrapped(value["__value__"])
    return value


def load_json(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WorkflowError("invalid_prompt", "Invalid JSON", str(exc)) from None


def not_an_object(doc: Any) -> WorkflowError:
    return WorkflowError("invalid_prompt", "A workflow must be a JSON object of nodes", f"got {type(doc).__name__}")


def parse_workflow(data: str | bytes | Mapping[str, Any]) -> Workflow:
    """Parse an API-format workflow from JSON text or an already decoded object."""
    obj = load_json(data) if isinstance(data, (str, bytes, bytearray)) else data
    if not isinstance(obj, Mapping):
        raise not_an_object(obj)
    if "nodes" in obj and "links" in obj and isinstance(obj.get("nodes"), list):
        raise WorkflowError("invalid_prompt", "This is a UI-format workflow; submit the API format",
                            "convert it first (the editor's save, or ComfyUI's 'Export (API)')")
    nodes: dict[str, WorkflowNode] = {}
    for raw_id, raw in obj.items():
        nid = str(raw_id)
        if not isinstance(raw, Mapping) or "class_type" not in raw:
            raise WorkflowError("invalid_prompt",
                                "Cannot execute because a node is missing the class_type property.",
                                f"Node ID '#{nid}'")
        try:
            parsed = _ApiNode.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise WorkflowError("invalid_prompt", f"Node '#{nid}' is malformed",
                                f"{where}: {first['msg']}") from None
        nodes[nid] = WorkflowNode(id=nid, class_type=parsed.class_type,
                                  inputs={k: _parse_value(v) for k, v in parsed.inputs.items()},
                                  meta=parsed.meta, extra=dict(parsed.model_extra or {}))
    return Workflow(nodes)
