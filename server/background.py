"""Serve an app from a background thread: for scripts, notebooks, benchmarks and tests that want a real server on
a free port while they go on in the foreground.

    with BackgroundServer(create_app(ServerConfig(data_dir=folder, port=0))) as server:
        urllib.request.urlopen(server.url + "/system_stats")

The app gets its own event loop in a daemon thread; its start-up (queue store, executor, worker) and clean-up run
there as under `main.py serve`. A failure to start is raised in the caller.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web


class BackgroundServer:
    """`app` on `host`:`port` (0 = a free port) while the `with` block runs."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app, access_log=None)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="latentloom-server", daemon=True)

    @property
    def url(self) -> str:
        """The base address, without a trailing slash."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, self.host, self.port)
            self.loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # raised again by start()
            self._error = exc
            self._ready.set()
            self.loop.run_until_complete(self.runner.cleanup())
            self.loop.close()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def start(self, timeout: float = 120.0) -> BackgroundServer:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the server did not start within {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Run the app's clean-up (closes websockets, stops the worker) and end the thread."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
