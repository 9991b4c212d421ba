"""Scale-out on Ray (`serve --ray ADDRESS`): the head keeps the queue, history, HTTP and websockets; each worker is
a Ray actor with its own executor (`executor.scale_out.RemoteWorker`). Ray is imported only here, only when asked.

Policy:
- Workers: `--ray-workers N`, default one per GPU of the cluster (`num_gpus=1` each); a CPU-only cluster needs N
  and each worker gets an equal share of its CPUs (and as many torch threads). Actors restart when they die
  (`max_restarts=-1`); a run is never retried by Ray itself.
- Dispatch: whenever a worker is idle, the next prompt in queue order (priority, then number) is claimed and sent
  to the worker `choose_worker` picks; several prompts run at once, one per worker.
- Events stream from the worker's run (a streaming actor call) and are published on the loop as they arrive, so
  `executing`, `progress`, previews, `executed` and errors reach the prompt's client in order. When the run ends
  the head writes the files it brought back (never overwriting: a clashing name gets `_n`), then history,
  `status`, and `executing {node: null}`, as the local worker does.
- Faults: a worker that dies mid-prompt has its prompt re-queued once (it keeps its place at the front), then
  failed with an `execution_error` naming the worker; the actor restarts and becomes idle again when it answers.
  `/interrupt` reaches the worker running the prompt, `/free` every worker.
- Stop: running prompts get the shutdown grace, are then interrupted and re-queued; every actor is killed, and a
  Ray instance this process started (`--ray local`) is shut down, so nothing of ours is left behind.
- Differences from the single-process worker: a client reconnecting mid-run is not told its running node
  (several prompts may run at once).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor.events import Event, Executing, ExecutionError, ExecutionStart
from executor.errors import PromptError, refusal_events
from executor.prepare import admit
from executor.progress import ProgressStates
from executor.queue import HistoryEntry, QueueItem, QueueStore
from executor.scale_out import (FILE_TYPES, Job, JobResult, RemoteWorker, WorkerState, choose_worker, input_files,
                                prompt_models, routing_keys, write_output)
from nodes.api import Environment
from nodes.identity import model_hashes, model_uses
from nodes.registry import Registry
from server.hub import Hub

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
RESTART_POLL = 0.5


class RaySetupError(RuntimeError):
    """Ray cannot be used as asked (not installed, no cluster, no worker count for a CPU-only cluster)."""


@dataclass
class RemoteSlot:
    """One worker as the head sees it: its actor, its last reported state and the prompt it runs."""

    handle: Any
    state: WorkerState
    prompt_id: str | None = None
    task: asyncio.Task | None = field(default=None, repr=False)


def start_workers(address: str, count: int | None, data_dir_template: str | None, head_data: Path, *,
                  plugins: bool, allow_pickle: bool) -> tuple[list[RemoteSlot], bool]:
    """Connect to (or start, for "local") Ray and create the worker actors: (slots, whether we started Ray)."""
    try:
        import ray
    except ImportError:
        raise RaySetupError("--ray needs Ray: pip install 'latentloom[ray]'") from None
    started = False
    if not ray.is_initialized():
        if address == "local":
            # workers import this checkout's packages, whatever is installed
            ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
        else:
            ray.init(address=address, configure_logging=False)
        started = True
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    if count is None:
        if gpus == 0:
            raise RaySetupError("the Ray cluster has no GPU: give the number of CPU workers with --ray-workers N")
        count = gpus
    options: dict[str, Any] = {"max_concurrency": 4, "max_restarts": -1, "max_task_retries": 0}
    if gpus:
        options["num_gpus"] = 1
    else:
        options["num_cpus"] = cpus / count
    actor = ray.remote(RemoteWorker).options(**options)
    threads = max(1, int(cpus // count)) if not gpus else None
    slots = []
    for i in range(count):
        worker_id = f"w{i}"
        data = data_dir_template.format(worker=worker_id) if data_dir_template else (
            str(head_data) if address == "local" else None)
        handle = actor.remote(worker_id, data, plugins=plugins, allow_pickle=allow_pickle, threads=threads)
        slots.append(RemoteSlot(handle, WorkerState(worker_id, "", "", "starting")))
    for slot in slots:
        slot.state = ray.get(slot.handle.describe.remote())
    return slots, started


class RayDispatcher:
    """The queue worker of a scaled-out server: same interface as `server.worker.Worker`."""

    def __init__(self, *, store: QueueStore, registry: Registry, env: Environment, hub: Hub, slots: list[RemoteSlot],
                 owns_ray: bool, preview: bool, preview_size: int) -> None:
        self.store, self.registry, self.env, self.hub = store, registry, env, hub
        self.slots, self.owns_ray = slots, owns_ray
        self.preview_size = preview_size if preview else None
        self._wake = asyncio.Event()
        self._stopping = False
        self._lost: set[str] = set()        # prompts already re-queued once after a worker died
        self._stop_interrupts: set[str] = set()
        self._task: asyncio.Task | None = None

    # --- control (loop thread) ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def workers(self) -> list[dict[str, Any]]:
        return [slot.state.public() for slot in self.slots]

    def remote_devices(self) -> list[dict[str, Any]]:
        """`/system_stats` devices of the workers (what the head can tell of them: no memory figures)."""
        return [{"name": f"{s.state.worker_id}: {s.state.device} on {s.state.host}", "type": "ray", "index": i,
                 "vram_total": 0, "vram_free": 0, "torch_vram_total": 0, "torch_vram_free": 0}
                for i, s in enumerate(self.slots)]

    def interrupt(self, prompt_id: str | None = None) -> bool:
        hit = [s for s in self.slots if s.prompt_id is not None and prompt_id in (None, s.prompt_id)]
        for slot in hit:
            slot.handle.interrupt.remote()
        return bool(hit)

    def request_free(self, unload_models: bool, free_memory: bool) -> None:
        for slot in self.slots:
            asyncio.get_running_loop().create_task(self._free(slot, unload_models, free_memory))

    async def stop(self, grace: float) -> None:
        import ray

        self._stopping = True
        self._wake.set()
        running = [s for s in self.slots if s.task is not None and not s.task.done()]
        if running:
            await asyncio.wait([s.task for s in running], timeout=grace)
        for slot in running:
            if not slot.task.done() and slot.prompt_id is not None:
                self._stop_interrupts.add(slot.prompt_id)
                slot.handle.interrupt.remote()
        if running:
            await asyncio.wait([s.task for s in running], timeout=grace + 5)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for slot in self.slots:
            ray.kill(slot.handle, no_restart=True)
        if self.owns_ray:
            await asyncio.to_thread(ray.shutdown)

    # --- the loop ----------------------------------------------------------------------------------------------
    async def _serve(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            while not self._stopping and any(s.state.state == "idle" for s in self.slots):
                item = self.store.claim()
                if item is None:
                    break
                self.hub.status(self.store.remaining())
                await self._dispatch(item)

    async def _dispatch(self, item: QueueItem) -> None:
        try:  # admitted again here too: the routing keys come from its plan
            admitted = await asyncio.to_thread(admit, item.prompt, self.registry, self.env,
                                               extra_data=item.extra_data, targets=item.outputs or None)
        except PromptError as refusal:
            return self._finish(item, failed=refusal_events(item.prompt_id, refusal))
        states = [s.state for s in self.slots]
        chosen = choose_worker(states, prompt_models(item.prompt), routing_keys(admitted.report))
        slot = self.slots[states.index(chosen)]
        slot.state.state, slot.prompt_id = "busy", item.prompt_id
        slot.task = asyncio.get_running_loop().create_task(self._run(slot, item))

    async def _run(self, slot: RemoteSlot, item: QueueItem) -> None:
        import ray

        try:
            job = Job(item.prompt_id, item.prompt, item.extra_data, item.outputs,
                      *await asyncio.to_thread(self._travelling, item.prompt), preview_size=self.preview_size)
            result = await self._stream(slot, job, item.client_id)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            self._worker_lost(slot, item, exc)
            return
        except Exception as exc:  # the dispatcher must survive anything a run does
            log.exception("prompt %s: the remote run failed", item.prompt_id)
            failure = PromptError("execution_failed", "Execution failed", repr(exc))
            result = JobResult("invalid", invalid=refusal_events(item.prompt_id, failure))
        finally:
            slot.prompt_id = None
        if result.state is not None:
            slot.state = result.state
        slot.state.state = "idle"
        if result.status == "interrupted" and item.prompt_id in self._stop_interrupts:
            self.store.requeue(item.prompt_id)
        elif result.status == "invalid":
            self._finish(item, failed=result.invalid)
        else:
            outputs = await asyncio.to_thread(self._place_files, result)
            self._finish(item, HistoryEntry(item, "success" if result.status == "success" else "error", outputs,
                                            result.messages))
        self._wake.set()

    def _travelling(self, prompt: dict[str, Any]) -> tuple[dict[str, bytes], dict[tuple[str, str], str]]:
        """What goes with a prompt: the input files it names and the sha256 of the models the head has."""
        hashes, known = model_hashes(self.env), {}
        for use in model_uses(prompt):
            try:
                path = self.env.paths.resolve(self.env.paths.models(use.kind), use.name)
                if path.exists():
                    known[(use.kind, use.name)] = hashes.sha256(path)
            except (KeyError, ValueError, OSError):
                continue
        return input_files(prompt, self.env.paths), known

    async def _stream(self, slot: RemoteSlot, job: Job, client_id: str | None) -> JobResult:
        progress = ProgressStates()
        async for ref in slot.handle.run.options(num_returns="streaming").remote(job):
            kind, payload = await ref
            if kind == "result":
                return payload
            event, jpeg = payload
            wanted = client_id in self.hub.clients if client_id is not None else bool(self.hub.clients)
            before, after = progress.on(event, wanted)
            for state in before:
                self.hub.publish(state, client_id)
            self.hub.publish(event, client_id, jpeg)
            for state in after:
                self.hub.publish(state, client_id)
        raise RuntimeError("the worker's run ended without a result")

    def _place_files(self, result: JobResult) -> dict[str, dict[str, list[Any]]]:
        """Write the files the run brought back; the outputs with the names they got here."""
        renamed = {}
        for (kind, subfolder, name), data in result.files.items():
            folder = getattr(self.env.paths, kind)
            renamed[(kind, subfolder, name)] = write_output(folder, subfolder, name, data, self.env.paths)
        for ui in result.outputs.values():
            for items in ui.values():
                for entry in items if isinstance(items, list) else []:
                    if isinstance(entry, dict) and entry.get("type", "output") in FILE_TYPES and "filename" in entry:
                        key = (entry.get("type", "output"), entry.get("subfolder", ""), entry["filename"])
                        entry["filename"] = renamed.get(key, entry["filename"])
        return result.outputs

    def _worker_lost(self, slot: RemoteSlot, item: QueueItem, exc: BaseException) -> None:
        log.warning("worker %s died running prompt %s: %s", slot.state.worker_id, item.prompt_id, exc)
        slot.state.state = "restarting"
        asyncio.get_running_loop().create_task(self._await_restart(slot))
        if item.prompt_id not in self._lost and not self._stopping:
            self._lost.add(item.prompt_id)
            self.store.requeue(item.prompt_id)
            self._wake.set()
            return
        message = f"worker {slot.state.worker_id} died while running this prompt, twice"
        self._finish(item, failed=[ExecutionStart(item.prompt_id),
                                   ExecutionError(prompt_id=item.prompt_id, node_id=None, node_type=None, executed=[],
                                                  exception_message=message, exception_type="WorkerDied",
                                                  traceback=[], current_inputs={}, current_outputs=[])])

    async def _await_restart(self, slot: RemoteSlot) -> None:
        """Ray restarts a dead actor; it is idle again once it answers."""
        while not self._stopping:
            try:
                slot.state = await slot.handle.describe.remote()
                slot.state.state = "idle"
                self._wake.set()
                return
            except Exception:  # noqa: BLE001 - still restarting
                await asyncio.sleep(RESTART_POLL)

    async def _free(self, slot: RemoteSlot, unload_models: bool, free_memory: bool) -> None:
        try:
            state = await slot.handle.free.remote(unload_models, free_memory)
        except Exception as exc:  # noqa: BLE001 - a dead worker has nothing to free
            log.warning("worker %s could not free memory: %s", slot.state.worker_id, exc)
            return
        slot.state.models, slot.state.keys = state.models, state.keys

    def _finish(self, item: QueueItem, entry: HistoryEntry | None = None, failed: list[Event] | None = None) -> None:
        """History, `status`, then `executing {node: null}`; `failed`: the events of a run that never started."""
        if failed is not None:
            for event in failed:
                self.hub.publish(event, item.client_id)
            entry = HistoryEntry(item, "error", {}, [(e.type, e.data()) for e in failed])
        self.store.finish(entry)
        self.hub.status(self.store.remaining())
        self.hub.publish(Executing(None, item.prompt_id), item.client_id)
        self._wake.set()
