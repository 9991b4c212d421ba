"""Scale-out: what a remote worker does with a prompt, what travels to it and back, and where a prompt goes.

The head (the server process) keeps the one queue and history and talks HTTP and websockets; each worker holds
its own executor, model manager and memory cache, in its own process and possibly on another machine (a Ray
actor, `server.ray_dispatch`). This module is free of Ray: `RemoteWorker` is a plain class the dispatcher turns
into an actor, and the routing policy is a pure function.

What travels (no shared file system is assumed):
- to the worker, a `Job`: the prompt, its extra data, the bytes of every input-folder file a constant input
  names (uploads), and the sha256 the head knows of each model the prompt names, so a worker that keeps a model
  under another name finds it by hash (`executor.prepare.admit`, as `reproduce` does). A model the worker
  has under neither fails validation with ComfyUI's error naming it.
- back, the run's events as they happen (previews already JPEG-encoded), then a `JobResult`: the run's status,
  outputs and history messages, the bytes of every file its outputs name (the head writes them into its own
  folders), and the worker's state after the run.

Routing (`choose_worker`): among the idle workers, those that already hold every model the prompt names; among
them the one whose cache holds most of the prompt's routing keys; otherwise the least loaded idle worker (fewest
models held, then fewest prompts run). Routing keys are the nodes' cache keys computed from the prompt alone
(type, version, constants, upstream keys), without the file fingerprints that only the worker can take.
"""
from __future__ import annotations

import dataclasses
import platform
import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

from executor.cache import MemoryCache, node_key
from executor.events import Event, Preview
from executor.errors import PromptError, refusal_events
from executor.run import DEFAULT_CACHE_BYTES, Executor, RunResult
from executor.prepare import admit
from executor.validate import ValidationReport
from nodes.identity import device_name, model_uses
from nodes.images import preview_jpeg
from nodes.paths import DataPaths, UnsafePathError

MAX_ROUTING_KEYS = 20_000
FILE_TYPES = ("output", "temp")


@dataclass(frozen=True)
class Job:
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]
    inputs: dict[str, bytes] = field(default_factory=dict)     # input-folder name → bytes
    model_hashes: dict[tuple[str, str], str] = field(default_factory=dict)
    preview_size: int | None = None                           # None: no previews


@dataclass
class WorkerState:
    """What `GET /workers` shows of a worker, and what routing reads."""

    worker_id: str
    host: str
    device: str
    state: Literal["starting", "idle", "busy", "restarting", "failed"] = "starting"
    models: list[str] = field(default_factory=list)          # "kind/name" of the models it holds
    prompts_run: int = 0
    keys: set[str] = field(default_factory=set, repr=False)  # routing keys its cache holds

    def public(self) -> dict[str, Any]:
        return {"id": self.worker_id, "host": self.host, "device": self.device, "state": self.state,
                "models": list(self.models), "prompts_run": self.prompts_run}


@dataclass
class JobResult:
    status: Literal["success", "error", "interrupted", "invalid"]
    outputs: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    files: dict[tuple[str, str, str], bytes] = field(default_factory=dict)   # (type, subfolder, name) → bytes
    invalid: list[Event] = field(default_factory=list)   # status "invalid": the events that report it
    state: WorkerState | None = None


def routing_keys(report: ValidationReport) -> list[str]:
    """Cache keys of the plan's nodes from the prompt alone (no file fingerprints)."""
    keys: dict[str, str] = {}
    for nid in report.order:
        vn = report.nodes[nid]
        keys[nid] = node_key(vn.spec.name, vn.spec.version, vn.constants, vn.links, keys, None,
                             nid if vn.spec.not_idempotent else None)
    return list(keys.values())


def prompt_models(prompt: dict[str, Any]) -> set[str]:
    return {f"{use.kind}/{use.name}" for use in model_uses(prompt)}


def choose_worker(workers: list[WorkerState], models: set[str], keys: list[str]) -> WorkerState | None:
    """The idle worker a prompt should go to (None when none is idle); see the module's routing rule."""
    idle = [w for w in workers if w.state == "idle"]
    holding = [w for w in idle if models and models <= set(w.models)]
    if holding:
        return max(holding, key=lambda w: (sum(k in w.keys for k in keys), -w.prompts_run))
    return min(idle, key=lambda w: (len(w.models), w.prompts_run), default=None)


def input_files(prompt: dict[str, Any], paths: DataPaths) -> dict[str, bytes]:
    """The input-folder files that constant inputs of the prompt name (LoadImage's image, masks, …)."""
    found: dict[str, bytes] = {}
    for node in prompt.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        for value in (inputs or {}).values():
            if not isinstance(value, str) or not value or len(value) > 1024:
                continue
            name = value.removesuffix(" [input]")
            try:
                path = paths.resolve(paths.input, name)
            except UnsafePathError:
                continue
            if path.is_file():
                found[name] = path.read_bytes()
    return found


