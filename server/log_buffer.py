"""The recent log records, kept while the app runs, for ComfyUI's `/internal/logs` routes (server.routes_frontend):
`{t, m}` entries as ComfyUI keeps them (ISO time, formatted message with its newline), the last 300.
"""
from __future__ import annotations

import logging
from collections import deque
from datetime import datetime
from typing import AsyncIterator

from aiohttp import web

LOG_LINES = 300  # ComfyUI's


class LogBuffer(logging.Handler):
    """The last log records as ComfyUI's `{t, m}` entries."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: deque[dict[str, str]] = deque(maxlen=LOG_LINES)

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append({"t": datetime.fromtimestamp(record.created).isoformat(),
                             "m": self.format(record) + "\n"})


async def keep_logs(app: web.Application) -> AsyncIterator[None]:
    """While the app runs, keep the root logger's records for `/internal/logs`."""
    from server.state import LOGS  # here: server.state imports this module

    app[LOGS] = LogBuffer()
    logging.getLogger().addHandler(app[LOGS])
    try:
        yield
    finally:
        logging.getLogger().removeHandler(app[LOGS])
