"""Plugins: node packs found in the data folder's `custom_nodes/` and in installed packages.

Where from, in this order:
1. `custom_nodes/<name>.py` or `custom_nodes/<name>/__init__.py`, in name order; `__pycache__`, hidden entries and
   non-`.py` files are skipped; a name ending in `.disabled` is listed as disabled and not imported.
2. The entry points of the group `latentloom.nodes` of installed distributions (`[project.entry-points.
   "latentloom.nodes"] my_pack = "my_pack.nodes"`); each names a module.

What a plugin module offers (both may be present):
- our node classes (`@node`-decorated `Node` subclasses) defined in the plugin (module or submodules) and
  reachable as attributes of the module;
- a ComfyUI V1 pack: `NODE_CLASS_MAPPINGS`, `NODE_DISPLAY_NAME_MAPPINGS`, each class adapted once by
  `nodes.comfy_v1.adapt_v1`;
- else a ComfyUI V3 pack: `comfy_entrypoint()` (sync or async) returning a `comfy_api.latest.ComfyExtension`;
  after its `on_load()`, each class of `get_node_list()` is registered under its schema's `node_id` as the V1
  class `comfy_api.latest.io.v1_class` synthesises;
- `WEB_DIRECTORY` (or `[tool.comfy] web` in the pack's pyproject.toml): JavaScript served under
  `/extensions/<plugin>/` and loaded by the editor; `__version__` (or the pyproject / distribution version).

Isolation: each plugin is imported on its own, under the module name `custom_nodes_x_<name>` (never by editing
`sys.path`); an import that raises (even `SystemExit`) fails only that plugin, and a node that is broken or whose
name is taken (built-ins cannot be overridden; the first plugin to claim a name keeps it) fails only that node.
Every outcome is logged and kept in a `PluginInfo` (what `GET /plugins` lists). A pack whose import fails for a
missing module also gets, in its report and the log, the pip command that would bring it into this interpreter:
its `requirements.txt`, or the library itself when it is one of latentloom's own dependencies that packs take
for granted (torchvision, …); nothing is ever installed for it.

ComfyUI's import surface: before the first plugin is imported, `nodes.comfy_compat.install(paths)` makes
`folder_paths`, `comfy.utils` and `comfy.model_management` importable (never shadowing real modules of those
names) and binds `folder_paths` to this data folder; `server.PromptServer` and `nodes.MAX_RESOLUTION` are names of
our own packages.
"""
from __future__ import annotations

import dataclasses
import inspect
import importlib
import importlib.metadata
import importlib.util
import logging
import re
import shlex
import sys
import time
import tomllib
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal
from urllib.parse import quote

from nodes.api import NodeDeclarationError, NodeSpec
from nodes.comfy_compat import ALIASES as COMFY_NAMES, install as install_comfy_names
from nodes.comfy_v1 import adapt_v1, await_result
from nodes.paths import DataPaths
from nodes.registry import Registry

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "latentloom.nodes"
MODULE_PREFIX = "custom_nodes_x_"
Status = Literal["loaded", "partial", "failed", "disabled"]
# Libraries ComfyUI's requirements bring that packs import unlisted; dependencies of latentloom (pyproject.toml),
# named here so that a broken install gets the right advice. Module name = distribution name for each.
RUNTIME_LIBRARIES = ("torchvision", "kornia", "einops", "spandrel")


@dataclass
class PluginInfo:
    """One plugin and how loading it went."""

    name: str
    source: Literal["custom_nodes", "entry_point"]
    location: str
    version: str | None = None
    status: Status = "loaded"
    error: str | None = None                 # why the whole plugin failed (exception and traceback tail)
    nodes: list[str] = field(default_factory=list)
    node_errors: dict[str, str] = field(default_factory=dict)
    web_directory: Path | None = None
    seconds: float = 0.0
    install: str | None = None               # the command installing the pack's requirements, when one is missing

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "location": self.location, "version": self.version,
                "status": self.status, "error": self.error, "nodes": list(self.nodes),
                "node_errors": dict(self.node_errors), "web": self.web_directory is not None,
                "seconds": round(self.seconds, 3), "install": self.install}


@dataclass
class Plugins:
    """Every plugin seen, and their web extensions."""

    items: list[PluginInfo] = field(default_factory=list)

    def get(self, name: str) -> PluginInfo | None:
        return next((p for p in self.items if p.name == name), None)

    def extension_urls(self) -> list[str]:
        """`GET /extensions`: the URL of every `.js` file of every loaded plugin's web directory."""
        urls = []
        for plugin in self.items:
            if plugin.web_directory is None or plugin.status in ("failed", "disabled"):
                continue
            for path in sorted(plugin.web_directory.rglob("*.js")):
                if path.is_file():
                    rel = path.relative_to(plugin.web_directory).as_posix()
                    urls.append(f"/extensions/{quote(plugin.name)}/{quote(rel)}")
        return urls

    def web_file(self, name: str, rel: str) -> Path | None:
        """The file `rel` of plugin `name`'s web directory, or None (also for anything leaving that folder)."""
        plugin = self.get(name)
        if plugin is None or plugin.web_directory is None or plugin.status in ("failed", "disabled"):
            return None
        root = plugin.web_directory.resolve()
        if "\0" in rel or rel.startswith(("/", "\\")):
            return None
        target = (root / rel).resolve()
        return target if root in target.parents and target.is_file() else None

    def to_json(self) -> list[dict[str, Any]]:
        return [p.to_json() for p in self.items]


