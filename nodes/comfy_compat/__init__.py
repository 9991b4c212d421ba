"""ComfyUI's Python import surface for custom node packs: `folder_paths`, `comfy.*`, `comfy_extras.*`, `node_helpers`,
`latent_preview`, `execution`, `comfy_api.latest`, `comfy_execution.graph_utils`.

Real packs import these at import time (reference §4.9). The code lives here, in our tree; the names become
importable through `install(paths)`, which the plugin loader calls before it imports any pack. The rules:

- Only when plugins are loaded: importing latentloom never makes `folder_paths` or `comfy` importable; `install`
  does, once per process, by appending a finder to the END of `sys.meta_path`. A finder at the end answers only
  for a name no other finder found, so a real module of that name that is importable (a ComfyUI checkout or a
  package on `sys.path`), or one already imported, always wins: we never shadow. The finder is lazy: a module is
  imported only when a pack imports it (`comfy.model_management` pulls in torch, `folder_paths` does not).
- `comfy_extras.nodes_<x>` holds the ComfyUI classes (`nodes.comfy_face`) of our built-in nodes that ComfyUI keeps
  in that module; a module we have no node of does not exist. `comfy.sd`, `comfy.ldm`, `comfy.model_patcher` and
  the rest of ComfyUI's model machinery fail to import with an error saying so.
- The files here are imported only under those ComfyUI names (classes report
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
from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterator

from nodes.paths import MODEL_EXTENSIONS, MODEL_FOLDERS, DataPaths

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

    from nodes.api import Context, Environment

HERE = Path(__file__).parent
# ComfyUI name → file here. A package's submodules are found through its __path__, so `comfy.utils` needs no row.
ALIASES = {name: HERE / f"{name}.py" for name in ("folder_paths", "node_helpers", "latent_preview", "execution")}
ALIASES.update({name: HERE / name / "__init__.py" for name in ("comfy", "comfy_extras", "comfy_api",
                                                               "comfy_execution")})
# ComfyUI's model machinery, which packs reaching into models import; named in the error instead of a bare
# "No module named".
MODEL_INTERNALS = ("comfy.sd", "comfy.ldm", "comfy.model_patcher", "comfy.model_base", "comfy.model_detection",
                   "comfy.controlnet", "comfy.clip_vision", "comfy.lora", "comfy.k_diffusion", "comfy.ops",
                   "comfy.supported_models", "comfy.latent_formats", "comfy.hooks", "comfy.patcher_extension")
# ComfyUI's folder keys beyond ours, and its legacy names (§7.1).
EXTRA_FOLDERS = ("model_patches", "audio_encoders")
LEGACY_KEYS = {"clip": "text_encoders", "unet": "diffusion_models"}

_CURRENT: ContextVar[Context | None] = ContextVar("latentloom_comfy_node", default=None)


class CompatState:
    """What the ComfyUI-named modules share: the bound data folder and ComfyUI's folder registry."""

    def __init__(self) -> None:
        self.paths: DataPaths | None = None
        self._environment: Environment | None = None
        # {kind: ([folders], {extensions})}; mutated in place so references packs hold stay current.
        self.folders: dict[str, tuple[list[str], set[str]]] = {}

    def bind(self, paths: DataPaths) -> None:
        self.paths, self._environment = paths, None
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

    def environment(self) -> Environment:
        """The environment (so one model manager) of ComfyUI's node classes called outside a running node."""
        if self._environment is None:
            from nodes.api import Environment

            self._environment = Environment(self.bound())
        return self._environment


STATE = CompatState()


class _ComfyNames(importlib.abc.MetaPathFinder):
    """Finds `folder_paths` and `comfy` in this package; installed last on `sys.meta_path` (see the rules)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        location = ALIASES.get(fullname)
        if location is not None:
            package = [str(location.parent)] if location.name == "__init__.py" else None
            return importlib.util.spec_from_file_location(fullname, location, submodule_search_locations=package)
        if fullname.startswith("comfy_extras.nodes_"):
            from nodes.comfy_face import module_members

            if module_members(fullname):
                return importlib.util.spec_from_loader(fullname, _NodeModule())
        if fullname.split(".")[0] == "comfy" and any(fullname == m or fullname.startswith(m + ".")
                                                     for m in MODEL_INTERNALS):
            raise ModuleNotFoundError(
                f"latentloom does not provide {fullname}: it has none of ComfyUI's model classes (model patchers, "
                "comfy.sd loaders, comfy.ldm networks); a pack that builds or patches ComfyUI models cannot run here",
                name=fullname)
        return None


class _NodeModule(importlib.abc.Loader):
    """A `comfy_extras.nodes_*` module we have no file for: the ComfyUI classes of ours it holds."""

    def create_module(self, spec: ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        from nodes.comfy_face import module_members

        vars(module).update(module_members(module.__name__))


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
