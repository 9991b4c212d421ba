"""The data folder: models, inputs, outputs and temporary files, kept outside the code.

Layout (ComfyUI's, so existing model folders can be pointed at): `models/<kind>/` (checkpoints, vae, loras,
embeddings, …), `input/`, `output/`, `temp/`, `custom_nodes/`. More model folders may come from ComfyUI's
`extra_model_paths.yaml` (`nodes.model_paths`); a model name is looked up in each folder of its kind in order.

Every path a client or a workflow names is checked: names that would leave their folder (`..`, absolute paths,
NUL bytes) are refused. In input/output folders (`resolve`) symlinks pointing out are refused too, since clients
write there; in model folders (`model_path`) the owner's symlinks are followed wherever they point, since that is
how users share one models tree. Model listings follow symlinked folders (a loop is walked once) and are cached
until a directory's mtime changes.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

MODEL_FOLDERS = ("checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
                 "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen",
                 "upscale_models", "hypernetworks", "photomaker", "classifiers")
# ComfyUI's legacy folder names, searched too: `models/clip` for text encoders, `models/unet` (first) for diffusion
# models; `model_files` lists both folders' files, `model_path` finds a name in the first folder holding it.
MODEL_FOLDER_ALIASES = {"text_encoders": ("text_encoders", "clip"), "diffusion_models": ("unet", "diffusion_models")}
MODEL_EXTENSIONS = (".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft")
FOLDER_EXTENSIONS = {"configs": (".yaml",)}  # folders whose files are not model weights
DATA_DIR_ENV = "LATENTLOOM_DATA_DIR"


class UnsafePathError(ValueError):
    """A requested path that would leave its folder."""


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV, "data")).resolve()


@dataclass(frozen=True)
class ExtraFolder:
    """A model folder outside the data folder; `first` ones are searched before the data folder's own."""

    path: Path
    first: bool = False


@dataclass
class _Listing:
    files: list[str]
    mtimes: dict[str, int] = field(default_factory=dict)  # every directory walked → its mtime_ns

    def current(self) -> bool:
        try:
            return all(os.stat(d).st_mtime_ns == m for d, m in self.mtimes.items())
        except OSError:
            return False


class DataPaths:
    """Folders under one data root; created on first use. `extra_models`: more folders per model kind."""

    def __init__(self, root: str | os.PathLike[str] | None = None,
                 extra_models: Mapping[str, Sequence[ExtraFolder]] | None = None) -> None:
        self.root = Path(root).resolve() if root is not None else default_data_dir()
        self.extra_models = {kind: list(folders) for kind, folders in (extra_models or {}).items()}
        self._listings: dict[str, _Listing] = {}

    @property
    def input(self) -> Path:
        return self._dir("input")

    @property
    def output(self) -> Path:
        return self._dir("output")

    @property
    def temp(self) -> Path:
        return self._dir("temp")

    @property
    def custom_nodes(self) -> Path:
        return self._dir("custom_nodes")

    def models(self, kind: str) -> Path:
        if kind not in MODEL_FOLDERS:
            raise KeyError(f"unknown model folder {kind!r}")
        return self._dir("models", kind)

    def model_folders(self, kind: str) -> list[Path]:
        """The folders of a model kind in search order: extra `first` ones, the data folder's (ComfyUI's legacy
        names too, `MODEL_FOLDER_ALIASES`), the other extras."""
        self.models(kind)  # checks the kind
        own = [self._dir("models", name) for name in MODEL_FOLDER_ALIASES.get(kind, (kind,))]
        extras = self.extra_models.get(kind, [])
        return [e.path for e in extras if e.first] + own + [e.path for e in extras if not e.first]

    def model_path(self, kind: str, name: str) -> Path:
        """The model `name` of a kind: in the first folder that has it (else where the data folder would keep it).

        Refuses names that leave the folder; follows the owner's symlinks wherever they point.
        """
        _check_name(name)
        folders = self.model_folders(kind)
        for folder in folders:
            if (folder / name).exists():
                return folder / name
        return self.models(kind) / name

    def model_files(self, kind: str) -> list[str]:
        """Model files of a kind over all its folders: sorted relative paths with '/' separators (diffusers
        folders as folder names). Cached until a directory of the listing changes."""
        listing = self._listings.get(kind)
        if listing is None or not listing.current():
            listing = _Listing([])
            found: set[str] = set()
            extensions = FOLDER_EXTENSIONS.get(kind, MODEL_EXTENSIONS)
            for folder in self.model_folders(kind):
                found.update(_walk_models(folder, listing.mtimes, extensions))
            listing.files = sorted(found)
            self._listings[kind] = listing
        return list(listing.files)

    def input_files(self) -> list[str]:
        base = self.input
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    def resolve(self, base: Path, name: str, subfolder: str = "") -> Path:
        """`base/subfolder/name`, refusing anything that leaves `base` (also through symlinks)."""
        for part in (name, subfolder):
            _check_name(part)
        root = base.resolve()
        target = (root / subfolder / name).resolve()
        if target != root and root not in target.parents:
            raise UnsafePathError(f"path {name!r} leaves its folder")
        return target

    def _dir(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_name(part: str) -> None:
    """Refuse a client's name that would leave its folder: absolute, `..`, NUL."""
    if "\0" in part or part.startswith(("/", "\\")) or os.path.isabs(part):
        raise UnsafePathError(f"unsafe path {part!r}")
    if any(p == ".." for p in part.replace("\\", "/").split("/")):
        raise UnsafePathError(f"unsafe path {part!r}")


def _walk_models(base: Path, mtimes: dict[str, int], extensions: tuple[str, ...]) -> list[str]:
    """Model files under `base`, following symlinked folders; a folder reached twice (a loop) is walked once."""
    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    if not base.is_dir():
        mtimes[str(base)] = -1  # not there (yet): list again next time
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        try:
            stat = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (stat.st_dev, stat.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        mtimes[dirpath] = stat.st_mtime_ns
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        if (here / "model_index.json").is_file() and here != base:
            found.append(here.relative_to(base).as_posix())
            dirnames[:] = []
            continue
        found += [(here / f).relative_to(base).as_posix() for f in filenames if f.endswith(extensions)]
    return found
