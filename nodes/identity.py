"""Model identity: the sha256 of model files, what a run records about itself, and finding a model by its hash.

- `ModelHashes` hashes a model file once (streamed) and remembers the result in a JSON file in the data folder
  (`cache/model-hashes.json`), keyed by the file's resolved path, size and mtime: an unchanged file is never read
  again, a replaced one is hashed anew. A diffusers folder's hash is the sha256 of its files' sorted
  `"<relative path> <sha256>\\n"` lines. `model_hashes(env)` is the environment's one instance.
- Which inputs name model files: ComfyUI's conventional input names (`ckpt_name` → checkpoints, `vae_name` → vae,
  `lora_name` → loras, …, `MODEL_INPUTS`), so V1 loaders are covered as well as ours; where a loader's input
  name means another folder than the convention (CLIPVisionLoader's `clip_name`), `NODE_MODEL_INPUTS` says so
  per node type (`model_folder`).
- `run_record(ctx)` is the `latentloom` PNG chunk SaveImage writes beside ComfyUI's `prompt` and `workflow`:
  engine, Python, torch, diffusers and transformers versions, the compute device, the precision asked for
  (`--precision …`) and the dtypes it gave, and for every
  model input of the nodes upstream of the saving node: node id, input, folder, name and sha256. Embedding
  files a prompt text names (`embedding:NAME` in a constant `text`/`text_g`/`text_l` input, `TEXT_INPUTS`) are
  listed too, with folder "embeddings" and the file's path in it; they are recorded only, never re-resolved.
- `resolve_models(prompt, env, known)` runs before validation. Where a workflow gives a model's hash (a node's
  `_meta.model_sha256 = {"<input>": "<sha256>"}`, or `known[(folder, name)]` taken from a PNG's `latentloom`
  chunk or a UI-format file's `models` list) and the named file is missing, or holds other bytes, the file of the
  folder with that hash is used instead and a note says so. When neither the name nor the hash is found, the
  name stays (validation then refuses it) and `annotate` puts both into that error's details.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import logging
import platform
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from nodes.api import Context, Environment, ServiceKey
from nodes.paths import atomic_write
from nodes.precision import Precision

log = logging.getLogger(__name__)
SERVICE_KEY: ServiceKey[ModelHashes] = ServiceKey("identity.model_hashes")
CACHE_FILE = Path("cache") / "model-hashes.json"
CHUNK = 1 << 20
MODEL_INPUTS = {
    "ckpt_name": "checkpoints", "vae_name": "vae", "lora_name": "loras", "unet_name": "diffusion_models",
    "clip_name": "text_encoders", "clip_name1": "text_encoders", "clip_name2": "text_encoders",
    "clip_name3": "text_encoders", "control_net_name": "controlnet", "style_model_name": "style_models",
    "gligen_name": "gligen", "hypernetwork_name": "hypernetworks", "upscale_model_name": "upscale_models",
    "photomaker_model_name": "photomaker",
}
#: Inputs of particular node types that name files of another folder than `MODEL_INPUTS` says (or than none).
NODE_MODEL_INPUTS = {
    "CLIPVisionLoader": {"clip_name": "clip_vision"}, "UpscaleModelLoader": {"model_name": "upscale_models"},
}
#: Inputs whose text may name textual-inversion embeddings (ComfyUI's CLIP text encoders' input names).
TEXT_INPUTS = ("text", "text_g", "text_l")


def file_state(path: Path) -> list[int]:
    """What tells that a file may have changed without reading it: size, mtime in nanoseconds and inode (a file
    swapped in with the same size and a preserved mtime is another inode)."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def folder_files(path: Path) -> list[Path]:
    """The files of a model folder (a diffusers model), hidden ones aside, in a stable order."""
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


