"""A real server process with the test nodes, for the crash and shutdown tests.

    python -m tests.server.serve_stub DATA_DIR

Listens on an ephemeral 127.0.0.1 port and prints `PORT <n>` once it accepts connections; SIGTERM or SIGINT
stop it cleanly (websockets closed, the running prompt finished or re-queued), as `main.py serve` does.
"""
from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web

from server.app import create_app
from server.config import ServerConfig
from tests.server.conftest import stub_registry


async def main(data_dir: str) -> None:
    app = create_app(ServerConfig(data_dir=data_dir, shutdown_grace=0.2), stub_registry())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print("PORT", site._server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
