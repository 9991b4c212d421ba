"""ComfyUI's `extra_model_paths.yaml`, so one models tree serves ComfyUI and latentloom (`--extra-model-paths`).

The format, as ComfyUI reads it: top-level sections (any names, e.g. `comfyui:` or `a111:`), each a mapping of

- `base_path`: the folder the other paths are relative to (`~` and `$VARS` expanded; a relative one is relative
  to the YAML file's folder). Without it, relative paths are relative to the YAML file's folder.
- `is_default: true`: this section's folders are searched before the data folder's own (else after).
- `<kind>: <path>`: a model folder of a kind; a multi-line value (YAML `|`) lists several, one a line. ComfyUI's
  legacy kind names map to ours (`clip` → `text_encoders`, `unet` → `diffusion_models`).

Keys that are not model kinds here (`custom_nodes`, `download_model_base`, kinds we have no folder for) are
skipped and named in the notes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nodes.paths import MODEL_FOLDERS, ExtraFolder

LEGACY_KINDS = {"clip": "text_encoders", "unet": "diffusion_models"}


class ModelPathsError(ValueError):
    """The file cannot be read or is not in the format."""


@dataclass
class ExtraModelPaths:
    folders: dict[str, list[ExtraFolder]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # keys that were skipped


def read_extra_model_paths(file: Path) -> ExtraModelPaths:
    """The model folders an `extra_model_paths.yaml` adds, per kind, in file order."""
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelPathsError(f"cannot read {file}: {exc}") from None
    if data is None:
        return ExtraModelPaths()
    if not isinstance(data, dict):
        raise ModelPathsError(f"{file}: expected sections of `kind: path` entries, got {type(data).__name__}")
    result = ExtraModelPaths()
    here = file.resolve().parent
    for section, conf in data.items():
        if conf is None:
            continue
        if not isinstance(conf, dict):
            raise ModelPathsError(f"{file}: section {section!r} must be a mapping, got {type(conf).__name__}")
        _read_section(str(section), dict(conf), here, result)
    return result


def _read_section(section: str, conf: dict[str, Any], here: Path, result: ExtraModelPaths) -> None:
    base = conf.pop("base_path", None)
    first = bool(conf.pop("is_default", False))
    base_path = _expand(str(base), here) if base is not None else None
    for key, value in conf.items():
        kind = LEGACY_KINDS.get(str(key), str(key))
        if kind not in MODEL_FOLDERS:
            result.notes.append(f"{section}.{key}: not a model folder kind here; skipped")
            continue
        if not isinstance(value, str):
            raise ModelPathsError(f"{section}.{key}: expected a path (or several, one a line), got {value!r}")
        for line in filter(None, (line.strip() for line in value.splitlines())):
            path = base_path / os.path.expanduser(line) if base_path is not None else _expand(line, here)
            result.folders.setdefault(kind, []).append(ExtraFolder(Path(os.path.normpath(path)), first))


def _expand(text: str, here: Path) -> Path:
    path = Path(os.path.expandvars(os.path.expanduser(text)))
    return path if path.is_absolute() else here / path