class ModelHashes:
    """sha256 of files and diffusers folders, remembered by (path, size, mtime_ns, inode) in a JSON file."""

    def __init__(self, cache_file: Path) -> None:
        self.cache_file = cache_file
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] | None = None

    def sha256(self, path: Path) -> str:
        path = Path(path).resolve()
        if path.is_dir():
            files = folder_files(path)
            lines = "".join(f"{p.relative_to(path).as_posix()} {self._file(p)}\n" for p in files)
            return hashlib.sha256(lines.encode()).hexdigest()
        return self._file(path)

    def _file(self, path: Path) -> str:
        state = file_state(path)
        key = str(path)
        with self._lock:
            entry = self._load().get(key)
            if entry and entry.get("state") == state:
                return entry["sha256"]
        digest = hash_file(path)
        with self._lock:
            self._load()[key] = {"state": state, "sha256": digest}
            self._save()
        return digest

    def record(self, path: Path, sha256: str, source: str | None = None) -> None:
        """Remember a hash computed elsewhere (a verified download), and where the file came from."""
        path = Path(path).resolve()
        entry = {"state": file_state(path), "sha256": sha256}
        with self._lock:
            self._load()[str(path)] = {**entry, "source": source} if source else entry
            self._save()

    def source(self, path: Path) -> str | None:
        """The URL a file was pulled from, while the file is unchanged since."""
        path = Path(path).resolve()
        try:
            state = file_state(path)
        except OSError:
            return None
        with self._lock:
            entry = self._load().get(str(path))
        return entry.get("source") if entry and entry.get("state") == state else None

    def find(self, files: Mapping[str, Path], sha256: str) -> str | None:
        """The first name of `files` (name → path) whose content has this hash."""
        wanted = sha256.lower()
        for name, path in files.items():
            try:
                if self.sha256(path) == wanted:
                    return name
            except OSError:
                continue
        return None

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            try:
                data = json.loads(self.cache_file.read_text(encoding="utf-8"))
                self._entries = dict(data.get("files", {})) if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._entries = {}
        return self._entries

    def _save(self) -> None:
        """Write atomically (another process may read it at the same time)."""
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.cache_file, json.dumps({"version": 1, "files": self._entries}, indent=1,
                                                 sort_keys=True).encode("utf-8"))


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def model_hashes(env: Environment) -> ModelHashes:
    """The environment's one hash cache (created on first use)."""
    return env.services.get_or_create(SERVICE_KEY, lambda: ModelHashes(env.paths.root / CACHE_FILE))


@dataclass(frozen=True)
class ModelUse:
    """One model input of a prompt: which node and input, which folder and file."""

    node: str
    input: str
    kind: str
    name: str

    def to_json(self, sha256: str | None, source: str | None = None) -> dict[str, Any]:
        record = {"node": self.node, "input": self.input, "kind": self.kind, "name": self.name, "sha256": sha256}
        return {**record, "source": source} if source else record


def model_folder(class_type: Any, input_name: str) -> str | None:
    """The model folder that a node type's constant input names a file of (None: not a model input)."""
    own = NODE_MODEL_INPUTS.get(class_type, {}) if isinstance(class_type, str) else {}
    return own.get(input_name, MODEL_INPUTS.get(input_name))


def model_uses(prompt: Mapping[str, Any], node_ids: list[str] | None = None) -> list[ModelUse]:
    """The model inputs (constant names) of the given nodes and everything upstream of them (all nodes: None)."""
    types = {str(k): v.get("class_type") for k, v in prompt.items() if isinstance(v, Mapping)}
    uses = [ModelUse(nid, name, kind, value) for nid, name, value in _constants(prompt, node_ids)
            if isinstance(value, str) and (kind := model_folder(types.get(nid), name)) is not None]
    return sorted(uses, key=lambda u: (_id_order(u.node), u.input))


def embedding_uses(prompt: Mapping[str, Any], node_ids: list[str], env: Environment) -> list[ModelUse]:
    """The embedding files named in the constant texts of the given nodes and upstream (found files only)."""
    from nodes.sd.embeddings import FOLDER, embedding_library

    library = embedding_library(env)
    uses: dict[ModelUse, None] = {}
    for nid, name, value in _constants(prompt, node_ids):
        if name in TEXT_INPUTS and isinstance(value, str) and "embedding:" in value:
            try:
                located = library.referenced(value)
            except ValueError:  # a name leaving the folder: the run refused it
                continue
            for item in located:
                if item.path is not None:
                    uses[ModelUse(nid, name, FOLDER, library.name_of(item.path))] = None
    return sorted(uses, key=lambda u: (_id_order(u.node), u.input, u.name))


def _constants(prompt: Mapping[str, Any], node_ids: list[str] | None) -> list[tuple[str, str, Any]]:
    """(node id, input, value) of the constant inputs of the given nodes and everything upstream of them."""
    nodes = {str(k): v for k, v in prompt.items() if isinstance(v, Mapping)}
    todo = list(nodes) if node_ids is None else [str(n) for n in node_ids]
    seen: set[str] = set()
    found = []
    while todo:
        nid = todo.pop()
        if nid in seen or nid not in nodes:
            continue
        seen.add(nid)
        inputs = nodes[nid].get("inputs")
        for name, value in (inputs.items() if isinstance(inputs, Mapping) else ()):
            if isinstance(value, list) and len(value) == 2 and not isinstance(value[0], list):
                todo.append(str(value[0]))
            else:
                found.append((nid, name, value))
    return found


def _id_order(nid: str) -> tuple[int, int | str]:
    return (0, int(nid)) if nid.isdigit() else (1, nid)


def run_record(ctx: Context) -> dict[str, Any]:
    """The `latentloom` PNG chunk for an image saved by node `ctx.node_id` (add `image` per file)."""
    hashes = model_hashes(ctx.env)
    models = []
    for use in model_uses(ctx.prompt, [ctx.node_id]) + embedding_uses(ctx.prompt, [ctx.node_id], ctx.env):
        try:
            path = ctx.env.paths.model_path(use.kind, use.name)
            digest = hashes.sha256(path)
        except (OSError, ValueError, KeyError) as exc:  # recorded as unknown rather than failing the save
            log.warning("cannot hash model %s/%s: %s", use.kind, use.name, exc)
            models.append(use.to_json(None))
            continue
        models.append(use.to_json(digest, hashes.source(path)))
    return {**environment_record(ctx.env.precision), "models": models}


