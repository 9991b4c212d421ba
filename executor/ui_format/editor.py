"""The editor's data of a UI-format node carried into its `_meta`: title, pos, size, collapsed, colours, the
groups whose area holds the node, where to get its model files (`properties.models` → `models`), and the sha256
of the model files it names (from the file's `models` list).

These fields only draw the graph: a value that cannot be drawn is left out rather than refused.
"""
from __future__ import annotations

from typing import Any, Mapping

from nodes.api import NodeSpec
from nodes.identity import model_folder


def groups(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = doc.get("groups")
    return [g for g in found if isinstance(g, Mapping) and _box(g.get("bounding"))] if isinstance(found, list) else []


def meta(node: Mapping[str, Any], spec: NodeSpec, in_groups: list[Mapping[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {"title": node.get("title") or spec.display_name}
    pos, size = _pair(node.get("pos")), _pair(node.get("size"))
    if pos is not None:
        result["pos"] = pos
    if size is not None:
        result["size"] = size
    if (node.get("flags") or {}).get("collapsed"):
        result["collapsed"] = True
    for key in ("color", "bgcolor"):
        if isinstance(node.get(key), str) and node[key]:
            result[key] = node[key]
    properties = node.get("properties")
    models = properties.get("models") if isinstance(properties, Mapping) else None
    if isinstance(models, list):  # where to get the node's model files (ComfyUI's newer files)
        result["models"] = [m for m in models if isinstance(m, Mapping) and isinstance(m.get("name"), str)]
    if pos is not None:
        middle = centre(node)
        inside = [g for g in in_groups if _contains(_box(g["bounding"]), middle)]
        if inside:
            result["groups"] = [{"title": g.get("title", ""), "bounding": [round(v) for v in _box(g["bounding"])],
                                 **({"color": g["color"]} if g.get("color") else {})} for g in inside]
    return result


def centre(node: Mapping[str, Any]) -> list[int]:
    pos, size = _pair(node.get("pos")) or [0, 0], _pair(node.get("size")) or [0, 0]
    return [round(pos[0] + size[0] / 2), round(pos[1] + size[1] / 2)]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e15


def _pair(value: Any) -> list[int] | None:
    if isinstance(value, Mapping):  # very old files: {"0": x, "1": y}
        value = [value.get("0"), value.get("1")]
    if isinstance(value, (list, tuple)) and len(value) >= 2 and all(_finite(v) for v in value[:2]):
        return [round(value[0]), round(value[1])]
    return None


def _box(value: Any) -> list[float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 4 and all(_finite(v) for v in value):
        return list(value)
    return None


def _contains(box: list[float], point: list[int]) -> bool:
    return box[0] <= point[0] <= box[0] + box[2] and box[1] <= point[1] <= box[1] + box[3]


def model_hashes(doc: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """`(folder, name) → sha256` from the file's `models` list (ComfyUI's: name, url, hash, hash_type, directory)."""
    found = {}
    models = doc.get("models")
    for model in models if isinstance(models, list) else []:
        if (isinstance(model, Mapping) and str(model.get("hash_type", "SHA256")).upper() == "SHA256"
                and isinstance(model.get("hash"), str) and isinstance(model.get("name"), str)):
            found[(str(model.get("directory", "")), model["name"])] = model["hash"].lower()
    return found


def add_hashes(entry: dict[str, Any], hashes: dict[tuple[str, str], str]) -> None:
    for name, value in entry["inputs"].items():
        folder = model_folder(entry.get("class_type"), name)
        if folder is not None and isinstance(value, str) and (folder, value) in hashes:
            entry["_meta"].setdefault("model_sha256", {})[name] = hashes[(folder, value)]
