"""The prompt queue and the run history: what they hold and the interface every store implements.

Policy (ComfyUI's, §1.4–§1.6 of the protocol reference, plus persistence):
- A queue item is `[number, prompt_id, prompt, extra_data, outputs_to_execute]` on the wire (`QueueItem`).
  Items run one at a time in ascending `number`; equal numbers run in the order they were queued (ComfyUI
  breaks ties by prompt id, which makes equal-number order depend on random ids).
- `number` is the caller's when given; otherwise the next value of a counter that survives restarts, negated
  for `front` so that the latest "queue at front" runs first.
- An item is *pending* until the worker claims it, then *running* until it finishes; then it leaves the queue
  and its `HistoryEntry` is written (completion order, trimmed to the newest `history_max` entries).
- A prompt id is unique among pending and running items (a reused id is refused rather than run twice);
  finishing a prompt whose id is already in the history replaces that entry, as in ComfyUI.
- `queue_remaining` = pending + running.
- After a crash, items left *running* are either re-queued (default) or written to the history as failed
  with the reason (`recover`).
- Secrets the frontend puts in `extra_data` (`SECRET_KEYS`) never leave the store: queue listings and history
  entries come without them.

Stores: `executor.store_sqlite.SqliteQueueStore` (the default, a file in the data folder). The server calls a
store from one thread (its event loop); implementations need not lock.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Literal

SECRET_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
HISTORY_MAX = 10_000
RecoverPolicy = Literal["requeue", "fail"]
RESTART_REASON = "the server stopped while this prompt was running"


class DuplicatePromptError(ValueError):
    """A prompt id that is already pending or running."""


def public_extra_data(extra_data: dict[str, Any]) -> dict[str, Any]:
    """`extra_data` without the secrets a client sent for third-party API nodes."""
    return {k: v for k, v in extra_data.items() if k not in SECRET_KEYS}


@dataclass
class QueueItem:
    number: int | float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)

    @property
    def client_id(self) -> str | None:
        cid = self.extra_data.get("client_id")
        return cid if isinstance(cid, str) and cid else None

    def to_comfy(self) -> list[Any]:
        """The wire form: `[number, prompt_id, prompt, extra_data (no secrets), outputs_to_execute]`."""
        return [self.number, self.prompt_id, self.prompt, public_extra_data(self.extra_data), list(self.outputs)]

    def to_record(self) -> list[Any]:
        """The stored form: the wire form with the secrets (a queued prompt may need them when it runs)."""
        return [self.number, self.prompt_id, self.prompt, self.extra_data, list(self.outputs)]

    @classmethod
    def from_record(cls, row: list[Any]) -> QueueItem:
        number, prompt_id, prompt, extra_data, outputs = row
        return cls(number, prompt_id, prompt, extra_data, outputs)


@dataclass
class HistoryEntry:
    """One finished prompt, as `GET /history` shows it."""

    item: QueueItem
    status_str: Literal["success", "error"]
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        return self.status_str == "success"

    def to_comfy(self) -> dict[str, Any]:
        return {
            "prompt": self.item.to_comfy(),
            "outputs": self.outputs,
            "status": {"status_str": self.status_str, "completed": self.completed,
                       "messages": [[kind, data] for kind, data in self.messages]},
            "meta": {nid: {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                     for nid in self.outputs},
        }


class QueueStore(abc.ABC):
    """Pending and running prompts, the finished ones, and the seed counters, kept across restarts."""

    # --- queue -------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def next_number(self, front: bool = False) -> int:
        """Take the next queue number from the persistent counter (negated when `front`)."""

    @abc.abstractmethod
    def put(self, item: QueueItem) -> None:
        """Queue an item; raises `DuplicatePromptError` when its id is pending or running."""

    @abc.abstractmethod
    def claim(self) -> QueueItem | None:
        """Mark the first pending item running and return it (None when nothing is pending)."""

    @abc.abstractmethod
    def requeue(self, prompt_id: str) -> bool:
        """Put a running item back to pending (a clean shutdown interrupted it); keeps its number."""

    @abc.abstractmethod
    def finish(self, entry: HistoryEntry) -> None:
        """Remove the running item and write its history entry, in one transaction."""

    @abc.abstractmethod
    def pending(self) -> list[QueueItem]:
        """Pending items in the order they will run."""

    @abc.abstractmethod
    def running(self) -> list[QueueItem]: ...

    @abc.abstractmethod
    def remaining(self) -> int:
        """Pending + running (ComfyUI's `queue_remaining`)."""

    @abc.abstractmethod
    def delete_pending(self, prompt_ids: list[str]) -> int:
        """Drop pending items with these ids (running ones are untouched); returns how many went."""

    @abc.abstractmethod
    def clear_pending(self) -> int: ...

    @abc.abstractmethod
    def recover(self, policy: RecoverPolicy) -> list[str]:
        """At start: items left running by a process that died are re-queued or failed; returns their ids."""

    # --- history -----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def history(self, max_items: int | None = None, offset: int | None = None) -> dict[str, dict[str, Any]]:
        """Finished prompts in completion order: the last `max_items`, or `max_items` from `offset`."""

    @abc.abstractmethod
    def history_entry(self, prompt_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def delete_history(self, prompt_ids: list[str]) -> int: ...

    @abc.abstractmethod
    def clear_history(self) -> int: ...

    # --- seed counters (see executor.seeds) --------------------------------------------------------------------
    @abc.abstractmethod
    def advance_seed(self, stream: str, start: int, delta: int, lo: int, hi: int) -> int:
        """`start` the first time a stream is seen, then the previous value + `delta`, wrapped into [lo, hi]."""

    def close(self) -> None:
        """Release the store's resources."""


def failed_by_restart(item: QueueItem, timestamp: int) -> HistoryEntry:
    """The history entry of a prompt that was running when the process died (policy `fail`)."""
    error = {"prompt_id": item.prompt_id, "node_id": None, "node_type": None, "executed": [],
             "exception_message": RESTART_REASON, "exception_type": "ServerRestart", "traceback": [],
             "current_inputs": {}, "current_outputs": [], "timestamp": timestamp}
    return HistoryEntry(item, "error", {}, [("execution_error", error)])


def wrap_seed(value: int, lo: int, hi: int) -> int:
    """Keep a counter inside [lo, hi]: past the top it starts again at the bottom, and the other way round."""
    if value > hi:
        return lo
    if value < lo:
        return hi
    return value
