"""`execution`: the basics of ComfyUI's executor module that packs read (imported only under that name).

Provided: `ExecutionResult` (SUCCESS, FAILURE, PENDING), `MAXIMUM_HISTORY_SIZE`, `full_type_name(cls)`,
`format_value(x)`. Not provided: ComfyUI's executor itself (`PromptExecutor`, `PromptQueue`, `get_input_data`,
`validate_prompt`, …): latentloom's executor is its own, so a pack that wraps or replaces those fails clearly (an
AttributeError naming what is missing) instead of patching something that never runs.
"""
from __future__ import annotations

import enum
from typing import Any

MAXIMUM_HISTORY_SIZE = 10000


class ExecutionResult(enum.Enum):
    SUCCESS = 0
    FAILURE = 1
    PENDING = 2


def full_type_name(klass: type) -> str:
    """`module.QualName` (the bare name for builtins), as ComfyUI reports exception types."""
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else f"{module}.{klass.__qualname__}"


def format_value(x: Any) -> Any:
    """A value as ComfyUI shows it in error reports: JSON scalars as they are, anything else as a string."""
    if x is None or isinstance(x, (int, float, bool, str)):
        return x
    return str(x)


def __getattr__(name: str) -> Any:
    raise AttributeError(f"latentloom does not provide execution.{name}: its executor is not ComfyUI's")
