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
   Lazy inputs (reference §4.6) are not planned: a node with some is asked (`check_lazy_status`) which it needs,
   those are evaluated (with their own upstream), and it is asked again until it names none left; the others reach
   it as None. A node that returns an `Expansion` (§4.7) has its new nodes checked like a workflow's and added to
   the run (ids must be new; keys and caching as for any node); its output nodes run, and its outputs are the
   outputs of the nodes its results link to.
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

from nodes.api import Context, Environment, Expansion, Interrupted, NodeSpec
from executor.cache import CacheEntry, MemoryCache, estimate_nbytes, node_key
from executor.events import (Event, Executed, Executing, ExecutionCached, ExecutionError, ExecutionInterrupted,
                             ExecutionStart, ExecutionSuccess, Preview, Progress)
from executor.validate import ValidationReport, ValidNode, validate_added
from executor.workflow import Link, Workflow, parse_workflow

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
        self.nodes: dict[str, ValidNode] = dict(report.nodes)  # the workflow's, then those expansions add
        self.workflow_nodes = dict(report.workflow.nodes)
        self.keys: dict[str, str] = {}
        self.present: set[str] = set()
        self.hits: dict[str, CacheEntry] = {}
        self.current = ""

    def publish(self, event: Event, record: bool = False) -> None:
        if record:
            self.result.messages.append((event.type, event.data()))
        self.ex.emit(event)

    def go(self) -> RunResult:
        pid = self.result.prompt_id
        self.publish(ExecutionStart(pid), record=True)
        order = self.report.order
        self.compute_keys(order)
        self.present, self.hits = self.lookup(order, self.keys)
        self.result.cached = [nid for nid in order if nid in self.present]
        self.publish(ExecutionCached(self.result.cached, pid), record=True)
        try:
            for nid in self.required(order, self.hits):
                self.ensure(nid)
        except NodeFailed as failure:
            self.fail(failure)
            return self.result
        except Interrupted:
            self.stop(self.current)
            return self.result
        self.publish(ExecutionSuccess(pid), record=True)
        return self.result

    def ensure(self, nid: str) -> CacheEntry:
        """The values of `nid`: reused from the cache, or computed once its eager inputs are and the lazy inputs it
        asks for (`check_lazy_status`) are evaluated. The plan's order makes the eager inputs ready already; the
        recursion serves lazily requested and expanded nodes."""
        values = self.result.values
        if nid in values:
            return values[nid]
        self.current = nid
        entry = self.hits.get(nid) or (self.ex.cache.get(self.keys[nid]) if nid in self.present else None)
        if entry is not None:
            values[nid] = self.reuse(nid, entry)
            return values[nid]
        vn = self.nodes[nid]
        for link in eager_links(vn):
            self.ensure(link.node)
        self.evaluate_lazy(vn)
        self.current = nid
        values[nid] = self.execute_node(nid, self.keys[nid], values)
        return values[nid]

    def evaluate_lazy(self, vn: ValidNode) -> None:
        """Evaluate the lazy inputs the node asks for, asking again after each round, until it asks for none."""
        lazy = {name: link for name, link in vn.links.items() if name in vn.spec.lazy_inputs}
        while True:
            pending = {name: link for name, link in lazy.items() if link.node not in self.result.values}
            if not pending:
                return
            inputs = gather_inputs(vn, self.result.values)
            try:
                requested = lazy_requests(vn.spec, inputs, self.context(vn.id))
            except Interrupted:
                raise
            except Exception as exc:
                raise NodeFailed(vn.id, exc, inputs) from exc
            wanted = [pending[name] for name in requested if name in pending]
            if not wanted:
                return
            for link in wanted:
                self.ensure(link.node)

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
                needed.update(link.node for link in eager_links(self.nodes[nid]))
        return [nid for nid in order if nid in needed]

    def compute_keys(self, order: list[str]) -> dict[str, str]:
        """The cache key of each node of `order` (after the keys of the nodes it links to), kept in `keys`."""
        for nid in order:
            vn = self.nodes[nid]
            spec = vn.spec
            fingerprint = spec.cls.fingerprint(vn.constants, self.ex.env)
            self.keys[nid] = node_key(spec.name, spec.version, vn.constants, vn.links, self.keys, fingerprint,
                                      nid if spec.not_idempotent else None)
        return {nid: self.keys[nid] for nid in order}

    def reuse(self, nid: str, entry: CacheEntry) -> CacheEntry:
        if entry.ui is not None:
            self.result.outputs[nid] = entry.ui
            self.publish(Executed(nid, entry.ui, self.result.prompt_id))
        elif self.nodes[nid].spec.output_node:
            self.publish(Executed(nid, None, self.result.prompt_id))
        return entry

    def context(self, nid: str) -> Context:
        return Context(node_id=nid, prompt_id=self.result.prompt_id, prompt=self.prompt, extra_data=self.extra_data,
                       env=self.ex.env, on_progress=self.on_progress, interrupt=self.ex._interrupt)

    def execute_node(self, nid: str, key: str, values: dict[str, CacheEntry]) -> CacheEntry:
        if self.ex._interrupt.is_set():
            raise Interrupted(nid)
        vn = self.nodes[nid]
        self.publish(Executing(nid, self.result.prompt_id))
        inputs = gather_inputs(vn, values)
        ctx = self.context(nid)
        try:
            results = call_mapped(vn.spec, inputs, ctx)
            if any(isinstance(r, Expansion) for r in results):
                outputs = self.expand(vn, results)
            else:
                outputs = merge_outputs(vn.spec, results)
        except (Interrupted, NodeFailed):  # a node of an expansion failed: it is that node's failure
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

    def expand(self, parent: ValidNode, results: list[Any]) -> list[list[Any]]:
        """Outputs of a node that expanded (reference §4.7): each call's new nodes are added and checked, its output
        nodes and the nodes its results link to are run, and the linked outputs become the parent's."""
        merged: list[list[Any]] = [[] for _ in parent.spec.outputs]
        for result in results:
            values: tuple[Any, ...] = parent.spec.output_values(result) if not isinstance(result, Expansion) else ()
            if isinstance(result, Expansion):
                added = self.add_nodes(result.graph)
                for nid in added:
                    if self.nodes[nid].spec.output_node:
                        self.ensure(nid)
                if len(result.result) != len(parent.spec.outputs):
                    raise TypeError(f"{parent.spec.name} expanded with {len(result.result)} result(s) for "
                                    f"{len(parent.spec.outputs)} output(s)")
                values = result.result
            for slot, value in enumerate(values):
                if isinstance(result, Expansion) and _is_link(value):
                    if str(value[0]) not in self.nodes:
                        raise ValueError(f"{parent.spec.name}'s expansion result links to unknown node {value[0]!r}")
                    merged[slot].extend(self.ensure(str(value[0])).outputs[int(value[1])])
                elif parent.spec.outputs[slot].is_list:
                    merged[slot].extend(value)
                else:
                    merged[slot].append(value)
        return merged

    def add_nodes(self, graph: dict[str, Any]) -> list[str]:
        """Add an expansion's nodes to the run (checked like a workflow's); their ids, in run order."""
        registry = self.report.registry
        if registry is None:
            raise RuntimeError("node expansion needs the registry the workflow was validated with")
        added = parse_workflow(graph)
        taken = sorted(nid for nid in added.nodes if nid in self.workflow_nodes)
        if taken:
            raise ValueError(f"node expansion reuses node id(s) {', '.join(taken)} (prefix new ids with the "
                             f"expanding node's id)")
        self.workflow_nodes.update(added.nodes)
        report = validate_added(Workflow(self.workflow_nodes), list(added.nodes), self.nodes, registry, self.ex.env)
        if report.errors:
            raise ValueError("node expansion added invalid nodes: " + "; ".join(
                f"#{nid} {e.message}: {e.details}" for nid, errs in report.errors.items() for e in errs))
        self.nodes.update((nid, report.nodes[nid]) for nid in report.order)
        self.compute_keys(report.order)
        self.present.update(nid for nid in report.order if self.keys[nid] in self.ex.cache)
        return report.order

    def on_progress(self, nid: str, value: int, total: int, preview: Any) -> None:
        self.publish(Progress(value, total, self.result.prompt_id, nid))
        if preview is not None:
            self.publish(Preview(preview, self.result.prompt_id, nid))

    def fail(self, failure: NodeFailed) -> None:
        cause = failure.cause
        vn = self.nodes[failure.node_id]
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
                                     node_type=self.nodes[nid].spec.name,
                                     executed=list(self.result.executed))
        self.result.status, self.result.error = "interrupted", event
        self.publish(event, record=True)


