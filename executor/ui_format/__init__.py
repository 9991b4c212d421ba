"""ComfyUI's UI format (`nodes`/`links`, reference §3.2) converted to the API format we run — in one place.

The CLI (`run`, `validate`), `POST /prompt` and the editor (`POST /workflow/convert`) all use `ui_to_api`. It does
what ComfyUI's frontend does when it loads a file and queues it:

- Subgraphs (`definitions.subgraphs`) are expanded, their nodes getting ids `<outer>:<inner>` (`subgraphs`).
- Widget values are read as the frontend reads them, defaults filling what the file lacks (`widgets`).
- Control values are not inputs: those of inputs with a seed control go to `_meta.control_after_generate` (the
  editor's field, which the server resolves when the prompt is queued; a boolean `true` is `randomize`).
- Virtual nodes disappear: a `Reroute` passes its input on (its position is kept in `_meta.reroutes` of the
  consumer, as the editor stores reroute points); a `PrimitiveNode` becomes the constant of each input it feeds
  (its control value too, where the input has a seed control); `Note` / `MarkdownNote` nodes are dropped.
- Muted nodes (mode 2) are removed; a consumer of a bypassed node (mode 4) is linked to what feeds the bypassed
  node's input of the consumer's input type — the input at the output's index first, then the first such input.
- Editor data goes to `_meta` (`editor`).
- Nothing is silently dropped: every removed node, lost link, default used and left-over widget value is named in
  the conversion's `notes`. Unknown node types fail the conversion with every one of them named; a malformed
  document fails with a `WorkflowError` naming the node (`document`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from executor.ui_format import editor
from executor.ui_format.document import BYPASSED, MUTED, UiLink, input_name, malformed
from executor.ui_format.subgraphs import FlatGraph, LinkKey, flatten
from executor.ui_format.widgets import constant, control_mode, has_seed_control, widget_values
from executor.workflow import WorkflowError
from nodes.api import Environment, NodeSpec
from nodes.registry import Registry

NOTE_TYPES = ("Note", "MarkdownNote")
VIRTUAL_TYPES = ("Reroute", "PrimitiveNode")


@dataclass
class Conversion:
    prompt: dict[str, Any]                       # API format, `_meta` included
    notes: list[str] = field(default_factory=list)


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


def ui_to_api(doc: Mapping[str, Any], registry: Registry, env: Environment | None = None) -> Conversion:
    """Convert a UI-format workflow; raises `WorkflowError` for unknown node types or a malformed file.

    `env`, when given, lists the files a combo input without a value defaults to (its first option).
    """
    if not isinstance(doc, Mapping):
        raise malformed("document", "a UI-format workflow is an object")
    graph = flatten(doc)
    _check_types(graph, registry)
    conversion = Conversion({}, list(graph.notes))
    hashes, groups = editor.model_hashes(doc), editor.groups(doc)
    used = _used_origins(graph)
    for nid in sorted(graph.nodes, key=_id_order):
        node = graph.nodes[nid]
        kind, mode = node["type"], node.get("mode", 0)
        if kind in NOTE_TYPES:
            conversion.notes.append(f"node {nid} ({kind}) dropped: the API format has no notes")
        elif kind in VIRTUAL_TYPES and registry.get(kind) is None:
            if nid not in used:
                conversion.notes.append(f"node {nid} ({kind}) dropped: it is connected to nothing")
        elif mode == MUTED:
            conversion.notes.append(f"node {nid} ({kind}) dropped: it is muted")
        elif mode == BYPASSED:
            conversion.notes.append(f"node {nid} ({kind}) dropped: it is bypassed (its inputs pass through)")
        else:
            entry = _convert_node(nid, node, registry.get(kind), graph, groups, env, conversion.notes)
            editor.add_hashes(entry, hashes)
            conversion.prompt[nid] = entry
    return conversion


def _check_types(graph: FlatGraph, registry: Registry) -> None:
    """Every node that would run must be a registered type (virtual, muted and bypassed ones need not be)."""
    unknown: dict[str, list[str]] = {}
    for nid, node in graph.nodes.items():
        kind = node["type"]
        if registry.get(kind) is None and kind not in (*NOTE_TYPES, *VIRTUAL_TYPES) \
                and node.get("mode", 0) not in (MUTED, BYPASSED):
            unknown.setdefault(kind, []).append(nid)
    if unknown:
        names = ", ".join(sorted(unknown))
        raise WorkflowError("invalid_prompt", f"Cannot convert: unknown node type(s) {names}",
                            "; ".join(f"{k}: node(s) {', '.join(v)}" for k, v in sorted(unknown.items())),
                            {"unknown": {k: v for k, v in sorted(unknown.items())}})


def _used_origins(graph: FlatGraph) -> set[str]:
    """The nodes some input takes a link from."""
    return {graph.links[s["link"]].origin for node in graph.nodes.values() for s in node["inputs"]
            if s["link"] in graph.links}


def _convert_node(nid: str, node: dict[str, Any], spec: NodeSpec, graph: FlatGraph, groups: list[Mapping[str, Any]],
                  env: Environment | None, notes: list[str]) -> dict[str, Any]:
    linked = {input_name(s) for s in node["inputs"] if s["link"] is not None}
    inputs, controls = widget_values(nid, node, spec, env, linked, notes)
    inputs.update({k: constant(v) for k, v in graph.constants.get(nid, {}).items()})
    meta = editor.meta(node, spec, [] if nid in graph.inner else groups)  # inner positions are the subgraph's
    seeded = {i.name for i in spec.inputs if has_seed_control(i)}
    for slot in node["inputs"]:
        if slot["link"] is None:
            continue
        name = input_name(slot)
        source = _resolve(slot["link"], str(slot.get("type", "*")), graph, notes, f"node {nid} input {name}", set())
        if source is None:  # noted by _resolve; a converted widget keeps its own value
            continue
        controls.pop(name, None)
        if not source.is_constant:
            inputs[name] = source.link
            if source.points:
                meta.setdefault("reroutes", {})[name] = source.points
            continue
        inputs[name] = constant(source.value)
        if source.control is not None and name in seeded:
            controls[name] = source.control
        elif source.control is not None and control_mode(source.control) != "fixed":
            notes.append(f"node {nid} input {name}: the primitive node's control {source.control!r} is not "
                         "applied: the input has no seed control")
    if controls:
        meta["control_after_generate"] = {k: control_mode(v) for k, v in controls.items()}
    return {"inputs": inputs, "class_type": node["type"], "_meta": meta}


def _resolve(key: LinkKey, want: str, graph: FlatGraph, notes: list[str], where: str,
             seen: set[LinkKey]) -> _Source | None:
    """Follow a link back through reroutes, primitive nodes and bypassed nodes to what really feeds it.

    `want` is the type of the consuming input: a bypassed node passes on its input of that type.
    """
    link = graph.links.get(key)
    if link is None:
        notes.append(f"{where}: its link is not in the file's links; left unconnected")
        return None
    if key in seen:
        notes.append(f"{where}: reroutes or bypassed nodes form a loop; left unconnected")
        return None
    seen.add(key)
    origin = graph.nodes.get(link.origin)
    if origin is None:
        notes.append(f"{where}: links to node {link.origin}, which is not in the file; left unconnected")
        return None
    kind, mode = origin["type"], origin.get("mode", 0)
    if kind == "PrimitiveNode":
        values = origin.get("widgets_values")
        if not isinstance(values, list) or not values:
            notes.append(f"{where}: primitive node {link.origin} has no value; left unset")
            return None
        return _Source(value=values[0], control=values[1] if len(values) > 1 else None, is_constant=True)
    if kind == "Reroute" or mode == BYPASSED:
        upstream = _pass_through(origin, link, want)
        if upstream is None:
            notes.append(f"{where}: {'reroute' if kind == 'Reroute' else 'bypassed'} node {link.origin} has no "
                         f"connected input of type {want}; left unconnected")
            return None
        source = _resolve(upstream, want, graph, notes, where, seen)
        if source is not None and kind == "Reroute":
            source.points.append(editor.centre(origin))
        return source
    if mode == MUTED:
        notes.append(f"{where}: its source node {link.origin} ({kind}) is muted; left unconnected")
        return None
    return _Source(link=[link.origin, link.origin_slot])


def _pass_through(node: Mapping[str, Any], link: UiLink, want: str) -> LinkKey | None:
    """The link feeding a reroute; for a bypassed node, ComfyUI's rule: of its inputs, the one at the output's
    index if its type is the consumer's, else the first of that type — linked or not."""
    slots = node["inputs"]
    if node["type"] == "Reroute":
        return slots[0]["link"] if slots else None
    for index in (link.origin_slot, *range(len(slots))):
        if 0 <= index < len(slots) and str(slots[index].get("type", "*")) == want:
            return slots[index]["link"]
    return None


def _id_order(nid: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdecimal() else (1, part) for part in nid.split(":")]
