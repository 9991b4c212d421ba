"""The aiohttp application: one factory (`create_app`) and the `serve` command.

`create_app` wires the pieces and has no side effects: the queue store (SQLite in the data folder), the executor
and the queue worker are created when the app starts (`cleanup_ctx`) and stopped when it stops; websockets are
closed in `on_shutdown`, before the worker finishes or re-queues the running prompt. At start, prompts that were
running when a previous process died are re-queued or failed (`interrupted_prompts`), and `temp/` is emptied as
ComfyUI does. Routes are grouped by topic (routes_prompt, routes_jobs, routes_files, routes_info, routes_userdata,
routes_frontend, routes_ws) and each is also served under `/api`; the OpenAPI document and the docs page come from
the same route table; routes that ComfyUI packs registered on `PromptServer.instance.routes` follow
(server.comfy_server); the editor's files (or another frontend build, server.static) are registered last.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
from pathlib import Path
from typing import AsyncIterator

from aiohttp import web

from executor.disk_cache import FOLDER as DISK_CACHE, output_cache
from executor.run import DEFAULT_CACHE_BYTES, Executor
from executor.store_sqlite import DB_NAME, SqliteQueueStore
from nodes.api import Environment
from nodes.registry import Registry
from nodes.plugins import Plugins
from server import (comfy_server, routes_files, routes_frontend, routes_info, routes_jobs, routes_models,
                    routes_plugins, routes_prompt, routes_userdata, routes_ws)
from server.api import Route, add_routes
from server.config import ExposureError, FrontEndError, ServerConfig, listen_addresses
from server.hub import Hub
from server.log_buffer import keep_logs
from server.openapi import add_openapi_routes
from server.ray_dispatch import RayDispatcher, RaySetupError, start_workers
from server.security import make_middlewares
from server.state import CONFIG, ENV, EXECUTOR, HUB, PLUGINS, REGISTRY, STORE, USERDATA, WORKER
from server.static import add_static_routes
from server.userdata import UserData
from server.worker import Worker

log = logging.getLogger("latentloom.server")


def api_routes() -> list[Route]:
    return [*routes_prompt.ROUTES, *routes_files.ROUTES, *routes_info.ROUTES, *routes_plugins.ROUTES,
            *routes_userdata.ROUTES, *routes_frontend.ROUTES, *routes_jobs.ROUTES,
            *routes_ws.ROUTES, *routes_models.ROUTES]


def create_app(config: ServerConfig | None = None, registry: Registry | None = None,
               plugins: Plugins | None = None) -> web.Application:
    """The application. `registry` defaults to the built-in nodes and the data folder's plugins
    (`nodes.builtin.full_registry`); a registry passed in comes with `plugins` (default: none)."""
    config = config if config is not None else ServerConfig()
    config.check_exposure()
    if registry is None:
        from nodes.builtin import full_registry

        comfy_server.PromptServer()  # a fresh route table for the packs about to be imported
        registry, plugins = full_registry(config.data_paths(), plugins=config.plugins)
    elif plugins is None:
        comfy_server.PromptServer()  # no packs: no routes left by packs loaded for another app
    app = web.Application(client_max_size=config.max_upload_size, middlewares=make_middlewares(config))
    app[CONFIG] = config
    app[REGISTRY] = registry
    app[PLUGINS] = plugins if plugins is not None else Plugins()
    app[ENV] = Environment(config.data_paths(), previews=config.preview, allow_pickle=config.allow_pickle,
                           precision=config.precision, compile=config.compile)
    app[HUB] = Hub(config.max_upload_size)
    app[USERDATA] = UserData(app[ENV].paths.root / "user", multi_user=config.multi_user)
    routes = api_routes()
    add_routes(app, routes)
    add_openapi_routes(app, routes)
    routes_plugins.add_plugin_files(app)
    routes_frontend.add_template_files(app)
    comfy_server.attach(app, app[HUB])  # routes packs put on PromptServer.instance.routes, before the editor's catch-all
    add_static_routes(app)
    app.cleanup_ctx.append(engine)
    app.cleanup_ctx.append(routes_models.pull_pool)
    app.cleanup_ctx.append(keep_logs)
    app.on_shutdown.append(close_websockets)
    return app


async def engine(app: web.Application) -> AsyncIterator[None]:
    """Store, executor and worker for the app's lifetime."""
    config, env = app[CONFIG], app[ENV]
    if config.wipe_temp:
        empty_folder(env.paths.temp)
    store = SqliteQueueStore(env.paths.root / DB_NAME, history_max=config.history_max)
    recovered = store.recover(config.interrupted_prompts)
    if recovered:
        log.warning("%d prompt(s) were running when the server last stopped: %s (%s)", len(recovered),
                    ", ".join(recovered), "re-queued" if config.interrupted_prompts == "requeue" else "failed")
    executor = Executor(env, output_cache(config.cache_bytes or DEFAULT_CACHE_BYTES, env.paths.root / DISK_CACHE,
                                          config.disk_cache_bytes))
    if config.ray_address is None:
        worker = Worker(store=store, registry=app[REGISTRY], env=env, executor=executor, hub=app[HUB],
                        preview=config.preview, preview_size=config.preview_size)
    else:
        worker = await ray_worker(config, app, store)
    app[STORE], app[EXECUTOR], app[WORKER] = store, executor, worker
    worker.start()
    try:
        yield
    finally:
        await worker.stop(config.shutdown_grace)
        store.close()


async def ray_worker(config: ServerConfig, app: web.Application, store) -> RayDispatcher:
    env = app[ENV]
    slots, owns_ray = await asyncio.to_thread(
        start_workers, config.ray_address, config.ray_workers, config.ray_worker_data_dir, env.paths.root,
        plugins=config.plugins, allow_pickle=config.allow_pickle)
    return RayDispatcher(store=store, registry=app[REGISTRY], env=env, hub=app[HUB], slots=slots, owns_ray=owns_ray,
                         preview=config.preview, preview_size=config.preview_size)


async def close_websockets(app: web.Application) -> None:
    await app[HUB].close_all()


def empty_folder(folder: Path) -> None:
    """Remove what is inside `folder` (never following a symlink out of it)."""
    for entry in folder.iterdir():
        try:
            if entry.is_symlink() or not entry.is_dir():
                entry.unlink()
            else:
                shutil.rmtree(entry)
        except OSError as exc:
            log.warning("could not remove %s: %s", entry, exc)


def serve(args: argparse.Namespace) -> int:
    """`main.py serve`: run until SIGINT/SIGTERM; 2 when the settings would expose the server or name no usable
    frontend, 1 on bind errors."""
    try:
        config = ServerConfig.from_args(args)
        config.check_exposure()
    except (ExposureError, FrontEndError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not config.loopback_only and config.auth_token is None:
        log.warning("serving on %s WITHOUT a token (--no-auth): anyone who reaches this port can run workflows "
                    "and read every output", config.listen)
    app = create_app(config)
    hosts = listen_addresses(config.listen)
    shown = hosts[0] if hosts[0] not in ("0.0.0.0", "::") else "127.0.0.1"
    shown = f"[{shown}]" if ":" in shown else shown
    try:
        web.run_app(app, host=hosts, port=config.port, access_log=None,
                    print=lambda _: print(f"latentloom serving on http://{shown}:{config.port}/ "
                                          f"(data: {app[ENV].paths.root})", flush=True))
    except OSError as exc:
        print(f"error: cannot listen on {config.listen}:{config.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except RaySetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
