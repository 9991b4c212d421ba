"""ComfyUI's UI format (`nodes`/`links`, reference §3.2) converted to the API format we run — in one place.

The CLI (`run`, `validate`), `POST /prompt` and the editor (`POST /workflow/convert`) all use `ui_to_api`. The rules,
which are the ComfyUI frontend's:

- Widget values: `widgets_values` is positional over a node's widget inputs in declaration order (required, then
  optional; inputs declared `forceInput` have no widget). After an input declared `control_after_generate` comes
  its control value (`fixed`/`increment`/`decrement`/`randomize`; old files store a boolean) — and also after any
  INT input when the list holds one more value than widgets and the next value is such a control value (files
  from frontends that added the control to every seed). An `image_upload` input is followed by its upload button's
  value. A dict of `widgets_values` is read by name. A link into an input overrides its widget value.
- Control values are not inputs: they go to `_meta.control_after_generate` (the editor's field, which the server
  resolves when the prompt is queued; a boolean `true` is `randomize`).
- Virtual nodes disappear: a `Reroute` passes its input on (its position is kept in `_meta.reroutes` of the
  consumer, as the editor stores reroute points); a `PrimitiveNode` becomes the constant of each input it feeds
  (its control value too); `Note` / `MarkdownNote` nodes are dropped.
- Muted nodes (mode 2) are removed; bypassed nodes (mode 4) are removed and each consumer of output j (type T) is
  linked to what feeds the bypassed node's first input of type T.
- Editor data goes to `_meta`: title, pos, size, collapsed, color, bgcolor, the groups whose area holds the node,
  the node's `properties.models` (where to get its model files) as `models`, and, from the file's `models` list,
  `model_sha256` for inputs naming those files (`nodes.identity`).
- Nothing is silently dropped: every removed node, lost link and left-over widget value is named in the
  conversion's `notes`. Unknown node types (and subgraphs, which we do not run) fail the conversion with every
  one of them named.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from executor.workflow import WorkflowError
from nodes.api import InputSpec, NodeSpec
from nodes.identity import model_folder
from nodes.registry import Registry
from nodes.types import types_compatible

CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
NOTE_TYPES = ("Note", "MarkdownNote")
MUTED, BYPASSED = 2, 4


@dataclass
class Conversion:
    prompt: dict[str, Any]                       # API format, `_meta` included
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class UiLink:
    id: Any
    origin: str
    origin_slot: int
    target: str
    target_slot: int
    type: str


@dataclass
class _Source:
    """Where an input gets its value: a link to a real node, or a constant (from a primitive node)."""

    link: list[Any] | None = None
    value: Any = None
    control: Any = None
    points: list[list[int]] = field(default_factory=list)
    is_constant: bool = False


def is_ui_format(doc: Any) -> bool:
    return isinstance(doc, Mapping) and isinstance(doc.get("nodes"), list) and (
        isinstance(doc.get("links"), list) or "version" in doc)


def ui_to_api(doc: Mapping[str, Any], registry: Registry) -> Conversion:
    """Convert a UI-format workflow; raises `WorkflowError` for unknown node types or a malformed file."""
    nodes = _nodes(doc)
    links = _links(doc)
    _check_types(doc, nodes, registry)
    conversion = Conversion({})
    hashes = _model_hashes(doc)
    groups = [g for g in doc.get("groups") or [] if isinstance(g, Mapping) and _box(g.get("bounding"))]
    for nid in sorted(nodes, key=_id_order):
        node = nodes[nid]
        kind, mode = node.get("type"), node.get("mode", 0)
        if kind in NOTE_TYPES:
            conversion.notes.append(f"node {nid} ({kind}) dropped: the API format has no notes")
        elif kind in ("Reroute", "PrimitiveNode") and registry.get(kind) is None:
            if not _output_links(node):
                conversion.notes.append(f"node {nid} ({kind}) dropped: it is connected to nothing")
        elif mode == MUTED:
            conversion.notes.append(f"node {nid} ({kind}) dropped: it is muted")
        elif mode == BYPASSED:
            conversion.notes.append(f"node {nid} ({kind}) dropped: it is bypassed (its inputs pass through)")
        else:
            spec = registry.get(kind)
            conversion.prompt[nid] = _convert_node(nid, node, spec, nodes, links, groups, conversion.notes)
            _add_hashes(conversion.prompt[nid], hashes)
    return conversion


def _nodes(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    nodes: dict[str, dict[str, Any]] = {}
    for node in doc.get("nodes") or []:
        if not isinstance(node, Mapping) or "id" not in node or not isinstance(node.get("type"), str):
            raise WorkflowError("invalid_prompt", "Malformed UI-format workflow",
                                f"a node needs an id and a type: {str(node)[:120]}")
        nodes[str(node["id"])] = dict(node)
    return nodes


def _links(doc: Mapping[str, Any]) -> dict[Any, UiLink]:
    links = {}
    for raw in doc.get("links") or []:
        try:
            if isinstance(raw, Mapping):  # schema version 1
                link = UiLink(raw["id"], str(raw["origin_id"]), int(raw["origin_slot"]), str(raw["target_id"]),
                              int(raw["target_slot"]), str(raw.get("type", "*")))
            else:
                lid, origin, oslot, target, tslot, kind = raw[:6]
                link = UiLink(lid, str(origin), int(oslot), str(target), int(tslot), str(kind))
        except (KeyError, ValueError, TypeError) as exc:
            raise WorkflowError("invalid_prompt", "Malformed UI-format workflow",
                                f"bad link {str(raw)[:120]}: {exc}") from None
        links[link.id] = link
    return links


def _check_types(doc: Mapping[str, Any], nodes: dict[str, dict[str, Any]], registry: Registry) -> None:
    """Every node that would run must be a registered type (virtual, muted and bypassed ones need not be)."""
    subgraphs = {s.get("id") for s in (doc.get("definitions") or {}).get("subgraphs") or [] if isinstance(s, Mapping)}
    unknown: dict[str, list[str]] = {}
    for nid, node in nodes.items():
        kind = node["type"]
        if registry.get(kind) is None and kind not in (*NOTE_TYPES, "Reroute", "PrimitiveNode") \
                and node.get("mode", 0) not in (MUTED, BYPASSED):
            label = f"{kind} (a subgraph; not supported)" if kind in subgraphs else kind
            unknown.setdefault(label, []).append(nid)
    if unknown:
        names = ", ".join(sorted(unknown))
        raise WorkflowError("invalid_prompt", f"Cannot convert: unknown node type(s) {names}",
                            "; ".join(f"{k}: node(s) {', '.join(v)}" for k, v in sorted(unknown.items())),
                            {"unknown": {k: v for k, v in sorted(unknown.items())}})


def _convert_node(nid: str, node: dict[str, Any], spec: NodeSpec, nodes: dict[str, dict[str, Any]],
                  links: dict[Any, UiLink], groups: list[Mapping[str, Any]], notes: list[str]) -> dict[str, Any]:
    inputs, controls = _widget_values(nid, node, spec, notes)
    meta = _meta(node, spec, groups)
    for slot in node.get("inputs") or []:
        if not isinstance(slot, Mapping) or slot.get("link") is None:
            continue
        name = str(slot.get("name") or (slot.get("widget") or {}).get("name"))
        source = _resolve(links.get(slot["link"]), nodes, links, notes, f"node {nid} input {name}", set())
        if source is None:  # noted by _resolve; a converted widget keeps its own value
            continue
        if source.is_constant:
            inputs[name] = _constant(source.value)
            if source.control is not None:
                controls[name] = source.control
        else:
            inputs[name] = source.link
            if source.points:
                meta.setdefault("reroutes", {})[name] = source.points
    if controls:
        meta["control_after_generate"] = {k: _control_mode(v) for k, v in controls.items()}
    return {"inputs": inputs, "class_type": node["type"], "_meta": meta}


def widget_inputs(spec: NodeSpec) -> list[InputSpec]:
    """A node's widget inputs in the editor's order: required, then optional; `forceInput` ones have none."""
    ordered = [i for i in spec.inputs if i.required] + [i for i in spec.inputs if not i.required]
    return [i for i in ordered if i.type.is_widget and not i.options.get("forceInput")]


def _widget_values(nid: str, node: Mapping[str, Any], spec: NodeSpec,
                   notes: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    values = node.get("widgets_values")
    widgets = widget_inputs(spec)
    if isinstance(values, Mapping):  # some frontends and packs save widgets by name
        names = {w.name for w in widgets}
        extra = sorted(set(values) - names)
        if extra:
            notes.append(f"node {nid} ({node['type']}): widget values {extra} match no input and were ignored")
        return {k: _constant(v) for k, v in values.items() if k in names}, {}
    values = list(values or [])
    inputs: dict[str, Any] = {}
    controls: dict[str, Any] = {}
    at = 0
    for index, widget in enumerate(widgets):
        if at >= len(values):
            break
        inputs[widget.name] = _constant(values[at])
        at += 1
        remaining = len(widgets) - index - 1
        if at < len(values) and _has_control(widget, values[at], len(values) - at > remaining):
            controls[widget.name] = values[at]
            at += 1
        if widget.options.get("image_upload") and at < len(values) and len(values) - at > remaining:
            at += 1  # the upload button's value ("image")
    if at < len(values):
        notes.append(f"node {nid} ({node['type']}): {len(values) - at} widget value(s) {values[at:]!r} match no "
                     "input and were ignored")
    return inputs, controls


def _has_control(widget: InputSpec, value: Any, surplus: bool) -> bool:
    if widget.options.get("control_after_generate"):
        return True
    return widget.type.name == "INT" and surplus and (value in CONTROL_VALUES or isinstance(value, bool))


def _control_mode(value: Any) -> str:
    if isinstance(value, bool):
        return "randomize" if value else "fixed"
    return value if value in CONTROL_VALUES else "fixed"


def _resolve(link: UiLink | None, nodes: dict[str, dict[str, Any]], links: dict[Any, UiLink], notes: list[str],
             where: str, seen: set[Any]) -> _Source | None:
    """Follow a link back through reroutes, primitive nodes and bypassed nodes to what really feeds it."""
    if link is None:
        notes.append(f"{where}: its link is not in the file's links; left unconnected")
        return None
    if link.id in seen:
        notes.append(f"{where}: reroutes or bypassed nodes form a loop; left unconnected")
        return None
    seen.add(link.id)
    origin = nodes.get(link.origin)
    if origin is None:
        notes.append(f"{where}: links to node {link.origin}, which is not in the file; left unconnected")
        return None
    kind, mode = origin["type"], origin.get("mode", 0)
    if kind == "PrimitiveNode":
        values = list(origin.get("widgets_values") or [])
        if not values:
            notes.append(f"{where}: primitive node {link.origin} has no value; left unset")
            return None
        return _Source(value=values[0], control=values[1] if len(values) > 1 else None, is_constant=True)
    if kind == "Reroute" or mode == BYPASSED:
        upstream = _pass_through(origin, link)
        if upstream is None:
            notes.append(f"{where}: {'reroute' if kind == 'Reroute' else 'bypassed'} node {link.origin} has no "
                         f"connected input of type {link.type}; left unconnected")
            return None
        source = _resolve(links.get(upstream), nodes, links, notes, where, seen)
        if source is not None and kind == "Reroute":
            source.points.append(_centre(origin))
        return source
    if mode == MUTED:
        notes.append(f"{where}: its source node {link.origin} ({kind}) is muted; left unconnected")
        return None
    return _Source(link=[link.origin, link.origin_slot])


def _pass_through(node: Mapping[str, Any], link: UiLink) -> Any:
    """The link feeding a reroute, or a bypassed node's first input whose type matches the output's."""
    slots = [s for s in node.get("inputs") or [] if isinstance(s, Mapping)]
    if node["type"] == "Reroute":
        return slots[0].get("link") if slots else None
    out_type = link.type
    outputs = node.get("outputs") or []
    if link.origin_slot < len(outputs) and isinstance(outputs[link.origin_slot], Mapping):
        out_type = str(outputs[link.origin_slot].get("type", out_type))
    for exact in (True, False):
        for slot in slots:
            kind = str(slot.get("type", "*"))
            if (kind == out_type if exact else types_compatible(kind, out_type)) and slot.get("link") is not None:
                return slot["link"]
    return None


def _output_links(node: Mapping[str, Any]) -> list[Any]:
    return [lid for out in node.get("outputs") or [] if isinstance(out, Mapping) for lid in out.get("links") or []]


def _meta(node: Mapping[str, Any], spec: NodeSpec, groups: list[Mapping[str, Any]]) -> dict[str, Any]:
    meta: dict[str, Any] = {"title": node.get("title") or spec.display_name}
    pos, size = _pair(node.get("pos")), _pair(node.get("size"))
    if pos is not None:
        meta["pos"] = pos
    if size is not None:
        meta["size"] = size
    if (node.get("flags") or {}).get("collapsed"):
        meta["collapsed"] = True
    for key in ("color", "bgcolor"):
        if node.get(key):
            meta[key] = node[key]
    models = (node.get("properties") or {}).get("models") if isinstance(node.get("properties"), Mapping) else None
    if isinstance(models, list):
        meta["models"] = [m for m in models if isinstance(m, Mapping) and isinstance(m.get("name"), str)]
    if pos is not None:
        centre = _centre(node)
        inside = [g for g in groups if _contains(_box(g["bounding"]), centre)]
        if inside:
            meta["groups"] = [{"title": g.get("title", ""), "bounding": [round(v) for v in _box(g["bounding"])],
                               **({"color": g["color"]} if g.get("color") else {})} for g in inside]
    return meta


def _pair(value: Any) -> list[int] | None:
    if isinstance(value, Mapping):  # very old files: {"0": x, "1": y}
        value = [value.get("0"), value.get("1")]
    if isinstance(value, (list, tuple)) and len(value) >= 2 and all(isinstance(v, (int, float)) for v in value[:2]):
        return [round(value[0]), round(value[1])]
    return None


def _box(value: Any) -> list[float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 4 and all(isinstance(v, (int, float)) for v in value):
        return list(value)
    return None


def _centre(node: Mapping[str, Any]) -> list[int]:
    pos, size = _pair(node.get("pos")) or [0, 0], _pair(node.get("size")) or [0, 0]
    return [round(pos[0] + size[0] / 2), round(pos[1] + size[1] / 2)]


def _contains(box: list[float], point: list[int]) -> bool:
    return box[0] <= point[0] <= box[0] + box[2] and box[1] <= point[1] <= box[1] + box[3]


def _constant(value: Any) -> Any:
    """A 2-element list constant would read as a link: wrap it, as the API format does."""
    return {"__value__": value} if isinstance(value, list) and len(value) == 2 else value


def _model_hashes(doc: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """`(folder, name) → sha256` from the file's `models` list (ComfyUI's: name, url, hash, hash_type, directory)."""
    found = {}
    for model in doc.get("models") or []:
        if (isinstance(model, Mapping) and str(model.get("hash_type", "SHA256")).upper() == "SHA256"
                and isinstance(model.get("hash"), str) and isinstance(model.get("name"), str)):
            found[(str(model.get("directory", "")), model["name"])] = model["hash"].lower()
    return found


def _add_hashes(entry: dict[str, Any], hashes: dict[tuple[str, str], str]) -> None:
    for name, value in entry["inputs"].items():
        folder = model_folder(entry.get("class_type"), name)
        if folder is not None and isinstance(value, str) and (folder, value) in hashes:
            entry["_meta"].setdefault("model_sha256", {})[name] = hashes[(folder, value)]


def _id_order(nid: str) -> tuple[int, int | str]:
    return (0, int(nid)) if nid.isdigit() else (1, nid)
