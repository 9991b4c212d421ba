"""Typed events, one class per ComfyUI websocket message: those of a run, and the server's `status` and
`feature_flags`.

Each event's fields are exactly the `data` of the websocket message named by its `type`, so the server sends
`{"type": e.type, "data": e.data()}` and nothing else translates. `Preview` is the exception: it carries an image
the server encodes into a binary frame. The executor publishes events to subscribers and knows nothing of HTTP.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Event:
    type: ClassVar[str]

    def data(self) -> dict[str, Any]:
        """The websocket message's `data` (shallow: events are frozen and their lists are not reused)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def message(self) -> dict[str, Any]:
        return {"type": self.type, "data": self.data()}


@dataclass(frozen=True, slots=True)
class ExecutionStart(Event):
    type: ClassVar[str] = "execution_start"
    prompt_id: str
    timestamp: int = field(default_factory=now_ms)


@dataclass(frozen=True, slots=True)
class ExecutionCached(Event):
    type: ClassVar[str] = "execution_cached"
    nodes: list[str]
    prompt_id: str
    timestamp: int = field(default_factory=now_ms)


@dataclass(frozen=True, slots=True)
class Executing(Event):
    """A node is about to run; `node=None` is the final "done" signal of a prompt. Without `prompt_id` it is
    what a reconnecting socket is told of its running prompt: ComfyUI's bare `{"node": …}`."""

    type: ClassVar[str] = "executing"
    node: str | None
    prompt_id: str | None
    display_node: str | None = None

    def data(self) -> dict[str, Any]:
        if self.node is None:
            return {"node": None, "prompt_id": self.prompt_id}
        if self.prompt_id is None:
            return {"node": self.node}
        return {"node": self.node, "display_node": self.display_node or self.node, "prompt_id": self.prompt_id}


@dataclass(frozen=True, slots=True)
class Progress(Event):
    type: ClassVar[str] = "progress"
    value: int
    max: int
    prompt_id: str
    node: str


@dataclass(frozen=True, slots=True)
class ProgressState(Event):
    """Every node of the prompt that is no longer pending, with its progress (see `executor.progress`)."""

    type: ClassVar[str] = "progress_state"
    prompt_id: str
    nodes: dict[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Preview(Event):
    """A live preview image (a PIL image) of the running node; sent as a binary frame."""

    type: ClassVar[str] = "preview"
    image: Any
    prompt_id: str
    node: str

    def data(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id, "node_id": self.node}


@dataclass(frozen=True, slots=True)
class Executed(Event):
    type: ClassVar[str] = "executed"
    node: str
    output: dict[str, list[Any]] | None
    prompt_id: str
    display_node: str | None = None

    def data(self) -> dict[str, Any]:
        return {"node": self.node, "display_node": self.display_node or self.node, "output": self.output,
                "prompt_id": self.prompt_id}


@dataclass(frozen=True, slots=True)
class ExecutionSuccess(Event):
    type: ClassVar[str] = "execution_success"
    prompt_id: str
    timestamp: int = field(default_factory=now_ms)


@dataclass(frozen=True, slots=True)
class ExecutionError(Event):
    type: ClassVar[str] = "execution_error"
    prompt_id: str
    node_id: str
    node_type: str
    executed: list[str]
    exception_message: str
    exception_type: str
    traceback: list[str]
    current_inputs: dict[str, list[Any]]
    current_outputs: list[str]
    timestamp: int = field(default_factory=now_ms)


@dataclass(frozen=True, slots=True)
class ExecutionInterrupted(Event):
    type: ClassVar[str] = "execution_interrupted"
    prompt_id: str
    node_id: str
    node_type: str
    executed: list[str]
    timestamp: int = field(default_factory=now_ms)


@dataclass(frozen=True, slots=True)
class Status(Event):
    """The queue size, to every socket when it changes; a socket's first message also carries its id (`sid`)."""

    type: ClassVar[str] = "status"
    queue_remaining: int
    sid: str | None = None

    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": self.queue_remaining}}}
        if self.sid is not None:
            data["sid"] = self.sid
        return data


@dataclass(frozen=True, slots=True)
class FeatureFlags(Event):
    """The server's answer to a client's first `feature_flags` message."""

    type: ClassVar[str] = "feature_flags"
    supports_preview_metadata: bool
    max_upload_size: float