def load_plugins(registry: Registry, paths: DataPaths, *, entry_points: bool = True) -> Plugins:
    """Import every plugin and register its nodes into `registry` (built-ins already in it keep their names)."""
    plugins = Plugins()
    install_comfy_names(paths)
    for entry in discover_custom_nodes(paths.custom_nodes):
        plugins.items.append(_load_custom_node(registry, entry))
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if plugins.get(ep.name) is not None:
                plugins.items.append(PluginInfo(ep.name, "entry_point", ep.value, status="failed",
                                                error=f"a plugin named {ep.name!r} is already loaded"))
                continue
            plugins.items.append(_load_entry_point(registry, ep))
    for plugin in plugins.items:
        _log(plugin)
    return plugins


def discover_custom_nodes(folder: Path) -> list[Path]:
    """The plugin entries of a custom_nodes folder, in name order (disabled ones included)."""
    found = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name == "__pycache__" or entry.name.startswith("."):
            continue
        if entry.is_dir() or entry.suffix == ".py" or entry.name.endswith(".disabled"):
            found.append(entry)
    return found


def _load_custom_node(registry: Registry, entry: Path) -> PluginInfo:
    name = entry.name.removesuffix(".py")
    info = PluginInfo(name, "custom_nodes", str(entry))
    if entry.name.endswith(".disabled"):
        info.name, info.status = entry.name.removesuffix(".disabled").removesuffix(".py"), "disabled"
        return info
    started = time.perf_counter()
    init = entry / "__init__.py" if entry.is_dir() else entry
    if not init.is_file():
        info.status, info.error = "failed", f"{entry.name} is a folder without __init__.py"
        return info
    module = _import_isolated(MODULE_PREFIX + re.sub(r"\W", "_", name), init, entry.is_dir(), info)
    if module is not None:
        pyproject = _pyproject(entry) if entry.is_dir() else {}
        info.version = _module_version(module) or pyproject.get("project", {}).get("version")
        web = getattr(module, "WEB_DIRECTORY", None) or pyproject.get("tool", {}).get("comfy", {}).get("web")
        info.web_directory = _web_directory(init.parent, web, info)
        _register(registry, module, info, python_module=f"custom_nodes.{name}")
    info.seconds = time.perf_counter() - started
    return info


def _load_entry_point(registry: Registry, ep: importlib.metadata.EntryPoint) -> PluginInfo:
    info = PluginInfo(ep.name, "entry_point", ep.value)
    started = time.perf_counter()
    try:
        module = ep.load()
    except (Exception, SystemExit) as exc:
        info.status, info.error = "failed", _describe(exc)
        return info
    if not isinstance(module, ModuleType):
        info.status, info.error = "failed", f"entry point {ep.value!r} is not a module"
        return info
    info.version = _module_version(module) or (ep.dist.version if ep.dist is not None else None)
    if getattr(module, "__file__", None):
        info.web_directory = _web_directory(Path(module.__file__).parent, getattr(module, "WEB_DIRECTORY", None),
                                            info)
    _register(registry, module, info, python_module=module.__name__)
    info.seconds = time.perf_counter() - started
    return info


def _import_isolated(module_name: str, init: Path, package: bool, info: PluginInfo) -> ModuleType | None:
    """Import one file or package under its own module name; a failure is recorded on `info`."""
    for key in [k for k in sys.modules if k == module_name or k.startswith(module_name + ".")]:
        del sys.modules[key]  # a plugin of the same name loaded earlier (another data folder) must not leak in
    spec = importlib.util.spec_from_file_location(
        module_name, init, submodule_search_locations=[str(init.parent)] if package else None)
    if spec is None or spec.loader is None:
        info.status, info.error = "failed", f"cannot import {init}"
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # a plugin may not take the server down, whatever it raises
        sys.modules.pop(module_name, None)
        info.status, info.error = "failed", _describe(exc)
        if isinstance(exc, ModuleNotFoundError):
            info.install = _install_hint(init.parent if package else None, exc)
        return None
    return module


