"""Subgraphs expanded into one flat graph, as ComfyUI's frontend does when it queues a workflow.

A node whose `type` is the id of one of `definitions.subgraphs` stands for that subgraph's nodes; they run with
the ids `<outer id>:<inner id>` (nested ones `<a>:<b>:<c>`). Inside a subgraph, links from node -10 carry the
subgraph node's inputs (origin slot k = its input k) and links into node -20 give its outputs (target slot m =
its output m). An input of the subgraph node that is not linked leaves the inner widget at the value the subgraph
node shows for it (its `widgets_values`: by name, per its `properties.proxyWidgets`, or in the order of its widget
inputs), else at the inner node's own.
A muted or bypassed subgraph node is not expanded: it is removed, or passed through, like any other node. Groups
inside a subgraph are dropped (with a note): the API format keeps only the root canvas's.

Links get flat keys `(graph prefix, link id)`; a link into a subgraph boundary is an alias of the link it carries
on, resolved at the end, so the order of the nodes in the file does not matter.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from executor.ui_format.document import (BYPASSED, MUTED, SUBGRAPH_INPUT, SUBGRAPH_OUTPUT, UiLink, input_name,
                                         is_id, malformed, read_definitions, read_links, read_nodes)
from executor.ui_format.node_ids import renumber_clashing_inner_ids

MAX_DEPTH = 32
MAX_NODES = 100_000   # subgraphs nest: a small file can stand for more nodes than anyone runs

LinkKey = tuple[Any, ...]


@dataclass
class FlatGraph:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)      # inputs' `link` are flat link keys
    links: dict[LinkKey, UiLink] = field(default_factory=dict)
    constants: dict[str, dict[str, Any]] = field(default_factory=dict)  # flat id → values a subgraph node gives
    aliases: dict[LinkKey, LinkKey | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    inner: set[str] = field(default_factory=set)                        # nodes from inside subgraphs


def flatten(doc: Mapping[str, Any]) -> FlatGraph:
    doc = renumber_clashing_inner_ids(doc)
    definitions = read_definitions(doc)
    flat = FlatGraph()
    _expand(doc, "", _Boundary([], {}), definitions, flat, ())
    for nid, node in flat.nodes.items():
        for slot in node["inputs"]:
            if slot["link"] is not None:
                slot["link"] = _follow(flat, slot["link"], nid, input_name(slot))
    return flat


@dataclass
class _Boundary:
    """What a subgraph node hands its subgraph: per input, the link it carries or the value its widget shows."""

    links: list[LinkKey | None]
    values: dict[int, Any]


def _expand(graph: Mapping[str, Any], prefix: str, boundary: _Boundary,
            definitions: dict[str, Mapping[str, Any]], flat: FlatGraph, stack: tuple[str, ...]) -> None:
    nodes = read_nodes(graph, prefix)
    links = read_links(graph, prefix)
    expanded = set()
    for nid, node in nodes:
        definition = definitions.get(node["type"])
        if definition is not None and node.get("mode", 0) not in (MUTED, BYPASSED):
            if definition["id"] in stack or len(stack) >= MAX_DEPTH:
                raise malformed(f"node {nid}", f"subgraph {definition['id']} contains itself")
            if len(flat.nodes) > MAX_NODES:
                raise malformed(f"node {nid}", f"its subgraphs expand to more than {MAX_NODES} nodes")
            inner = _Boundary([(prefix, s["link"]) if s.get("link") is not None else None
                               for s in node.get("inputs") or []], _shown_values(node, definition, nid, flat))
            if definition.get("groups"):
                flat.notes.append(f"node {nid} ({node['type']}): the groups inside its subgraph are not carried over")
            _expand(definition, f"{nid}:", inner, definitions, flat, (*stack, definition["id"]))
            expanded.add(nid)
        else:
            node["inputs"] = [{**s, "link": (prefix, s["link"]) if s.get("link") is not None else None}
                              for s in node.get("inputs") or []]
            flat.nodes[nid] = node
            if prefix:
                flat.inner.add(nid)
    for lid, (origin, oslot, target, tslot, kind) in links.items():
        key = (prefix, lid)
        if origin == SUBGRAPH_INPUT:
            flat.aliases[key] = _boundary_link(boundary, oslot)
            _give_value(boundary, oslot, f"{prefix}{target}", tslot, flat)
        elif f"{prefix}{origin}" in expanded:
            flat.aliases[key] = ("out", f"{prefix}{origin}", oslot)
        else:
            flat.links[key] = UiLink(f"{prefix}{origin}", oslot, kind)
        if target == SUBGRAPH_OUTPUT and prefix:
            flat.aliases[("out", prefix[:-1], tslot)] = key


def _boundary_link(boundary: _Boundary, slot: int) -> LinkKey | None:
    return boundary.links[slot] if 0 <= slot < len(boundary.links) else None


def _give_value(boundary: _Boundary, slot: int, target: str, tslot: int, flat: FlatGraph) -> None:
    """An unlinked subgraph input whose subgraph node shows a value: that value goes to the inner widget."""
    node = flat.nodes.get(target)
    if node is None or slot not in boundary.values or _boundary_link(boundary, slot) is not None:
        return
    if 0 <= tslot < len(node["inputs"]):
        flat.constants.setdefault(target, {})[input_name(node["inputs"][tslot])] = boundary.values[slot]


def _shown_values(node: Mapping[str, Any], definition: Mapping[str, Any], nid: str,
                  flat: FlatGraph) -> dict[int, Any]:
    """Subgraph input index → the value the subgraph node's widget for it shows.

    With `properties.proxyWidgets` (`[inner node id, widget name]` per value, id -1 for a subgraph input) the
    values it shows for inner widgets go to `flat.constants`; when their count differs from the values', none
    is used (the subgraph's own values stand).
    """
    values = node.get("widgets_values")
    slots = list(enumerate(node.get("inputs") or []))
    if isinstance(values, Mapping):
        return {i: values[input_name(s)] for i, s in slots if input_name(s) in values}
    proxies = (node.get("properties") or {}).get("proxyWidgets")
    if proxies is None:
        widgets = [i for i, s in slots if s.get("widget") is not None]
        return {i: v for i, v in zip(widgets, values or [])}
    if not isinstance(proxies, list) or len(proxies) != len(values or []) or not all(
            isinstance(p, list) and len(p) == 2 and all(is_id(x) for x in p) for p in proxies):
        flat.notes.append(f"node {nid}: its widget values do not match its promoted widgets; the subgraph's own "
                          "values are used")
        return {}
    names = [input_name(s) for s in definition.get("inputs") or []]
    shown = {}
    for (inner, name), value in zip(proxies, values):
        if str(inner) == "-1" and name in names:
            shown[names.index(name)] = value
        elif str(inner) != "-1":
            flat.constants.setdefault(f"{nid}:{inner}", {})[str(name)] = value
    return shown


def _follow(flat: FlatGraph, key: LinkKey, nid: str, name: str) -> LinkKey | None:
    seen = set()
    while key in flat.aliases:
        if key in seen:
            raise malformed(f"node {nid}", f"input {name} is linked in a loop through subgraph inputs and outputs")
        seen.add(key)
        key = flat.aliases[key]
        if key is None:
            return None
    if key[0] == "out":
        flat.notes.append(f"node {nid} input {name}: output {key[2]} of subgraph node {key[1]} is connected to "
                          "nothing inside it; left unconnected")
        return None
    return key
