"""Read-only information routes: node types, model folders, features, system statistics (protocol §1.2, §1.8,
§1.9) and the workers that run prompts (`GET /workers`, ours). Node listings compute dynamic combo options (file lists) on every call, in a thread: a large models folder
must not stall the event loop.
"""
from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from nodes.paths import MODEL_FOLDERS, UnsafePathError
from nodes.precision import Precision
from nodes.registry import render_object_info
from nodes.sd.errors import CheckpointError
from nodes.sd.suggest import summarize
from server import schemas as s
from server.api import ApiError, Route, json_response, read_query
from server.state import CONFIG, ENV, REGISTRY, WORKER

COMFYUI_BASELINE = "0.3.64"  # the ComfyUI release whose protocol this server speaks


async def object_info(request: web.Request) -> web.Response:
    registry, env = request.app[REGISTRY], request.app[ENV]
    return json_response(await asyncio.to_thread(registry.object_info, env))


async def object_info_one(request: web.Request) -> web.Response:
    name = request.match_info["node_class"]
    spec = request.app[REGISTRY].get(name)
    if spec is None:
        return json_response({})
    entry = await asyncio.to_thread(render_object_info, spec, request.app[ENV])
    if name != spec.name:  # asked by alias: answer under the alias, as the full listing does
        entry = {**entry, "name": name, "alias_of": spec.name}
    return json_response({name: entry})


async def embeddings(request: web.Request) -> web.Response:
    files = await asyncio.to_thread(request.app[ENV].paths.model_files, "embeddings")
    return json_response([os.path.splitext(f)[0] for f in files])


async def models(request: web.Request) -> web.Response:
    return json_response(list(MODEL_FOLDERS))


async def models_folder(request: web.Request) -> web.Response:
    folder = request.match_info["folder"]
    if folder not in MODEL_FOLDERS:
        raise web.HTTPNotFound(text=f"unknown model folder {folder!r}")
    return json_response(await asyncio.to_thread(request.app[ENV].paths.model_files, folder))


async def checkpoint_info(request: web.Request) -> web.Response:
    """Family and suggested image size of a checkpoint (the editor sizes its default workflow with it)."""
    name = read_query(request, s.CheckpointQuery).name
    env = request.app[ENV]
    try:
        path = env.paths.model_path("checkpoints", name)
        if name not in await asyncio.to_thread(env.paths.model_files, "checkpoints"):
            raise ApiError(404, "not_found", "No such checkpoint", f"{name!r} is not in models/checkpoints")
        summary = await asyncio.to_thread(summarize, path, allow_pickle=env.allow_pickle)
    except (UnsafePathError, CheckpointError) as exc:
        raise ApiError(400, "invalid_checkpoint", "Not a usable checkpoint", str(exc)) from None
    return json_response({"name": name, **summary.to_json()})


async def features(request: web.Request) -> web.Response:
    return json_response({"supports_preview_metadata": True,
                          "max_upload_size": float(request.app[CONFIG].max_upload_size)})


async def system_stats(request: web.Request) -> web.Response:
    stats = await asyncio.to_thread(collect_stats, request.app[ENV].precision)
    worker = request.app.get(WORKER)
    if worker is not None:
        stats["devices"] += worker.remote_devices()
    return json_response(stats)


async def workers(request: web.Request) -> web.Response:
    worker = request.app.get(WORKER)
    return json_response(worker.workers() if worker is not None else [])


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def memory() -> tuple[int, int]:
    """(total, available) RAM in bytes, from /proc/meminfo where there is one."""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        values = {}
        for line in meminfo.read_text().splitlines():
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) * 1024 if rest.split() else 0
        return values.get("MemTotal", 0), values.get("MemAvailable", values.get("MemFree", 0))
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0, 0


def devices(ram_total: int, ram_free: int) -> list[dict[str, Any]]:
    # torch is only asked when something already imported it: the stats must not cost a multi-second import.
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        found = []
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            reserved = torch.cuda.memory_reserved(index)
            active = torch.cuda.memory_allocated(index)
            found.append({"name": f"cuda:{index} {torch.cuda.get_device_name(index)}", "type": "cuda",
                          "index": index, "vram_total": total, "vram_free": free + reserved - active,
                          "torch_vram_total": reserved, "torch_vram_free": reserved - active})
        return found
    return [{"name": "cpu", "type": "cpu", "index": None, "vram_total": ram_total, "vram_free": ram_free,
             "torch_vram_total": ram_total, "torch_vram_free": ram_free}]


def precision_stats(precision: Precision) -> dict[str, Any]:
    """The precision asked for, and the dtypes it gives on the compute device once torch is loaded."""
    stats: dict[str, Any] = {"requested": precision.describe()}
    if "torch" in sys.modules:  # as for the devices: no torch import for the stats
        from nodes.identity import dtype_names

        stats["dtypes"] = dtype_names(precision.policy())
    return stats


def collect_stats(precision: Precision) -> dict[str, Any]:
    total, free = memory()
    return {
        "system": {"os": os.name, "ram_total": total, "ram_free": free, "comfyui_version": COMFYUI_BASELINE,
                   "latentloom_version": _version("latentloom") or "0.1.0",
                   "required_frontend_version": "", "python_version": sys.version,
                   "pytorch_version": _version("torch"), "embedded_python": False, "argv": sys.argv,
                   "platform": platform.platform(), "latentloom_precision": precision_stats(precision)},
        "devices": devices(total, free),
    }


ROUTES = [
    Route("GET", "/object_info", object_info, "Every node type (ComfyUI's NodeInfo shape)", "nodes",
          responses={200: ("node types", s.NodeInfoResponse)}),
    Route("GET", "/object_info/{node_class}", object_info_one, "One node type ({} when unknown)", "nodes",
          responses={200: ("node type", s.NodeInfoResponse)}),
    Route("GET", "/embeddings", embeddings, "Embedding names (models/embeddings, no extension)", "models",
          responses={200: ("names", list[str])}),
    Route("GET", "/models", models, "Model folder keys", "models", responses={200: ("folders", list[str])}),
    Route("GET", "/models/{folder}", models_folder, "Model files of a folder (sorted relative paths)", "models",
          responses={200: ("files", list[str]), 404: ("unknown folder", None)}),
    Route("GET", "/checkpoint_info", checkpoint_info, "Family and suggested image size of a checkpoint", "models",
          query=s.CheckpointQuery, responses={200: ("checkpoint", s.CheckpointInfo), 400: ("not usable", None),
                                              404: ("unknown checkpoint", None)}),
    Route("GET", "/features", features, "Server features", "system",
          responses={200: ("features", s.FeaturesResponse)}),
    Route("GET", "/system_stats", system_stats, "Versions, memory and devices (with Ray, each worker's too)",
          "system", responses={200: ("stats", s.SystemStatsResponse)}),
    Route("GET", "/workers", workers, "The workers that run prompts: this process, or each Ray worker (ours)",
          "system", responses={200: ("workers", list[s.WorkerInfo])}),
]
