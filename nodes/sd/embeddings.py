"""Textual-inversion embeddings: the vectors `embedding:NAME` puts into a prompt (reference §6.10.2).

An embedding is a file of learned token vectors in the data folder's `models/embeddings` (subfolders allowed).
The tokenizer asks one encoder's view of the folder (`EncoderEmbeddings.take`) for the vectors of each
`embedding:` word it meets; this module finds, reads and checks the files and remembers what it read.

* Names. The name is the word after `embedding:` up to the first whitespace; the rest of the piece is ordinary
  text. `NAME` is tried as written (when it ends in a model-file extension), then with `.safetensors`, `.pt`,
  `.bin` (ComfyUI's order) and the other model extensions, so every name `GET /embeddings` lists resolves. A name
  that is not found but ends in commas is tried without them (`embedding:foo, bar`), the commas going back to
  the text. Every path goes through `DataPaths.resolve`: a name that leaves the folder (`../x`) raises
  `UnsafePathError` instead of being looked up.
* Formats. safetensors (`.safetensors`, `.sft`) always; pickle files (`.pt`, `.bin`, …) only when the
  environment allows pickle (as for checkpoints), read with `torch.load(weights_only=True)`; a refused or
  unreadable file raises `CheckpointError`. Which tensor an encoder takes: its own key (`clip_l`, `clip_h`,
  `clip_g`: SDXL files hold `clip_l` [n, 768] and `clip_g` [n, 1280]), else the file's only tensor (A1111's
  `string_to_param["*"]`, a single `emb_params`, a diffusers `{"<token>": …}`), else `emb_params`. Shapes
  [n, D] and [D] are accepted (a leading batch axis is flattened away); vectors are kept as float32.
* Skips (ComfyUI's behaviour: the prompt still runs, a warning is logged, the text is encoded as if the word
  were absent): a name that is not found; a file with no tensor for the encoder; vectors whose width is not
  the encoder's (an SD1 embedding in SDXL's CLIP-G: that encoder goes without it, the other keeps it).
* Cache. Read files are kept per environment (`embedding_library(env)`), keyed by path and dropped when the
  file's size or mtime changes. `fingerprint(text)` gives the size and mtime of the files a prompt names, for
  the CLIPTextEncode nodes' cache keys.

Public API: `EmbeddingLibrary(paths, *, allow_pickle=False)` with `.locate(word) -> Located`, `.find(name)`,
`.load(path)`, `.vectors(path, key, width)`, `.for_encoder(key, width) -> EncoderEmbeddings`,
`.referenced(text) -> list[Located]`, `.fingerprint(text)`, `.name_of(path)`; `embedding_library(env)`.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from nodes.api import Environment, ServiceKey
from nodes.identity import file_state
from nodes.paths import MODEL_EXTENSIONS, DataPaths
from nodes.sd.errors import CheckpointError
from nodes.sd.prompt_weights import EMBEDDING_PREFIX, parse_prompt_weights, split_embedding_words

log = logging.getLogger(__name__)

FOLDER = "embeddings"
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
#: Extensions tried after a name written without one: ComfyUI's three first, then the other model extensions.
_COMFY_SUFFIXES = (".safetensors", ".pt", ".bin")
SUFFIXES = _COMFY_SUFFIXES + tuple(s for s in MODEL_EXTENSIONS if s not in _COMFY_SUFFIXES)
#: The key of each text encoder's tensor in multi-encoder (SDXL) embedding files.
ENCODER_FILE_KEYS = {"l": "clip_l", "h": "clip_h", "g": "clip_g"}
SINGLE_KEY = "emb_params"
CACHE_KEY: ServiceKey[_FileCache] = ServiceKey("sd.embeddings")


@dataclass(frozen=True)
class Located:
    """Where an `embedding:` word points: the file (None when not found), the name read, the text after it."""

    path: Path | None
    name: str
    rest: str


class _FileCache:
    """Tensors of read files by path, valid while the file keeps its size and mtime."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Path, tuple[list[int], dict[str, torch.Tensor]]] = {}

    def get(self, path: Path, read) -> dict[str, torch.Tensor]:
        stamp = file_state(path)
        with self._lock:
            entry = self._entries.get(path)
        if entry is not None and entry[0] == stamp:
            return entry[1]
        tensors = read(path)
        with self._lock:
            self._entries[path] = (stamp, tensors)
        return tensors


