"""The run loop: execute a validated workflow, reusing cached results, publishing typed events.

Policy, in the order a run proceeds:
1. Reset the interrupt flag, publish `execution_start`.
2. Plan the ancestors of the runnable outputs in topological order; compute every node's cache key from its
   constants, its parents' keys and its fingerprint (one pass, linear in the graph).
3. Publish `execution_cached` with the nodes whose key is in the cache (memory or disk tier); entries are fetched
   only for the nodes the run needs.
4. Walk the plan: a cached node is reused (an output node's cached UI is re-published as `executed`); any other
   node gets `executing`, runs once per list item (ComfyUI's list mapping: shorter lists repeat their last item),
   and its outputs are cached. The interrupt flag is checked before every node and inside nodes via `Context`.
5. A node that raises ends the run with `execution_error` (`execution_interrupted` for an interrupt); results
   computed so far stay cached. Otherwise `execution_success`.

`Executor.execute` is synchronous and thread-safe to interrupt; the server runs it on a worker thread.
"""
from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Container
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

from nodes.api import Context, Environment, Interrupted, NodeSpec
from executor.cache import CacheEntry, MemoryCache, estimate_nbytes, node_key
from executor.events import (Event, Executed, Executing, ExecutionCached, ExecutionError, ExecutionInterrupted,
                             ExecutionStart, ExecutionSuccess, Preview, Progress)
from executor.validate import ValidationReport, ValidNode

if TYPE_CHECKING:
    from executor.disk_cache import TieredCache

log = logging.getLogger(__name__)
DEFAULT_CACHE_BYTES = 4 * 1024**3
Subscriber = Callable[[Event], None]


@dataclass
class RunResult:
    prompt_id: str
    status: Literal["success", "error", "interrupted"]
    outputs: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    error: ExecutionError | ExecutionInterrupted | None = None
    values: dict[str, CacheEntry] = field(default_factory=dict, repr=False)

    @property
    def success(self) -> bool:
        return self.status == "success"


class NodeFailed(Exception):
    def __init__(self, node_id: str, cause: BaseException, inputs: dict[str, list[Any]]):
        super().__init__(str(cause))
        self.node_id, self.cause, self.inputs = node_id, cause, inputs


