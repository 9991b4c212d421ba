"""Typed keys of the objects an app shares between its routes (aiohttp `web.AppKey`s).

`CONFIG`, `REGISTRY`, `PLUGINS`, `ENV`, `HUB` and `USERDATA` exist from the app factory on; `STORE`, `EXECUTOR`,
`WORKER` and `LOGS` are created when the app starts (its `cleanup_ctx`) and are gone after it stops.
"""
from __future__ import annotations

from aiohttp import web

from executor.queue import QueueStore
from executor.run import Executor
from nodes.api import Environment
from nodes.plugins import Plugins
from nodes.registry import Registry
from server.config import ServerConfig
from server.hub import Hub
from server.log_buffer import LogBuffer
from server.userdata import UserData
from server.worker import QueueWorker

CONFIG = web.AppKey("config", ServerConfig)
REGISTRY = web.AppKey("registry", Registry)
PLUGINS = web.AppKey("plugins", Plugins)
ENV = web.AppKey("env", Environment)
HUB = web.AppKey("hub", Hub)
USERDATA = web.AppKey("userdata", UserData)
STORE = web.AppKey("store", QueueStore)
EXECUTOR = web.AppKey("executor", Executor)
WORKER = web.AppKey("worker", QueueWorker)
LOGS = web.AppKey("logs", LogBuffer)
