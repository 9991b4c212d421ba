"""ComfyUI's Python import surface for custom node packs: `folder_paths`, `comfy.utils`, `comfy.model_management`.

Real packs import these at import time (reference §4.9). The code lives here, in our tree; the names become
importable through `install(paths)`, which the plugin loader calls before it imports any pack. The rules:

- Only when plugins are loaded: importing latentloom never makes `folder_paths` or `comfy` importable; `install`
  does, once per process, by appending a finder to the END of `sys.meta_path`. A finder at the end answers only
  for a name no other finder found, so a real module of that name that is importable (a ComfyUI checkout or a
  package on `sys.path`), or one already imported, always wins: we never shadow. The finder is lazy: a module is
  imported only when a pack imports it (`comfy.model_management` pulls in torch, `folder_paths` does not).
- The files `folder_paths.py` and `comfy/…` are imported only under those ComfyUI names (classes report
  `comfy.model_management.InterruptProcessingException`, as in ComfyUI), never as `nodes.comfy_compat.…`. Their
  state lives here (the bound data folder, the folder registry, the running node), so it is one state whatever
  imports them. `comfy`'s submodules are the files of `comfy/`; any other `comfy.x` fails to import, honestly.
- `install(paths)` (re)binds `folder_paths` to the data folder whose plugins are being loaded: the running
  server's or CLI's `DataPaths`. ComfyUI's API is process-global; so is this binding (the last load wins).
- The node that is running: `nodes.comfy_v1` sets it (`running(ctx)`) around every V1 FUNCTION call, async
  FUNCTIONs included; `comfy.utils.ProgressBar`, the interrupt checks and `PromptServer.instance.client_id` read it
  (`current_context()`), so they report through that node's `Context` like our own nodes do.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import sys
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from nodes.paths import MODEL_EXTENSIONS, MODEL_FOLDERS, DataPaths

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

    from nodes.api import Context

HERE = Path(__file__).parent
# ComfyUI name → file here. A package's submodules are found through its __path__, so `comfy.utils` needs no row.
ALIASES = {"folder_paths": HERE / "folder_paths.py", "comfy": HERE / "comfy" / "__init__.py"}
# ComfyUI's folder keys beyond ours, and its legacy names (§7.1).
EXTRA_FOLDERS = ("model_patches", "audio_encoders")
LEGACY_KEYS = {"clip": "text_encoders", "unet": "diffusion_models"}

_CURRENT: ContextVar[Context | None] = ContextVar("latentloom_comfy_node", default=None)


class CompatState:
    """What the ComfyUI-named modules share: the bound data folder and ComfyUI's folder registry."""

    def __init__(self) -> None:
        self.paths: DataPaths | None = None
        # {kind: ([folders], {extensions})}; mutated in place so references packs hold stay current.
        self.folders: dict[str, tuple[list[str], set[str]]] = {}

    def bind(self, paths: DataPaths) -> None:
        self.paths = paths
        self.folders.clear()
        models = paths.root / "models"
        for kind in (*MODEL_FOLDERS, *EXTRA_FOLDERS):
            self.folders[kind] = ([str(models / kind)], set(MODEL_EXTENSIONS))
        self.folders["configs"] = ([str(models / "configs")], {".yaml"})
        self.folders["diffusers"] = ([str(models / "diffusers")], {"folder"})
        self.folders["text_encoders"][0].append(str(models / "clip"))
        self.folders["diffusion_models"][0].insert(0, str(models / "unet"))
        self.folders["controlnet"][0].append(str(models / "t2i_adapter"))
        self.folders["custom_nodes"] = ([str(paths.custom_nodes)], set())

    def bound(self) -> DataPaths:
        if self.paths is None:
            raise RuntimeError("folder_paths is not bound to a data folder (nodes.plugins.load_plugins binds it)")
        return self.paths


STATE = CompatState()


class _ComfyNames(importlib.abc.MetaPathFinder):
    """Finds `folder_paths` and `comfy` in this package; installed last on `sys.meta_path` (see the rules)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        location = ALIASES.get(fullname)
        if location is None:
            return None
        package = [str(location.parent)] if location.name == "__init__.py" else None
        return importlib.util.spec_from_file_location(fullname, location, submodule_search_locations=package)


def install(paths: DataPaths) -> None:
    """Make the ComfyUI names importable (once per process) and bind `folder_paths` to `paths`."""
    STATE.bind(paths)
    if not any(isinstance(finder, _ComfyNames) for finder in sys.meta_path):
        sys.meta_path.append(_ComfyNames())


def current_context() -> Context | None:
    """The `Context` of the V1 node whose FUNCTION is running on this thread (or task), else None."""
    return _CURRENT.get()


@contextlib.contextmanager
def running(ctx: Context) -> Iterator[None]:
    """Mark `ctx` as the running node's context for the duration of the block."""
    token = _CURRENT.set(ctx)
    try:
        yield
    finally:
        _CURRENT.reset(token)