def _install_hint(folder: Path | None, exc: ModuleNotFoundError) -> str | None:
    """The pip command that would bring the missing module: latentloom's own dependency when it is one (packs take
    ComfyUI's libraries for granted, so their requirements do not list them), else the pack folder's
    `requirements.txt`; None when there is none, or the module is the pack's own or part of ComfyUI. Nothing is
    installed for it."""
    pip = f"{shlex.quote(sys.executable)} -m pip install"
    top = (exc.name or "").split(".")[0]
    if top in RUNTIME_LIBRARIES:
        return f"{pip} {top}"
    requirements = folder / "requirements.txt" if folder is not None else None
    if requirements is None or not requirements.is_file() or top.startswith(MODULE_PREFIX) or top in COMFY_NAMES:
        return None
    return f"{pip} -r {shlex.quote(str(requirements))}"


def _register(registry: Registry, module: ModuleType, info: PluginInfo, *, python_module: str) -> None:
    """Add the module's nodes (ours, then V1 ones); per-node failures are recorded, the rest still load."""
    candidates: list[tuple[str, Any]] = []
    for spec in _own_specs(module):
        if spec.python_module == "nodes":
            spec = dataclasses.replace(spec, python_module=python_module)
        candidates.append((spec.name, spec))
    mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
    names = getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {}
    if mappings is not None and not isinstance(mappings, dict):
        info.node_errors["NODE_CLASS_MAPPINGS"] = "NODE_CLASS_MAPPINGS must be a dict {class_type: class}"
        mappings = {}
    if mappings is None and callable(getattr(module, "comfy_entrypoint", None)):
        mappings, names = _v3_nodes(module, info)
    for name, cls in (mappings or {}).items():
        try:
            spec = adapt_v1(name, cls, display_name=names.get(name) if isinstance(names, dict) else None,
                            python_module=python_module, version=info.version)
        except NodeDeclarationError as exc:
            info.node_errors[str(name)] = str(exc)
            continue
        candidates.append((name, spec))
    for name, spec in candidates:
        try:
            registry.add(spec)
        except NodeDeclarationError as exc:
            info.node_errors[name] = str(exc)
            continue
        info.nodes.append(name)
    if info.node_errors:
        info.status = "partial" if info.nodes else "failed"


def _v3_nodes(module: ModuleType, info: PluginInfo) -> tuple[dict[str, type], dict[str, str]]:
    """A V3 pack's nodes as V1 classes by node id, and their display names (`comfy_api.latest`)."""
    io = importlib.import_module("comfy_api.latest").io
    try:
        extension = _settled(module.comfy_entrypoint())
        _settled(extension.on_load())
        node_list = list(_settled(extension.get_node_list()))
    except Exception as exc:  # a broken extension fails this plugin only
        info.node_errors["comfy_entrypoint"] = _describe(exc)
        return {}, {}
    classes, names = {}, {}
    for node in node_list:
        try:
            schema, v1 = io.v1_class(node)
        except Exception as exc:
            info.node_errors[getattr(node, "__name__", repr(node))] = f"V3 schema: {_describe(exc)}"
            continue
        classes[schema.node_id] = v1
        if schema.display_name:
            names[schema.node_id] = schema.display_name
    return classes, names


def _settled(value: Any) -> Any:
    """The value, or what it resolves to when the pack's method was async."""
    return await_result(value) if inspect.isawaitable(value) else value


def _own_specs(module: ModuleType) -> list[NodeSpec]:
    prefix = module.__name__
    seen: dict[int, NodeSpec] = {}
    for obj in vars(module).values():
        if (isinstance(obj, type) and "__node_spec__" in vars(obj)
                and (obj.__module__ == prefix or obj.__module__.startswith(prefix + "."))):
            seen.setdefault(id(obj), obj.__node_spec__)
    return list(seen.values())


def _module_version(module: ModuleType) -> str | None:
    version = getattr(module, "__version__", None)
    return version if isinstance(version, str) else None


def _pyproject(folder: Path) -> dict[str, Any]:
    path = folder / "pyproject.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _web_directory(base: Path, web: Any, info: PluginInfo) -> Path | None:
    if not web:
        return None
    folder = (base / str(web)).resolve()
    if not folder.is_dir():
        info.node_errors["WEB_DIRECTORY"] = f"{web!r} is not a folder of the plugin"
        return None
    return folder


def _describe(exc: BaseException) -> str:
    """`Type: message (at file:line)`, the line being the innermost frame of the failure."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _log(plugin: PluginInfo) -> None:
    if plugin.status == "failed":
        log.error("plugin %s (%s) failed to load: %s", plugin.name, plugin.location,
                  plugin.error or "; ".join(f"{k}: {v}" for k, v in plugin.node_errors.items()))
        if plugin.install:
            log.error("plugin %s: a module it needs is missing; its requirements install with: %s", plugin.name,
                      plugin.install)
    elif plugin.status == "disabled":
        log.info("plugin %s is disabled", plugin.name)
    else:
        log.info("plugin %s: %d node(s) in %.2f s", plugin.name, len(plugin.nodes), plugin.seconds)
        for name, error in plugin.node_errors.items():
            log.error("plugin %s: node %s refused: %s", plugin.name, name, error)