def environment_record(precision: Precision) -> dict[str, Any]:
    """Engine and library versions, the compute device, the precision asked for and the dtypes it gives there."""
    import torch

    from nodes.sd.devices import compute_device

    device = compute_device()
    return {
        "engine": "latentloom", "version": _version("latentloom"), "python": platform.python_version(),
        "torch": torch.__version__, "diffusers": _version("diffusers"), "transformers": _version("transformers"),
        "device": {"type": device.type, "name": device_name(device)},
        "precision": precision.describe(), "dtypes": dtype_names(precision.policy(device)),
    }


def dtype_names(policy: Any) -> dict[str, str]:
    """A `DtypePolicy` as JSON: {"unet": "float16", "text_encoder": …, "vae": …}."""
    return {"unet": _dtype(policy.unet), "text_encoder": _dtype(policy.text_encoder), "vae": _dtype(policy.vae)}


def device_name(device: Any) -> str:
    """What decides whether two runs can agree bit for bit: the GPU model, or the CPU architecture."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} {platform.machine()}"


def _dtype(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class ModelNote:
    use: ModelUse
    sha256: str
    found: str | None           # the file used instead, or None when no file has the hash
    name_exists: bool           # the named file exists (with other bytes)

    def message(self) -> str:
        u = self.use
        where = f"node {u.node} {u.input}"
        if self.found is not None:
            why = "holds other bytes" if self.name_exists else "is not there"
            return (f"{where}: models/{u.kind}/{u.name} {why}; using {self.found}, which has the recorded "
                    f"sha256 {self.sha256}")
        if self.name_exists:
            return (f"{where}: models/{u.kind}/{u.name} has another sha256 than the recorded {self.sha256} and no "
                    "file there matches; running with it anyway")
        return f"model '{u.name}' is not in models/{u.kind}, and no file there has sha256 {self.sha256}"


@dataclass
class ModelResolution:
    prompt: dict[str, Any]
    notes: list[ModelNote] = field(default_factory=list)

    @property
    def missing(self) -> list[ModelNote]:
        return [n for n in self.notes if n.found is None and not n.name_exists]

    def messages(self) -> list[str]:
        return [n.message() for n in self.notes]

    def annotate(self, node_errors: dict[str, Any]) -> dict[str, Any]:
        """Name the hash in the `value_not_in_list` errors (ComfyUI shape) of models found by neither."""
        for note in self.missing:
            for error in node_errors.get(note.use.node, {}).get("errors", []):
                if error.get("type") == "value_not_in_list" and error.get("extra_info", {}).get(
                        "input_name") == note.use.input:
                    error["message"] = "Model not found"
                    error["details"] = f"{note.use.input}: {note.message()}"
        return node_errors


def resolve_models(prompt: Mapping[str, Any], env: Environment,
                   known: Mapping[tuple[str, str], str] | None = None) -> ModelResolution:
    """Use the file with the recorded hash where the named model file is missing or differs (see module doc)."""
    resolved = ModelResolution(copy.deepcopy(dict(prompt)))
    hashes = model_hashes(env)
    for use in model_uses(prompt):
        sha = _recorded_hash(prompt[use.node], use, known or {})
        if sha is None:
            continue
        try:
            path = env.paths.model_path(use.kind, use.name)
        except (KeyError, ValueError):
            continue
        exists = path.exists()
        if exists and hashes.sha256(path) == sha:
            continue
        others = {n: env.paths.model_path(use.kind, n) for n in env.paths.model_files(use.kind) if n != use.name}
        found = hashes.find(others, sha)
        note = ModelNote(use, sha, found, exists)
        resolved.notes.append(note)
        log.warning("%s", note.message())
        if found is not None:
            resolved.prompt[use.node]["inputs"][use.input] = found
    return resolved


def _recorded_hash(entry: Mapping[str, Any], use: ModelUse, known: Mapping[tuple[str, str], str]) -> str | None:
    meta = entry.get("_meta") or {}
    recorded = (meta.get("model_sha256") or {}) if isinstance(meta, Mapping) else {}
    sha = recorded.get(use.input) if isinstance(recorded, Mapping) else None
    sha = sha or known.get((use.kind, use.name))
    return sha.lower() if isinstance(sha, str) and len(sha) == 64 else None


def known_hashes(record: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """`(folder, name) → sha256` from a `latentloom` chunk."""
    return {(m["kind"], m["name"]): m["sha256"] for m in record.get("models", [])
            if isinstance(m, Mapping) and m.get("sha256") and m.get("kind") and m.get("name")}
