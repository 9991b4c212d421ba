"""`folder_paths`: ComfyUI's folder registry, over the data folder of the running server or CLI (reference §7.1).

Imported only as `folder_paths` (see `nodes.comfy_compat`). The data folder is the one whose plugins were loaded
last (`nodes.comfy_compat.install`). The rules that differ from, or sharpen, ComfyUI's:

- Names a pack receives are resolved with `DataPaths.resolve`: `get_full_path` answers None, and
  `get_annotated_filepath` raises `UnsafePathError` (a ValueError), for a name that would leave its folder
  (`..`, absolute paths, NUL bytes, a symlink pointing out), where ComfyUI would clamp or join blindly.
- File lists are walked afresh on each call (no cache): sorted relative paths with `/`, following symlinked
  folders, skipping hidden ones, filtered by lower-cased extension (an empty extension set keeps every file).
- Folders a pack adds (`add_model_folder_path`, or by editing `folder_names_and_paths`) are seen by packs only;
  our own loader nodes read the data folder's standard layout.
- `get_save_image_path` numbers files exactly as our SaveImage does (`nodes.images.output_names`).
- `models_dir`, `base_path` and the input/output/temp directory attributes are read when asked for, so they
  follow a re-bound data folder.
"""
from __future__ import annotations

import mimetypes
import os
import re
from pathlib import Path
from typing import Any

from nodes.comfy_compat import LEGACY_KEYS, STATE
from nodes.images import output_names
from nodes.paths import MODEL_EXTENSIONS, UnsafePathError

folder_names_and_paths = STATE.folders
supported_pt_extensions = set(MODEL_EXTENSIONS)
ANNOTATION = re.compile(r"^(?P<name>.*?) \[(?P<kind>input|output|temp)\]$")


DYNAMIC = {"base_path": lambda p: p.root, "models_dir": lambda p: p.root / "models",
           "input_directory": lambda p: p.input, "output_directory": lambda p: p.output,
           "temp_directory": lambda p: p.temp, "user_directory": lambda p: p.root / "user"}


def __getattr__(name: str) -> Any:
    if name in DYNAMIC:
        return str(DYNAMIC[name](STATE.bound()))
    raise AttributeError(f"module 'folder_paths' has no attribute {name!r} (latentloom provides part of it)")


def map_legacy(folder_name: str) -> str:
    """ComfyUI's old folder keys (`clip`, `unet`) → today's."""
    return LEGACY_KEYS.get(folder_name, folder_name)


def get_folder_paths(folder_name: str) -> list[str]:
    """The folders of a kind (a copy); KeyError for an unknown kind."""
    return list(folder_names_and_paths[map_legacy(folder_name)][0])


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    """Add a folder to a kind (first when `is_default`); a new kind lists every file until given extensions."""
    folder_name = map_legacy(folder_name)
    folders, _ = folder_names_and_paths.setdefault(folder_name, ([], set()))
    path = str(full_folder_path)
    if path in folders:
        if not is_default:
            return
        folders.remove(path)
    if is_default:
        folders.insert(0, path)
    else:
        folders.append(path)


def recursive_search(directory: str, excluded_dir_names: list[str] | None = None) -> tuple[list[str], dict[str, float]]:
    """(files under `directory` as sorted relative paths, {folder: mtime}); nothing when it does not exist."""
    if not os.path.isdir(directory):
        return [], {}
    excluded = set(excluded_dir_names or ()) | {".git"}
    files, mtimes = [], {directory: os.path.getmtime(directory)}
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in excluded and not d.startswith("."))
        for name in filenames:
            files.append(os.path.relpath(os.path.join(dirpath, name), directory).replace(os.sep, "/"))
        for name in dirnames:
            path = os.path.join(dirpath, name)
            mtimes[path] = os.path.getmtime(path)
    return sorted(files), mtimes


def filter_files_extensions(files: list[str], extensions: set[str] | list[str]) -> list[str]:
    """The files whose lower-cased extension is in `extensions` (all of them when it is empty), sorted."""
    wanted = {e.lower() for e in extensions}
    return sorted(f for f in files if not wanted or os.path.splitext(f)[1].lower() in wanted)


