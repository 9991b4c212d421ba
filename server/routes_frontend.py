"""Routes ComfyUI's frontend asks for besides the core API (protocol §1.2): plugin translations, plugin example
workflows and the model library, with ComfyUI's shapes.

- `GET /i18n`: `{lang: {...}}` merged from every loaded `custom_nodes/` plugin's `locales/<lang>/`:
  `main.json` at the top level, `nodeDefs.json`, `commands.json` and `settings.json` under those keys.
- `GET /workflow_templates`: `{plugin: [names]}` of the `.json` files in a plugin's example folder
  (`example_workflows/`, or `example`, `examples`, `workflow`, `workflows`); each is served at
  `GET /workflow_templates/{plugin}/{name}.json`.
- `GET /templates/index*.json`: the catalogue of ComfyUI's own templates (the comfyui-workflow-templates package,
  which we do not ship) is empty: `[]`, and `{}` for the logo index.
- `GET /global_subgraphs[/{id}]`: subgraph blueprints of the plugins (`.json` files in a plugin's `subgraphs/`),
  `{id: {source, name, info: {node_pack}}}`; one of them with its `data` (the file's text).
- `GET /view_metadata/{folder}?filename=x.safetensors`: the file's `__metadata__` (404 when it has none, as in
  ComfyUI).
- `GET /experiment/models[/{folder}]`: the model folders and their files with size and times;
  `GET /internal/folder_paths` (not under /api, as in ComfyUI): `{folder: [absolute paths]}`.
- `GET /internal/logs` (a JSON string of the recent log lines), `GET /internal/logs/raw` (`{entries: [{t, m}],
  size: {cols, rows}}`) and `PATCH /internal/logs/subscribe` (accepted; log lines are not streamed over the
  websocket) for the frontend's terminal panel; the records come from server.log_buffer.
A plugin file that is not valid JSON is logged and skipped; it never fails the route.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from nodes.paths import MODEL_FOLDERS, DataPaths, UnsafePathError
from nodes.plugins import Plugins
from server.api import PUBLIC, Route, json_response, read_query
from server.state import ENV, LOGS, PLUGINS

log = logging.getLogger(__name__)
LOCALE_SECTIONS = {"main.json": None, "nodeDefs.json": "nodeDefs", "commands.json": "commands",
                   "settings.json": "settings"}
EXAMPLE_FOLDERS = ("example_workflows", "example", "examples", "workflow", "workflows")
NOT_LIBRARY = ("configs", "custom_nodes")
TEMPLATE_INDEX = re.compile(r"index(\.[A-Za-z-]+)?\.json")  # model folders ComfyUI leaves out of the model library


class ModelFolder(BaseModel):
    name: str
    folders: list[str]


class ModelFile(BaseModel):
    name: str
    pathIndex: int
    modified: float
    created: float
    size: int


def plugin_folders(plugins: Plugins) -> dict[str, Path]:
    """name → folder of every loaded `custom_nodes/` plugin that is a package folder."""
    return {p.name: Path(p.location) for p in plugins.items
            if p.source == "custom_nodes" and p.status not in ("failed", "disabled") and Path(p.location).is_dir()}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("skipping %s: %s", path, exc)
        return None


def deep_merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = value


def translations(folders: dict[str, Path]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for folder in folders.values():
        locales = folder / "locales"
        if not locales.is_dir():
            continue
        for lang in sorted(p for p in locales.iterdir() if p.is_dir()):
            for filename, section in LOCALE_SECTIONS.items():
                path = lang / filename
                data = _read_json(path) if path.is_file() else None
                if isinstance(data, dict):
                    deep_merge(merged.setdefault(lang.name, {}), data if section is None else {section: data})
    return merged


def _example_folder(folder: Path) -> Path | None:
    return next((folder / name for name in EXAMPLE_FOLDERS if (folder / name).is_dir()), None)


def templates(folders: dict[str, Path]) -> dict[str, list[str]]:
    found = {}
    for name, folder in folders.items():
        examples = _example_folder(folder)
        names = sorted(p.stem for p in examples.glob("*.json")) if examples is not None else []
        if names:
            found[name] = names
    return found


async def i18n(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(translations, plugin_folders(request.app[PLUGINS])))


async def workflow_templates(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(templates, plugin_folders(request.app[PLUGINS])))


async def workflow_template_file(request: web.Request) -> web.StreamResponse:
    folder = plugin_folders(request.app[PLUGINS]).get(request.match_info["plugin"])
    examples = _example_folder(folder) if folder is not None else None
    if examples is None:
        raise web.HTTPNotFound()
    try:
        path = DataPaths(examples).resolve(examples, request.match_info["file"])
    except UnsafePathError:
        raise web.HTTPForbidden() from None
    if path.suffix != ".json" or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Content-Type": "application/json", "X-Content-Type-Options": "nosniff"})


async def core_templates(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name == "index_logo.json":
        return json_response({})
    if TEMPLATE_INDEX.fullmatch(name):
        return json_response([])
    raise web.HTTPNotFound()


def blueprints(folders: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """id → entry with the file in `path` (left out of answers)."""
    found = {}
    for plugin, folder in folders.items():
        for path in sorted((folder / "subgraphs").glob("*.json")):
            key = hashlib.sha256(f"{plugin}/{path.name}".encode()).hexdigest()[:16]
            found[key] = {"source": "custom_node", "name": path.stem, "info": {"node_pack": plugin}, "path": path}
    return found


async def global_subgraphs(request: web.Request) -> web.Response:
    found = await asyncio.to_thread(blueprints, plugin_folders(request.app[PLUGINS]))
    return json_response({key: {k: v for k, v in entry.items() if k != "path"} for key, entry in found.items()})


async def global_subgraph(request: web.Request) -> web.Response:
    found = await asyncio.to_thread(blueprints, plugin_folders(request.app[PLUGINS]))
    entry = found.get(request.match_info["id"])
    if entry is None:
        raise web.HTTPNotFound()
    data = await asyncio.to_thread(entry.pop("path").read_text, encoding="utf-8")
    return json_response({**entry, "data": data})


def library_folders(paths: DataPaths) -> list[dict[str, Any]]:
    return [{"name": kind, "folders": [str(paths.models(kind))]} for kind in MODEL_FOLDERS if kind not in NOT_LIBRARY]


async def folder_paths(request: web.Request) -> web.Response:
    paths = request.app[ENV].paths
    return json_response(await asyncio.to_thread(lambda: {kind: [str(paths.models(kind))] for kind in MODEL_FOLDERS}))


def library_files(paths: DataPaths, kind: str) -> list[dict[str, Any]]:
    base = paths.models(kind)
    files = []
    for name in paths.model_files(kind):
        stat = (base / name).stat()
        files.append({"name": name, "pathIndex": 0, "modified": stat.st_mtime, "created": stat.st_ctime,
                      "size": stat.st_size})
    return files


class MetadataQuery(BaseModel):
    filename: str = Field(min_length=1, description="a .safetensors file of the folder")


def safetensors_metadata(paths: DataPaths, kind: str, filename: str) -> dict[str, str] | None:
    from nodes.sd.errors import CheckpointError
    from nodes.sd.statedict import read_safetensors_header

    try:
        path = paths.resolve(paths.models(kind), filename)
        metadata = read_safetensors_header(path)[1] if path.is_file() else {}
    except (UnsafePathError, CheckpointError, OSError):
        return None
    return metadata or None


async def view_metadata(request: web.Request) -> web.Response:
    kind, filename = request.match_info["folder"], read_query(request, MetadataQuery).filename
    if kind not in MODEL_FOLDERS or not filename.endswith(".safetensors"):
        raise web.HTTPNotFound()
    metadata = await asyncio.to_thread(safetensors_metadata, request.app[ENV].paths, kind, filename)
    if metadata is None:
        raise web.HTTPNotFound()
    return json_response(metadata)


async def experiment_models(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(library_folders, request.app[ENV].paths))


async def experiment_models_folder(request: web.Request) -> web.Response:
    kind = request.match_info["folder"]
    if kind not in MODEL_FOLDERS:
        raise web.HTTPNotFound(text=f"unknown model folder {kind!r}")
    return json_response(await asyncio.to_thread(library_files, request.app[ENV].paths, kind))


async def logs(request: web.Request) -> web.Response:
    return json_response("".join(f"{e['t']} - {e['m']}" for e in list(request.app[LOGS].entries)))


async def logs_raw(request: web.Request) -> web.Response:
    size = shutil.get_terminal_size()
    return json_response({"entries": list(request.app[LOGS].entries),
                          "size": {"cols": size.columns, "rows": size.lines}})


async def logs_subscribe(request: web.Request) -> web.Response:
    return web.Response(status=200)


ROUTES = [
    Route("GET", "/i18n", i18n, "Translations of the plugins' locales/ folders, merged per language", "frontend",
          responses={200: ("{lang: translations}", dict[str, Any])}),
    Route("GET", "/workflow_templates", workflow_templates, "Example workflows of the plugins", "frontend",
          responses={200: ("{plugin: [template names]}", dict[str, list[str]])}),
    Route("GET", "/workflow_templates/{plugin}/{file}", workflow_template_file, "One example workflow of a plugin",
          "frontend", responses={200: ("the workflow", dict[str, Any]), 404: ("no such template", None)}),
    Route("GET", "/global_subgraphs", global_subgraphs, "Subgraph blueprints of the plugins (without data)",
          "frontend", responses={200: ("{id: {source, name, info}}", dict[str, Any])}),
    Route("GET", "/global_subgraphs/{id}", global_subgraph, "One subgraph blueprint with its data", "frontend",
          responses={200: ("{source, name, info, data}", dict[str, Any]), 404: ("unknown id", None)}),
    Route("GET", "/view_metadata/{folder}", view_metadata, "The __metadata__ of a .safetensors model file", "models",
          query=MetadataQuery,
          responses={200: ("metadata", dict[str, str]), 404: ("no such file or no metadata", None)}),
    Route("GET", "/experiment/models", experiment_models, "Model folders for the model library", "models",
          responses={200: ("folders", list[ModelFolder])}),
    Route("GET", "/experiment/models/{folder}", experiment_models_folder, "Model files of a folder, with details",
          "models", responses={200: ("files", list[ModelFile]), 404: ("unknown folder", None)}),
    Route("GET", "/internal/folder_paths", folder_paths, "Model folders with their absolute paths", "models",
          responses={200: ("{folder: [paths]}", dict[str, list[str]])}, alias=False),
    Route("GET", "/internal/logs", logs, "The recent log lines as one string", "system",
          responses={200: ("log text", str)}, alias=False),
    Route("GET", "/internal/logs/raw", logs_raw, "The recent log records and the terminal size", "system",
          responses={200: ("{entries: [{t, m}], size: {cols, rows}}", dict[str, Any])}, alias=False),
    Route("PATCH", "/internal/logs/subscribe", logs_subscribe, "Accepted; log lines are not streamed", "system",
          responses={200: ("accepted", None)}, alias=False),
]


def add_template_files(app: web.Application) -> None:
    """ComfyUI serves its templates package at `/templates/` (not under /api); before the frontend's catch-all."""
    app.router.add_get("/templates/{name}", core_templates, name=PUBLIC + "templates")
