"""The data folder: models, inputs, outputs and temporary files, kept outside the code.

Layout (ComfyUI's, so existing model folders can be pointed at): `models/<kind>/` (checkpoints, vae, loras,
embeddings, …), `input/`, `output/`, `temp/`, `custom_nodes/`. Every path a user or a workflow names is resolved
with `DataPaths.resolve`, which refuses anything that would leave its folder (`..`, absolute paths, NUL bytes,
symlinks pointing out).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

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


class DataPaths:
    """Folders under one data root; created on first use."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).resolve() if root is not None else default_data_dir()

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

    def model_dirs(self, kind: str) -> list[Path]:
        """The folders holding models of `kind`, in search order (see `MODEL_FOLDER_ALIASES`)."""
        self.models(kind)  # checks the kind
        return [self._dir("models", name) for name in MODEL_FOLDER_ALIASES.get(kind, (kind,))]

    def model_path(self, kind: str, name: str) -> Path:
        """The file (or diffusers folder) `name` of `kind`: in the first of `model_dirs` that has it."""
        paths = [self.resolve(folder, name) for folder in self.model_dirs(kind)]
        return next((path for path in paths if path.exists()), paths[0])

    def model_files(self, kind: str) -> list[str]:
        """Model files of a kind: sorted relative paths with '/' separators (diffusers folders as folder names)."""
        extensions = FOLDER_EXTENSIONS.get(kind, MODEL_EXTENSIONS)
        return sorted({name for folder in self.model_dirs(kind) for name in self._model_files(folder, extensions)})

    def _model_files(self, base: Path, extensions: tuple[str, ...]) -> list[str]:
        found = []
        for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            here = Path(dirpath)
            if (here / "model_index.json").is_file() and here != base:
                found.append(here.relative_to(base).as_posix())
                dirnames[:] = []
                continue
            found += [(here / f).relative_to(base).as_posix() for f in filenames if f.endswith(extensions)]
        return found

    def input_files(self) -> list[str]:
        base = self.input
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    def resolve(self, base: Path, name: str, subfolder: str = "") -> Path:
        """`base/subfolder/name`, refusing anything that leaves `base` (also through symlinks)."""
        for part in (name, subfolder):
            if "\0" in part or part.startswith(("/", "\\")) or os.path.isabs(part):
                raise UnsafePathError(f"unsafe path {part!r}")
            if any(p == ".." for p in part.replace("\\", "/").split("/")):
                raise UnsafePathError(f"unsafe path {part!r}")
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
