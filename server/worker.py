"""The queue worker: takes prompts from the store one at a time and runs them on the executor thread.

Policy:
- One long-lived executor thread (daemon, so a node that never returns cannot block process exit) validates
  and executes each prompt; the event loop only moves items between the store and the hub. The executor knows
  nothing of aiohttp: its events cross to the loop with `call_soon_threadsafe`, in emission order, and the run's
  result crosses the same way, so it arrives after all of the run's events.
- A prompt is admitted again when it starts (`executor.prepare.admit`, seeds kept: files or nodes may have
  changed since it was queued, or the process restarted); a prompt that is no longer admitted fails with `execution_error` naming the first node.
- When a prompt ends: write its history entry, broadcast `status`, then send `executing {node: null}` to its
  client — so a client that sees the "done" signal finds the entry in `/history`.
- Previews are JPEG-encoded on the executor thread (never on the loop), only when previews are on.
- `/free` requests are applied between prompts (at once when idle); `/interrupt` reaches the executor's flag
  only while the named (or any) prompt runs.
- Shutdown: the running prompt gets `shutdown_grace` seconds to finish, then is interrupted and put back in the
  queue. If it still does not return, it stays marked running and the next start recovers it.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import platform
import queue
import sys
import threading
from typing import Any, Callable, Protocol

from executor.events import Event, Executing
from executor.progress import ProgressStates
from executor.queue import HistoryEntry, QueueItem, QueueStore
from executor.run import Executor, RunResult
from executor.errors import PromptError, refusal_events
from executor.prepare import admit
from executor.scale_out import WorkerState, prompt_models
from nodes.api import Environment
from nodes.identity import device_name
from nodes.images import preview_jpeg
from nodes.registry import Registry
from nodes.sd.devices import compute_device
from nodes.sd.handles import unload_models
from server.hub import Hub, Running

log = logging.getLogger(__name__)
INTERRUPT_WAIT = 30.0  # seconds an interrupted run may take to return during shutdown


class ExecutorThread:
    """Runs submitted callables one at a time on a single daemon thread; results come back as asyncio futures."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future, asyncio.AbstractEventLoop] | None]
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="latentloom-executor", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], Any]) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((fn, future, loop))
        return future

    def stop(self) -> None:
        self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, future, loop = job
            try:
                result, error = fn(), None
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the loop is gone (shutdown gave up on this run)
                return


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class QueueWorker(Protocol):
    """What the routes need of the queue worker: this module's `Worker`, or `server.ray_dispatch.RayDispatcher`."""

    def wake(self) -> None: ...

    def interrupt(self, prompt_id: str | None = None) -> bool: ...

    def request_free(self, unload_models: bool, free_memory: bool) -> None: ...

    def workers(self) -> list[dict[str, Any]]: ...

    def remote_devices(self) -> list[dict[str, Any]]: ...