def filter_files_content_types(files: list[str], content_types: list[str]) -> list[str]:
    """The files whose guessed MIME type's major part (`image`, `video`, `audio`, `model`) is in `content_types`."""
    wanted = set(content_types)
    return [f for f in files if (mimetypes.guess_type(f, strict=False)[0] or "").split("/")[0] in wanted]


def get_filename_list(folder_name: str) -> list[str]:
    """Every file of a kind across its folders: relative paths, sorted, each once; KeyError for an unknown kind."""
    folders, extensions = folder_names_and_paths[map_legacy(folder_name)]
    found: set[str] = set()
    for folder in folders:
        files, _ = recursive_search(folder)
        found.update(filter_files_extensions(files, extensions))
    return sorted(found)


def get_full_path(folder_name: str, filename: str) -> str | None:
    """The first existing file `filename` in the kind's folders, or None (also for a name leaving them)."""
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        return None
    paths = STATE.bound()
    for folder in folder_names_and_paths[folder_name][0]:
        try:
            path = paths.resolve(Path(folder), filename)
        except UnsafePathError:
            return None
        if path.is_file():
            return str(path)
    return None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    path = get_full_path(folder_name, filename)
    if path is None:
        raise FileNotFoundError(f"no file {filename!r} in the model folder {folder_name!r}")
    return path


def get_input_directory() -> str:
    return str(STATE.bound().input)


def get_output_directory() -> str:
    return str(STATE.bound().output)


def get_temp_directory() -> str:
    return str(STATE.bound().temp)


def get_user_directory() -> str:
    """The data folder's `user/` (where ComfyUI keeps user settings and files)."""
    return str(STATE.bound().root / "user")


def get_input_subfolders() -> list[str]:
    """The folders inside the input folder, as relative paths with `/`, sorted."""
    root = STATE.bound().input
    return sorted(str(p.relative_to(root)).replace(os.sep, "/") for p in root.rglob("*")
                  if p.is_dir() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def get_directory_by_type(type_name: str) -> str | None:
    """The folder of an image `type` ("input", "output", "temp"), or None."""
    folder = {"input": get_input_directory, "output": get_output_directory, "temp": get_temp_directory}.get(type_name)
    return folder() if folder is not None else None


def annotated_filepath(name: str) -> tuple[str, str | None]:
    """("x.png", "output") for "x.png [output]"; (name, None) without an annotation."""
    match = ANNOTATION.match(name)
    return (match["name"], match["kind"]) if match else (name, None)


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    """The path of "x.png [output]" (or `[input]`, `[temp]`); unannotated names are in `default_dir` or input/.

    Raises `UnsafePathError` (a ValueError) for a name that would leave that folder.
    """
    name, kind = annotated_filepath(name)
    base = get_directory_by_type(kind) if kind else (default_dir or get_input_directory())
    return str(STATE.bound().resolve(Path(base), name))


def exists_annotated_filepath(name: str) -> bool:
    try:
        return os.path.exists(get_annotated_filepath(name))
    except UnsafePathError:
        return False


def get_save_image_path(filename_prefix: str, output_dir: str, image_width: int = 0,
                        image_height: int = 0) -> tuple[str, str, int, str, str]:
    """(full_output_folder, filename, counter, subfolder, filename_prefix) for saving under `output_dir`.

    `%width%`, `%height%`, `%year%` … are substituted; the counter is 1 + the largest `<filename>_<NNNNN>_` file
    there, as our SaveImage numbers; a prefix leaving `output_dir` raises ValueError.
    """
    root = Path(output_dir).resolve()
    directory, filename, counter = output_names(root, filename_prefix, image_width, image_height)
    subfolder = directory.relative_to(root).as_posix()
    subfolder = "" if subfolder == "." else subfolder
    prefix = f"{subfolder}/{filename}" if subfolder else filename
    return str(directory), filename, counter, subfolder, prefix