class EmbeddingLibrary:
    """The embeddings folder of a data folder: names → files → vectors (see the module doc)."""

    def __init__(self, paths: DataPaths, *, allow_pickle: bool = False, cache: _FileCache | None = None) -> None:
        self.paths = paths
        self.allow_pickle = allow_pickle
        self._cache = cache if cache is not None else _FileCache()

    @property
    def folder(self) -> Path:
        return self.paths.models(FOLDER)

    def find(self, name: str) -> Path | None:
        """The file `name` stands for, or None; raises `UnsafePathError` for a name that leaves the folder."""
        if not name:
            return None
        folder = self.folder
        exact = self.paths.resolve(folder, name)
        if exact.suffix.lower() in MODEL_EXTENSIONS and exact.is_file():
            return exact
        for suffix in SUFFIXES:
            candidate = self.paths.resolve(folder, name + suffix)
            if candidate.is_file():
                return candidate
        return None

    def locate(self, word: str) -> Located:
        """Read the text after `embedding:`: the name, its file, and the text left after it."""
        words = word.split()
        name, rest = (words[0], " ".join(words[1:])) if words else ("", "")
        path = self.find(name)
        stripped = name.rstrip(",")
        if path is None and stripped and stripped != name:
            path = self.find(stripped)
            if path is not None:  # "embedding:foo, bar": the commas belong to the text
                return Located(path, stripped, f"{name[len(stripped):]} {rest}".strip())
        return Located(path, name, rest)

    def load(self, path: Path) -> dict[str, torch.Tensor]:
        """The tensors of an embedding file (nested A1111 dicts flattened), float32 on the CPU."""
        if path.suffix.lower() not in SAFETENSORS_SUFFIXES and not self.allow_pickle:
            raise CheckpointError(path, "embedding files in pickle format (.pt, .bin, …) can run code when loaded; "
                                        "enable pickle files (--allow-pickle) to use this one, or convert it to "
                                        ".safetensors")
        return self._cache.get(path, _read_file)

    def vectors(self, path: Path, key: str, width: int) -> torch.Tensor | None:
        """The vectors [n, width] text encoder `key` takes from `path`, or None (skipped, with a warning)."""
        tensors = self.load(path)
        chosen = _pick(tensors, key)
        label = self.name_of(path)
        if chosen is None:
            log.warning("embedding %s holds tensors %s, none of them for text encoder %r (%s, %s or a single one); "
                        "ignoring it there", label, sorted(tensors), key, ENCODER_FILE_KEYS.get(key), SINGLE_KEY)
            return None
        vectors = chosen.reshape(-1, chosen.shape[-1]) if chosen.ndim else chosen.reshape(1, 1)
        if vectors.shape[-1] != width or vectors.shape[0] == 0:
            log.warning("embedding %s has %d vectors of width %d, text encoder %r takes width %d; ignoring it there",
                        label, vectors.shape[0], vectors.shape[-1], key, width)
            return None
        return vectors

    def for_encoder(self, key: str, width: int) -> EncoderEmbeddings:
        """What the tokenizer of text encoder `key` (width `width`) asks for its `embedding:` words."""
        return EncoderEmbeddings(self, key, width)

    def referenced(self, text: str) -> list[Located]:
        """Every `embedding:` word of a prompt, in order (found or not); raises `UnsafePathError` like `find`."""
        found = []
        for segment in parse_prompt_weights(text):
            for piece in split_embedding_words(segment.text):
                if piece.startswith(EMBEDDING_PREFIX):
                    found.append(self.locate(piece[len(EMBEDDING_PREFIX):]))
        return found

    def fingerprint(self, text: str | None) -> list[Any] | None:
        """Name, size and mtime of each file `text` names (None if it names none); for a text not known yet
        (linked from another node) the same of every file in the folder. Never raises: a refused name is
        recorded as refused, and the run reports it."""
        if text is None:
            folder = self.folder.resolve()
            return [self._stamp(name, folder / name) for name in self.paths.model_files(FOLDER)]
        try:
            located = self.referenced(text)
        except ValueError:
            return ["refused path"]
        return [self._stamp(item.name, item.path) for item in located] or None

    def _stamp(self, name: str, path: Path | None) -> list[Any]:
        if path is None:
            return [name, None]
        try:
            return [self.name_of(path), *file_state(path)]
        except OSError:
            return [name, None]

    def name_of(self, path: Path) -> str:
        """The path of a file of the folder relative to it (posix), as `GET /models/embeddings` lists it."""
        try:
            return path.relative_to(self.folder.resolve()).as_posix()
        except ValueError:
            return str(path)


@dataclass(frozen=True)
class EncoderEmbeddings:
    """One text encoder's view of the library: its file key ("l", "h", "g") and its token width."""

    library: EmbeddingLibrary
    key: str
    width: int

    def take(self, word: str) -> tuple[torch.Tensor | None, str]:
        """The vectors of the `embedding:` word `word` (None: skipped) and the text after the name."""
        located = self.library.locate(word)
        if located.path is None:
            log.warning("embedding:%s does not exist in models/%s (tried %s); ignoring it", located.name, FOLDER,
                        ", ".join(("as written",) + _COMFY_SUFFIXES) + ", …")
            return None, located.rest
        return self.library.vectors(located.path, self.key, self.width), located.rest


def embedding_library(env: Environment) -> EmbeddingLibrary:
    """The embeddings of `env`'s data folder, sharing one cache of read files per environment."""
    cache = env.services.get_or_create(CACHE_KEY, _FileCache)
    return EmbeddingLibrary(env.paths, allow_pickle=env.allow_pickle, cache=cache)


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix.lower() in SAFETENSORS_SUFFIXES:
            loaded: Any = load_file(str(path), device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and torch raise many types; the node needs one with the file named
        raise CheckpointError(path, f"could not read embedding ({type(exc).__name__}: {exc})") from exc
    tensors = _flatten(loaded)
    if not tensors:
        raise CheckpointError(path, "no tensors in this embedding file")
    return {name: tensor.detach().float() for name, tensor in tensors.items()}


def _flatten(loaded: Any) -> dict[str, torch.Tensor]:
    """A bare tensor, a flat dict of tensors, or A1111's `{"string_to_param": {"*": tensor}, ...}`."""
    if isinstance(loaded, torch.Tensor):
        return {SINGLE_KEY: loaded}
    if not isinstance(loaded, dict):
        return {}
    if isinstance(loaded.get("string_to_param"), dict):
        loaded = loaded["string_to_param"]
    return {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}


def _pick(tensors: dict[str, torch.Tensor], key: str) -> torch.Tensor | None:
    own = ENCODER_FILE_KEYS.get(key)
    if own in tensors:
        return tensors[own]
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    return tensors.get(SINGLE_KEY)
