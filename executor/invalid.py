"""A prompt that fails validation when its turn comes (files or nodes changed since it was queued, or it ran on a
worker that lacks a model): the failure, and the `execution_start` + `execution_error` events that report it as
the prompt's run, naming the first failing node."""
from __future__ import annotations

from dataclasses import dataclass

from executor.events import Event, ExecutionError, ExecutionStart
from executor.validate import ValidationReport
from executor.workflow import WorkflowError


@dataclass
class Invalid:
    """A queued prompt that no longer validates when its turn comes."""

    report: ValidationReport | None
    error: WorkflowError | None = None


def invalid_events(prompt_id: str, outcome: Invalid) -> list[Event]:
    """`execution_start` + `execution_error` for a prompt that failed validation when its turn came."""
    node_id, node_type, message = None, None, ""
    if outcome.report is not None:
        failing = outcome.report.node_errors()
        if failing:
            node_id = next(iter(failing))
            node_type = failing[node_id]["class_type"]
            first = failing[node_id]["errors"][0]
            message = f"{first['message']}: {first['details']}"
        elif outcome.report.error is not None:
            message = f"{outcome.report.error.message}: {outcome.report.error.details}"
    elif outcome.error is not None:
        message = f"{outcome.error.message}: {outcome.error.details}"
    return [ExecutionStart(prompt_id),
            ExecutionError(prompt_id=prompt_id, node_id=node_id, node_type=node_type, executed=[],
                           exception_message=message, exception_type="ValidationError", traceback=[],
                           current_inputs={}, current_outputs=[])]