class RemoteWorker:
    """The body of a worker actor: one executor on its own data folder, fed `Job`s one at a time."""

    def __init__(self, worker_id: str, data_dir: str | None, *, plugins: bool = True, allow_pickle: bool = False,
                 cache_bytes: int = DEFAULT_CACHE_BYTES, threads: int | None = None) -> None:
        from nodes.api import Environment
        from nodes.builtin import full_registry

        if threads is not None:  # a share of a CPU-only machine
            import torch

            torch.set_num_threads(threads)
        self.env = Environment(DataPaths(data_dir), allow_pickle=allow_pickle)
        self.registry, _ = full_registry(self.env.paths, plugins=plugins)
        self.executor = Executor(self.env, MemoryCache(cache_bytes))
        self.state = WorkerState(worker_id, platform.node(), _device(), "idle")
        self._keys: OrderedDict[str, None] = OrderedDict()

    def describe(self) -> WorkerState:
        self.state.keys = set(self._keys)
        return self.state

    def interrupt(self) -> None:
        self.executor.interrupt()

    def free(self, unload_models: bool, free_memory: bool) -> WorkerState:
        from nodes.sd.handles import unload_models as unload

        if free_memory:
            self.executor.cache.clear()
            self._keys.clear()
        if unload_models or free_memory:
            unload(self.env)
            self.state.models = []
        return self.describe()

    def run(self, job: Job) -> Iterator[tuple[str, Any]]:
        """("event", (event, jpeg or None)) as the run goes, then ("result", JobResult)."""
        events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

        def on_event(event: Event) -> None:
            if isinstance(event, Preview):
                if job.preview_size is None:
                    return
                jpeg = preview_jpeg(event.image, job.preview_size)
                if jpeg is not None:
                    events.put(("event", (dataclasses.replace(event, image=None), jpeg)))
                return
            events.put(("event", (event, None)))

        def work() -> None:
            try:
                events.put(("result", self._execute(job)))
            except BaseException as exc:  # noqa: BLE001 - reported to the head as the prompt's failure
                failure = PromptError("execution_failed", "Execution failed on the worker", repr(exc))
                events.put(("result", JobResult("invalid", invalid=refusal_events(job.prompt_id, failure),
                                                state=self.describe())))

        unsubscribe = self.executor.subscribe(on_event)
        self.state.state = "busy"
        threading.Thread(target=work, name="latentloom-remote-run", daemon=True).start()
        try:
            while True:
                kind, payload = events.get()
                yield kind, payload
                if kind == "result":
                    return
        finally:
            unsubscribe()
            self.state.state = "idle"

    def _execute(self, job: Job) -> JobResult:
        paths = self.env.paths
        for name, data in job.inputs.items():
            target = paths.resolve(paths.input, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() or target.read_bytes() != data:
                target.write_bytes(data)
        try:  # the one admission path, seeds kept, models found by name or by the head's hashes
            admitted = admit(job.prompt, self.registry, self.env, extra_data=job.extra_data,
                             targets=job.outputs or None, known_models=job.model_hashes)
        except PromptError as refusal:
            return JobResult("invalid", invalid=refusal_events(job.prompt_id, refusal), state=self.describe())
        run = self.executor.execute(admitted.report, prompt_id=job.prompt_id, extra_data=admitted.extra_data,
                                    prompt=admitted.prompt)
        self._remember(admitted.report, admitted.prompt)
        return JobResult(run.status, run.outputs, list(run.messages), self._files(run), state=self.describe())

    def _remember(self, report: ValidationReport, prompt: dict[str, Any]) -> None:
        self.state.prompts_run += 1
        self.state.models = sorted(set(self.state.models) | prompt_models(prompt))
        for key in routing_keys(report):
            self._keys[key] = None
            self._keys.move_to_end(key)
        while len(self._keys) > MAX_ROUTING_KEYS:
            self._keys.popitem(last=False)

    def _files(self, run: RunResult) -> dict[tuple[str, str, str], bytes]:
        files = {}
        for ui in run.outputs.values():
            for item in ui.get("images", []) + ui.get("files", []):
                if not isinstance(item, dict) or item.get("type", "output") not in FILE_TYPES:
                    continue
                kind, subfolder, name = item.get("type", "output"), item.get("subfolder", ""), item["filename"]
                path = self.env.paths.resolve(getattr(self.env.paths, kind), name, subfolder)
                files[(kind, subfolder, name)] = path.read_bytes()
        return files


def write_output(folder: Path, subfolder: str, name: str, data: bytes, paths: DataPaths) -> str:
    """Write a worker's file into the head's folder without overwriting: the name it got (`_n` added on a clash)."""
    stem, dot, suffix = name.rpartition(".") if "." in name else (name, "", "")
    candidate, n = name, 1
    while True:
        target = paths.resolve(folder, candidate, subfolder)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(target, "xb") as f:
                f.write(data)
            return candidate
        except FileExistsError:
            n += 1
            candidate = f"{stem}_{n}{dot}{suffix}"


def _device() -> str:
    from nodes.sd.devices import compute_device

    return device_name(compute_device())