class Worker:
    """Takes queued prompts from the store one at a time, admits them again and runs them (policy in the module doc).

    `start()` begins serving, `wake()` says the store has new items, `interrupt()` and `request_free()` serve
    `/interrupt` and `/free`, `stop(grace)` shuts down; all on the event loop.
    """

    def __init__(self, *, store: QueueStore, registry: Registry, env: Environment, executor: Executor, hub: Hub,
                 preview: bool, preview_size: int) -> None:
        self.store, self.registry, self.env, self.executor, self.hub = store, registry, env, executor, hub
        self.preview, self.preview_size = preview, preview_size
        self.current: QueueItem | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._shutdown_interrupt = False
        self._free = {"unload_models": False, "free_memory": False}
        self._run_future: asyncio.Future | None = None
        self._task: asyncio.Task | None = None
        self._thread = ExecutorThread()
        self._loop = asyncio.get_running_loop()
        self._progress = ProgressStates()
        self._unsubscribe = executor.subscribe(self._on_event)
        self.state = WorkerState("local", platform.node(), device_name(compute_device()), "idle")

    # --- control (loop thread) ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = self._loop.create_task(self._serve())
        self._wake.set()  # items recovered from the store may be waiting

    def wake(self) -> None:
        self._wake.set()

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Interrupt the running prompt (only if it is `prompt_id`, when given); False when nothing matched."""
        current = self.current
        if current is None or (prompt_id is not None and current.prompt_id != prompt_id):
            return False
        self.executor.interrupt()
        return True

    def workers(self) -> list[dict[str, Any]]:
        """`GET /workers`: this process, the one worker."""
        self.state.state = "busy" if self.current is not None else "idle"
        return [self.state.public()]

    def remote_devices(self) -> list[dict[str, Any]]:
        return []

    def request_free(self, unload_models: bool, free_memory: bool) -> None:
        self._free["unload_models"] |= unload_models
        self._free["free_memory"] |= free_memory
        self._wake.set()

    async def stop(self, grace: float) -> None:
        self._stopping = True
        self._wake.set()
        run = self._run_future
        if run is not None and not run.done():
            try:
                await asyncio.wait_for(asyncio.shield(run), grace)
            except (asyncio.TimeoutError, Exception):
                pass
            if not run.done():
                self._shutdown_interrupt = True
                self.executor.interrupt()
                try:
                    await asyncio.wait_for(asyncio.shield(run), INTERRUPT_WAIT)
                except (asyncio.TimeoutError, Exception):
                    pass
        if self._task is not None:
            if run is not None and not run.done():
                log.warning("prompt %s did not stop; it will be recovered at the next start",
                            self.current.prompt_id if self.current else "?")
                self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:  # shutdown goes on: the store must still be closed
                log.exception("the queue worker failed")
        self._unsubscribe()
        self._thread.stop()

    # --- the loop ----------------------------------------------------------------------------------------------
    async def _serve(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            while not self._stopping:
                self._apply_free()
                item = self.store.claim()
                if item is None:
                    break
                self.hub.status(self.store.remaining())
                try:
                    await self._run(item)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the worker must survive anything a prompt does
                    log.exception("prompt %s: unexpected failure in the worker", item.prompt_id)
            self._apply_free()

    async def _run(self, item: QueueItem) -> None:
        self.current = item
        self.hub.running = Running(item.prompt_id, item.client_id)
        try:
            self._run_future = self._thread.submit(lambda: self._validate_and_execute(item))
            try:
                outcome = await self._run_future
            except Exception as exc:  # a bug below the executor: record it as the prompt's failure
                log.exception("prompt %s crashed the executor", item.prompt_id)
                outcome = PromptError("execution_failed", "Execution failed", repr(exc))
        finally:
            self._run_future = None
            self.current = None
            self.hub.running = None
        if isinstance(outcome, RunResult) and outcome.status == "interrupted" and self._shutdown_interrupt:
            self.store.requeue(item.prompt_id)  # a clean shutdown: run it again at the next start
            return
        entry = self._history_entry(item, outcome)
        self.state.prompts_run += 1
        self.state.models = sorted(set(self.state.models) | prompt_models(item.prompt))
        self.store.finish(entry)
        self.hub.status(self.store.remaining())
        if item.client_id is not None:
            self.hub.publish(Executing(None, item.prompt_id), item.client_id)

    def _history_entry(self, item: QueueItem, outcome: RunResult | PromptError) -> HistoryEntry:
        if isinstance(outcome, RunResult):
            return HistoryEntry(item, "success" if outcome.success else "error", outcome.outputs,
                                list(outcome.messages))
        events = refusal_events(item.prompt_id, outcome)
        for event in events:
            self.hub.publish(event, item.client_id)
        return HistoryEntry(item, "error", {}, [(e.type, e.data()) for e in events])

    def _validate_and_execute(self, item: QueueItem) -> RunResult | PromptError:
        """On the executor thread. The stored prompt is admitted again, its seeds kept as they are."""
        try:
            admitted = admit(item.prompt, self.registry, self.env, extra_data=item.extra_data,
                             targets=item.outputs or None)
        except PromptError as exc:
            return exc
        return self.executor.execute(admitted.report, prompt_id=item.prompt_id, extra_data=admitted.extra_data,
                                     prompt=admitted.prompt)

    def _on_event(self, event: Event) -> None:
        """Executor subscriber, on the executor thread."""
        item = self.current
        client_id = item.client_id if item is not None else None
        jpeg = None
        if event.type == "preview":
            if not self.preview:
                return
            jpeg = preview_jpeg(getattr(event, "image", None), self.preview_size)
            if jpeg is None:
                return
        wanted = client_id in self.hub.clients if client_id is not None else bool(self.hub.clients)
        before, after = self._progress.on(event, wanted)
        try:
            for state in before:
                self._loop.call_soon_threadsafe(self.hub.publish, state, client_id)
            self._loop.call_soon_threadsafe(self.hub.publish, event, client_id, jpeg)
            for state in after:
                self._loop.call_soon_threadsafe(self.hub.publish, state, client_id)
        except RuntimeError:
            pass  # the loop is closed: nobody is listening any more

    def _apply_free(self) -> None:
        if not (self._free["unload_models"] or self._free["free_memory"]):
            return
        if self._free["free_memory"]:
            self.executor.cache.clear()
        unload_models(self.env)
        self.state.models = []
        self._free = {"unload_models": False, "free_memory": False}
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
