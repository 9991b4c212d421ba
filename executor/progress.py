"""ComfyUI's `progress_state` messages, derived from the other events of a run.

A message lists every node of the prompt that is no longer pending, each as `{"value", "max", "state",
"node_id", "prompt_id", "display_node_id", "parent_node_id", "real_node_id"}` with state "running", "finished"
or "error". They come, as in ComfyUI (reference §2.3), before a node's `executing` (the previous node finished,
then this one running, value 0 of 1), after each `progress` (its value and max), before `execution_success` (the
last node finished) and before `execution_error` (the failing node in "error"). Nodes reused from the cache
are finished in one message right after `execution_cached` (ComfyUI sends one per cached node it visits).

A message is a snapshot of all nodes so far, so a run of n nodes costs O(n²) to describe: the server asks for
snapshots only while someone can receive them (`wanted`), and the executor itself never makes them.
"""
from __future__ import annotations

from typing import Any

from executor.events import (Event, Executing, ExecutionCached, ExecutionError, ExecutionStart, ExecutionSuccess,
                             Progress, ProgressState)


class ProgressStates:
    """Follows one run at a time through its events."""

    def __init__(self) -> None:
        self.prompt_id = ""
        self.nodes: dict[str, dict[str, Any]] = {}
        self.running: str | None = None

    def on(self, event: Event, wanted: bool = True) -> tuple[list[ProgressState], list[ProgressState]]:
        """Update the state with `event`; the `progress_state` messages due before it and after it."""
        before: list[ProgressState] = []
        after: list[ProgressState] = []
        if isinstance(event, ExecutionStart):
            self.prompt_id, self.nodes, self.running = event.prompt_id, {}, None
        elif isinstance(event, ExecutionCached) and event.nodes:
            for nid in event.nodes:
                self._set(nid, "finished", 1, 1)
            self._snapshot(after, wanted)
        elif isinstance(event, Executing) and event.node is not None:
            self._finish_running(before, wanted)
            self.running = event.node
            self._set(event.node, "running", 0, 1)
            self._snapshot(before, wanted)
        elif isinstance(event, Progress):
            self._set(event.node, "running", event.value, event.max)
            self._snapshot(after, wanted)
        elif isinstance(event, ExecutionSuccess):
            self._finish_running(before, wanted)
        elif isinstance(event, ExecutionError) and event.node_id is not None:
            entry = self.nodes.get(event.node_id, {})
            self._set(event.node_id, "error", entry.get("value", 0), entry.get("max", 1))
            self.running = None
            self._snapshot(before, wanted)
        return before, after

    def _finish_running(self, messages: list[ProgressState], wanted: bool) -> None:
        if self.running is None:
            return
        entry = self.nodes[self.running]
        self._set(self.running, "finished", entry["max"], entry["max"])
        self.running = None
        self._snapshot(messages, wanted)

    def _set(self, nid: str, state: str, value: float, maximum: float) -> None:
        self.nodes[nid] = {"value": value, "max": maximum, "state": state, "node_id": nid,
                           "prompt_id": self.prompt_id, "display_node_id": nid, "parent_node_id": None,
                           "real_node_id": nid}

    def _snapshot(self, messages: list[ProgressState], wanted: bool) -> None:
        if wanted:
            messages.append(ProgressState(self.prompt_id, {nid: dict(entry) for nid, entry in self.nodes.items()}))