class Executor:
    """Runs validated workflows: one run at a time, cached results reused, events published to subscribers.

    `env` is what nodes see (data folders, shared services); `cache` keeps node outputs between runs (memory,
    optionally a disk tier), keyed by each node's Merkle cache key. `interrupt()` may be called from any thread;
    the run stops at the next node boundary or sampler step.
    """

    def __init__(self, env: Environment, cache: MemoryCache | TieredCache | None = None) -> None:
        self.env = env
        self.cache = cache if cache is not None else MemoryCache(DEFAULT_CACHE_BYTES)
        self._subscribers: list[Subscriber] = []
        self._interrupt = threading.Event()
        self._lock = threading.Lock()

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Receive every event; returns a function that unsubscribes."""
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn)

    def interrupt(self) -> None:
        """Ask the current run to stop (it ends with `execution_interrupted`)."""
        self._interrupt.set()

    def execute(self, report: ValidationReport, *, prompt_id: str, extra_data: dict[str, Any] | None = None,
                prompt: dict[str, Any] | None = None) -> RunResult:
        """Run the runnable outputs of a validated workflow. `prompt` is the API dict nodes see as PROMPT."""
        if not report.ok:
            raise ValueError("cannot execute a workflow that failed validation")
        with self._lock:
            self._interrupt.clear()
            run = _Run(self, report, prompt_id, extra_data or {}, prompt)
            return run.go()

    def emit(self, event: Event) -> None:
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception:  # a broken subscriber must not break the run
                log.exception("event subscriber failed on %s", event.type)


class _Run:
    """State of one execution; small named steps, each tested through `Executor.execute`."""

    def __init__(self, executor: Executor, report: ValidationReport, prompt_id: str, extra_data: dict[str, Any],
                 prompt: dict[str, Any] | None) -> None:
        self.ex = executor
        self.report = report
        self.result = RunResult(prompt_id, "success")
        self.extra_data = extra_data
        self.prompt = prompt if prompt is not None else report.workflow.to_api()

    def publish(self, event: Event, record: bool = False) -> None:
        if record:
            self.result.messages.append((event.type, event.data()))
        self.ex.emit(event)

    def go(self) -> RunResult:
        pid = self.result.prompt_id
        self.publish(ExecutionStart(pid), record=True)
        order = self.report.order
        keys = self.compute_keys(order)
        present, hits = self.lookup(order, keys)
        self.result.cached = [nid for nid in order if nid in present]
        self.publish(ExecutionCached(self.result.cached, pid), record=True)
        values = self.result.values
        current = ""
        try:
            for nid in self.required(order, hits):
                current = nid
                if nid in hits:
                    values[nid] = self.reuse(nid, hits[nid])
                else:
                    values[nid] = self.execute_node(nid, keys[nid], values)
        except NodeFailed as failure:
            self.fail(failure)
            return self.result
        except Interrupted:
            self.stop(current)
            return self.result
        self.publish(ExecutionSuccess(pid), record=True)
        return self.result

    def lookup(self, order: list[str], keys: dict[str, str]) -> tuple[set[str], dict[str, CacheEntry]]:
        """The nodes whose key is cached, and the entries of those this run reuses.

        Entries are fetched (from memory, or from the disk tier) only for the nodes the run needs. A key that
        vanishes between the check and the fetch makes its node run instead, which may need more of its upstream.
        """
        present = {nid for nid in order if keys[nid] in self.ex.cache}
        while True:
            hits: dict[str, CacheEntry] = {}
            for nid in self.required(order, present):
                if nid in present:
                    entry = self.ex.cache.get(keys[nid])
                    if entry is None:
                        present.discard(nid)
                        break
                    hits[nid] = entry
            else:
                return present, hits

    def required(self, order: list[str], hits: Container[str]) -> list[str]:
        """The nodes whose values this run needs: outputs, and the inputs of every node that must run.

        A cached node's ancestors are not needed, so a cached result never forces re-running its upstream.
        """
        needed = set(self.report.outputs)
        for nid in reversed(order):
            if nid in needed and nid not in hits:
                needed.update(link.node for link in self.report.nodes[nid].links.values())
        return [nid for nid in order if nid in needed]

    def compute_keys(self, order: list[str]) -> dict[str, str]:
        keys: dict[str, str] = {}
        for nid in order:
            vn = self.report.nodes[nid]
            spec = vn.spec
            fingerprint = spec.cls.fingerprint(vn.constants, self.ex.env)
            keys[nid] = node_key(spec.name, spec.version, vn.constants, vn.links, keys, fingerprint,
                                 nid if spec.not_idempotent else None)
        return keys

    def reuse(self, nid: str, entry: CacheEntry) -> CacheEntry:
        if entry.ui is not None:
            self.result.outputs[nid] = entry.ui
            self.publish(Executed(nid, entry.ui, self.result.prompt_id))
        elif self.report.nodes[nid].spec.output_node:
            self.publish(Executed(nid, None, self.result.prompt_id))
        return entry

    def execute_node(self, nid: str, key: str, values: dict[str, CacheEntry]) -> CacheEntry:
        if self.ex._interrupt.is_set():
            raise Interrupted(nid)
        vn = self.report.nodes[nid]
        self.publish(Executing(nid, self.result.prompt_id))
        inputs = gather_inputs(vn, values)
        ctx = Context(node_id=nid, prompt_id=self.result.prompt_id, prompt=self.prompt, extra_data=self.extra_data,
                      env=self.ex.env, on_progress=self.on_progress, interrupt=self.ex._interrupt)
        try:
            outputs = call_mapped(vn.spec, inputs, ctx)
        except Interrupted:
            raise
        except Exception as exc:
            raise NodeFailed(nid, exc, inputs) from exc
        ui = ctx.ui or None
        entry = CacheEntry(outputs, ui, estimate_nbytes(outputs))
        self.ex.cache.put(key, entry)
        self.result.executed.append(nid)
        if ui is not None:
            self.result.outputs[nid] = ui
            self.publish(Executed(nid, ui, self.result.prompt_id))
        return entry

    def on_progress(self, nid: str, value: int, total: int, preview: Any) -> None:
        self.publish(Progress(value, total, self.result.prompt_id, nid))
        if preview is not None:
            self.publish(Preview(preview, self.result.prompt_id, nid))

    def fail(self, failure: NodeFailed) -> None:
        cause = failure.cause
        vn = self.report.nodes[failure.node_id]
        event = ExecutionError(
            prompt_id=self.result.prompt_id, node_id=failure.node_id, node_type=vn.spec.name,
            executed=list(self.result.executed), exception_message=str(cause),
            exception_type=f"{type(cause).__module__}.{type(cause).__qualname__}".removeprefix("builtins."),
            traceback=traceback.format_exception(cause), current_inputs=_format_inputs(failure.inputs),
            current_outputs=list(self.result.values))
        self.result.status, self.result.error = "error", event
        self.publish(event, record=True)

    def stop(self, nid: str) -> None:
        event = ExecutionInterrupted(prompt_id=self.result.prompt_id, node_id=nid,
                                     node_type=self.report.nodes[nid].spec.name,
                                     executed=list(self.result.executed))
        self.result.status, self.result.error = "interrupted", event
        self.publish(event, record=True)


def gather_inputs(vn: ValidNode, values: dict[str, CacheEntry]) -> dict[str, list[Any]]:
    """Each input as a list of items: a link gives the source slot's list, a constant a one-item list."""
    inputs = {name: [value] for name, value in vn.constants.items()}
    for name, link in vn.links.items():
        inputs[name] = values[link.node].outputs[int(link.slot)]
    return inputs


def call_mapped(spec: NodeSpec, inputs: dict[str, list[Any]], ctx: Context) -> list[list[Any]]:
    """Call the node once per list item (or once with whole lists) and merge the results per output slot."""
    if spec.input_is_list:
        calls = [inputs]
    else:
        count = max((len(v) for v in inputs.values()), default=1)
        if any(len(v) == 0 for v in inputs.values()):
            count = 0
        calls = [{k: v[i] if i < len(v) else v[-1] for k, v in inputs.items()} for i in range(count)]
    merged: list[list[Any]] = [[] for _ in spec.outputs]
    for kwargs in calls:
        ctx.check_interrupt()
        result = spec.cls.model_construct(**kwargs).run(ctx)
        for slot, value in enumerate(_as_tuple(spec, result)):
            if spec.outputs[slot].is_list:
                merged[slot].extend(value)
            else:
                merged[slot].append(value)
    return merged


def _as_tuple(spec: NodeSpec, result: Any) -> tuple[Any, ...]:
    if not spec.outputs:
        return ()
    if spec.returns_named:
        if not isinstance(result, tuple) or len(result) != len(spec.outputs):
            raise TypeError(f"{spec.name}.run returned {type(result).__name__}, expected "
                            f"{len(spec.outputs)} outputs")
        return result
    return (result,)


def _format_inputs(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    def fmt(v: Any) -> Any:
        return v if v is None or isinstance(v, (int, float, bool, str)) else repr(v)[:200]

    return {name: [fmt(v) for v in values] for name, values in inputs.items()}
