"""ComfyUI's error shape, once: an error object `{type, message, details, extra_info}` and the envelope
`{"error": <error object>, "node_errors": {<node id>: {"errors": [...], "dependent_outputs": [...],
"class_type": ...}}}` (protocol reference §1.3, §5.2).

`ErrorInfo` is one error object (one problem of one node, or the request's top-level error). `PromptError` is a
refused request carrying both parts; every refusal of a prompt (`WorkflowError`, `SeedError`, a failed validation,
the server's `ApiError`) is one, so the CLI, the HTTP API, the worker and `reproduce` report the same thing.
`format_errors` is the one text rendering of an envelope.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from executor.events import Event, ExecutionError, ExecutionStart


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """One ComfyUI error object: a stable `type` code, a human `message`, `details` and machine `extra_info`."""

    type: str
    message: str
    details: str = ""
    extra_info: dict[str, Any] = field(default_factory=dict)

    def to_comfy(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "details": self.details, "extra_info": self.extra_info}


class PromptError(Exception):
    """A refused prompt: the top-level error object and the per-node errors (`node_errors`, ComfyUI's shape)."""

    def __init__(self, type: str, message: str, details: str = "", extra_info: dict[str, Any] | None = None,
                 node_errors: dict[str, Any] | None = None) -> None:
        super().__init__(f"{message}: {details}" if details else message)
        self.type, self.message, self.details = type, message, details
        self.extra_info = extra_info or {}
        self.node_errors = node_errors or {}

    @property
    def info(self) -> ErrorInfo:
        return ErrorInfo(self.type, self.message, self.details, self.extra_info)

    def to_comfy(self) -> dict[str, Any]:
        """The top-level error object."""
        return self.info.to_comfy()

    def body(self) -> dict[str, Any]:
        """The whole envelope, as `POST /prompt` answers a refusal."""
        return {"error": self.to_comfy(), "node_errors": self.node_errors}


def node_entry(class_type: str, errors: list[ErrorInfo], dependent_outputs: list[str] | None = None
               ) -> dict[str, Any]:
    """One node's entry of `node_errors`."""
    return {"errors": [e.to_comfy() for e in errors], "dependent_outputs": list(dependent_outputs or []),
            "class_type": class_type}


def format_errors(body: Mapping[str, Any]) -> Iterator[str]:
    """The lines a person reads for an envelope: the top-level error, then one line per node error."""
    error = body.get("error")
    if error:
        yield f"error: {error['message']}"
        yield from (f"  {line}" for line in str(error.get("details") or "").splitlines() if line)
    for nid, entry in (body.get("node_errors") or {}).items():
        for err in entry["errors"]:
            yield f"node {nid} ({entry['class_type']}): {err['type']}: {err['message']}: {err['details']}"


def refusal_events(prompt_id: str, refusal: PromptError) -> list[Event]:
    """`execution_start` + `execution_error` for a queued prompt refused when its turn came (files or nodes changed
    since it was queued, or a worker lacks a model), naming the first failing node."""
    node_id, node_type, message = None, None, f"{refusal.message}: {refusal.details}"
    if refusal.node_errors:
        node_id, entry = next(iter(refusal.node_errors.items()))
        node_type, first = entry["class_type"], entry["errors"][0]
        message = f"{first['message']}: {first['details']}"
    return [ExecutionStart(prompt_id),
            ExecutionError(prompt_id=prompt_id, node_id=node_id, node_type=node_type, executed=[],
                           exception_message=message, exception_type="ValidationError", traceback=[],
                           current_inputs={}, current_outputs=[])]