def eager_links(vn: ValidNode) -> list[Link]:
    """The links a node needs before it runs: all but its lazy inputs'."""
    return [link for name, link in vn.links.items() if name not in vn.spec.lazy_inputs]


def gather_inputs(vn: ValidNode, values: dict[str, CacheEntry]) -> dict[str, list[Any]]:
    """Each input as a list of items: a link gives the source slot's list (`[None]` for a lazy input not evaluated,
    the link itself for a `rawLink` input), a constant a one-item list."""
    inputs = {name: [value] for name, value in vn.constants.items()}
    raw = vn.spec.raw_link_inputs
    for name, link in vn.links.items():
        if name in raw:
            inputs[name] = [link.to_api()]
        elif link.node in values:
            inputs[name] = values[link.node].outputs[int(link.slot)]
        else:
            inputs[name] = [None]
    return inputs


def mapped_calls(spec: NodeSpec, inputs: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The keyword arguments of each call (ComfyUI's list mapping, reference §5.5; whole lists for INPUT_IS_LIST)."""
    if spec.input_is_list:
        return [inputs]
    count = max((len(v) for v in inputs.values()), default=1)
    if any(len(v) == 0 for v in inputs.values()):
        count = 0
    return [{k: v[i] if i < len(v) else v[-1] for k, v in inputs.items()} for i in range(count)]


def call_mapped(spec: NodeSpec, inputs: dict[str, list[Any]], ctx: Context) -> list[Any]:
    """What each call of the node returned."""
    results = []
    for kwargs in mapped_calls(spec, inputs):
        ctx.check_interrupt()
        results.append(spec.cls.model_construct(**kwargs).run(ctx))
    return results


def merge_outputs(spec: NodeSpec, results: list[Any]) -> list[list[Any]]:
    """The calls' results per output slot: values appended, list outputs concatenated."""
    merged: list[list[Any]] = [[] for _ in spec.outputs]
    for result in results:
        for slot, value in enumerate(spec.output_values(result)):
            if spec.outputs[slot].is_list:
                merged[slot].extend(value)
            else:
                merged[slot].append(value)
    return merged


def lazy_requests(spec: NodeSpec, inputs: dict[str, list[Any]], ctx: Context) -> list[str]:
    """The lazy inputs the node asks for, over all its mapped calls."""
    requested: list[str] = []
    for kwargs in mapped_calls(spec, inputs):
        for name in spec.cls.model_construct(**kwargs).check_lazy_status(ctx) or []:
            if name not in requested:
                requested.append(name)
    return requested


def _is_link(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def _format_inputs(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    def fmt(v: Any) -> Any:
        return v if v is None or isinstance(v, (int, float, bool, str)) else repr(v)[:200]

    return {name: [fmt(v) for v in values] for name, values in inputs.items()}
