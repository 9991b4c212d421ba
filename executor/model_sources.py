"""Which models a shared workflow or image needs and where to get them (`models pull --for`, `reproduce --pull`).

What a file says about its models:
- a UI-format workflow (ComfyUI's newer frontend writes these): each node's `properties.models` and the file's
  `models` list, entries `{"name", "url", "directory", "hash", "hash_type"}`;
- a PNG made by SaveImage: the `latentloom` record's `models` (`kind`, `name`, `sha256`, and `source` for a model
  that was pulled), plus its `workflow` chunk as above and the model inputs of its `prompt`;
- an API-format workflow (the editor's files): the model inputs of its nodes (names, and `_meta.model_sha256`
  where present) and each node's `_meta.models` (the UI format's `properties.models`, kept by the converter).
Entries naming the same file are merged. A wanted model is present when its file exists (with the stated sha256,
when one is stated) or, with a stated sha256, when another file of its folder has that hash (`reproduce` and
validation then use that file).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from nodes.identity import ModelHashes, model_uses
from nodes.images import read_png_texts
from nodes.paths import MODEL_FOLDERS, DataPaths, UnsafePathError
from nodes.pull import Progress, Pulled, PullError, pull, resolve_source

#: Older folder names ComfyUI still accepts, and the folders they mean.
FOLDER_ALIASES = {"clip": "text_encoders", "unet": "diffusion_models", "t2i_adapter": "controlnet"}


@dataclass(frozen=True)
class WantedModel:
    kind: str
    name: str
    url: str | None = None
    sha256: str | None = None

    def describe(self) -> str:
        return f"{self.kind}/{self.name}"


def wanted_models(path: Path) -> list[WantedModel]:
    """Every model `path` (a workflow JSON or a PNG) names, with source URL and sha256 where it says them."""
    if path.suffix.lower() == ".png":
        texts = read_png_texts(path)
        record = _loads(texts.get("latentloom"))
        found = list(_from_record(record)) + list(_from_ui(_loads(texts.get("workflow"))))
        found += _from_api(_loads(texts.get("prompt")))
    else:
        doc = _loads(path.read_text(encoding="utf-8"))
        if doc is None:
            raise ValueError(f"{path} is not a JSON object")
        found = list(_from_ui(doc)) if isinstance(doc.get("nodes"), list) else _from_api(doc)
    return _merge(found)


def missing_models(wanted: Iterable[WantedModel], paths: DataPaths, hashes: ModelHashes) -> list[WantedModel]:
    missing = []
    for model in wanted:
        try:
            target = paths.model_path(model.kind, model.name)
        except (KeyError, UnsafePathError):
            missing.append(model)
            continue
        if target.exists() and (model.sha256 is None or hashes.sha256(target) == model.sha256):
            continue
        others = {n: paths.model_path(model.kind, n) for n in paths.model_files(model.kind) if n != model.name}
        if model.sha256 is None or hashes.find(others, model.sha256) is None:
            missing.append(model)
    return missing


def _from_record(record: Mapping[str, Any] | None) -> Iterable[WantedModel]:
    for entry in (record or {}).get("models") or []:
        if isinstance(entry, Mapping):
            yield from _entry(entry.get("kind"), entry.get("name"), entry.get("source"), entry.get("sha256"))


def _from_ui(doc: Mapping[str, Any] | None) -> Iterable[WantedModel]:
    if doc is None:
        return
    entries = list(doc.get("models") or [])
    for node in doc.get("nodes") or []:
        properties = node.get("properties") if isinstance(node, Mapping) else None
        if isinstance(properties, Mapping) and isinstance(properties.get("models"), list):
            entries += properties["models"]
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        sha = entry.get("hash") if str(entry.get("hash_type", "sha256")).lower() == "sha256" else None
        yield from _entry(entry.get("directory"), entry.get("name"), entry.get("url"), sha)


def _from_api(prompt: Mapping[str, Any] | None) -> list[WantedModel]:
    if prompt is None:
        return []
    metas = {nid: node.get("_meta") for nid, node in prompt.items() if isinstance(node, Mapping)}
    metas = {nid: meta for nid, meta in metas.items() if isinstance(meta, Mapping)}
    found = []
    for use in model_uses(prompt):
        hashes = metas.get(use.node, {}).get("model_sha256")
        found += _entry(use.kind, use.name, None, hashes.get(use.input) if isinstance(hashes, Mapping) else None)
    found += _from_ui({"models": [m for meta in metas.values() if isinstance(meta.get("models"), list)
                                  for m in meta["models"]]})
    return found


def _entry(kind: Any, name: Any, url: Any, sha256: Any) -> list[WantedModel]:
    kind = FOLDER_ALIASES.get(kind, kind)
    if kind not in MODEL_FOLDERS or not isinstance(name, str) or not name:
        return []
    sha = sha256.lower() if isinstance(sha256, str) and len(sha256) == 64 else None
    return [WantedModel(kind, name, url if isinstance(url, str) and url else None, sha)]


def _merge(found: list[WantedModel]) -> list[WantedModel]:
    merged: dict[tuple[str, str], WantedModel] = {}
    for model in found:
        key = (model.kind, model.name)
        if key in merged:
            old = merged[key]
            model = WantedModel(model.kind, model.name, old.url or model.url, old.sha256 or model.sha256)
        merged[key] = model
    return list(merged.values())


def _loads(text: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class PullOutcome:
    model: WantedModel
    pulled: Pulled | None = None
    error: str | None = None


def pull_missing(path: Path, paths: DataPaths, hashes: ModelHashes, *, max_bytes: int | None = None,
                 progress: Callable[[WantedModel], Progress | None] = lambda model: None) -> list[PullOutcome]:
    """Fetch every model `path` names that is not here (an outcome each; models without a source fail)."""
    outcomes = []
    for model in missing_models(wanted_models(path), paths, hashes):
        if model.url is None:
            outcomes.append(PullOutcome(model, error="the file says nowhere where to get it"))
            continue
        try:
            pulled = pull(paths, hashes, model.kind, resolve_source(model.url), name=model.name,
                          sha256=model.sha256, max_bytes=max_bytes, progress=progress(model))
        except PullError as exc:
            outcomes.append(PullOutcome(model, error=str(exc)))
        else:
            outcomes.append(PullOutcome(model, pulled))
    return outcomes
