"""Reading the parts of a UI-format document, checking each field the converter uses.

A field of the wrong type is a `WorkflowError` that names the node (or link, or subgraph) it belongs to, never
another exception further on. Editor-only fields (`pos`, `size`, `flags`, colours, groups) are read leniently
where they are used: a value that cannot be drawn is left out of `_meta`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from executor.workflow import WorkflowError

MUTED, BYPASSED = 2, 4
SUBGRAPH_INPUT, SUBGRAPH_OUTPUT = "-10", "-20"   # the ids of a subgraph's own input and output nodes


@dataclass(frozen=True)
class UiLink:
    origin: str        # the flat id of the node the link comes from
    origin_slot: int
    type: str


def malformed(where: str, problem: str) -> WorkflowError:
    return WorkflowError("invalid_prompt", "Malformed UI-format workflow", f"{where}: {problem}",
                         {"where": where})


def is_id(value: Any) -> bool:
    """Node and link ids are integers or strings (never booleans, floats or containers)."""
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def _slot(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _list(owner: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = owner.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise malformed(where, f"`{key}` must be a list, not {type(value).__name__}")
    return value


def read_nodes(graph: Mapping[str, Any], prefix: str) -> list[tuple[str, dict[str, Any]]]:
    """The nodes of a graph (the document or a subgraph) as `(flat id, node)`, each checked; ids unique."""
    nodes: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for position, node in enumerate(_list(graph, "nodes", f"graph {prefix or 'root'}")):
        if not isinstance(node, Mapping) or not is_id(node.get("id")):
            raise malformed(f"node #{position} of graph {prefix or 'root'}",
                            f"a node needs an integer or string id: {str(node)[:120]}")
        nid = f"{prefix}{node['id']}"
        if nid in seen:
            raise malformed(f"node {nid}", "its id is used twice")
        seen.add(nid)
        _check_node(nid, node)
        nodes.append((nid, dict(node)))
    return nodes


def _check_node(nid: str, node: Mapping[str, Any]) -> None:
    where = f"node {nid}"
    if not isinstance(node.get("type"), str):
        raise malformed(where, "`type` must be a string")
    if not _slot(node.get("mode", 0)):
        raise malformed(where, "`mode` must be an integer")
    if not isinstance(node.get("widgets_values"), (list, Mapping, type(None))):
        raise malformed(where, "`widgets_values` must be a list or an object")
    if not isinstance(node.get("title"), (str, type(None))):
        raise malformed(where, "`title` must be a string")
    for key in ("flags", "properties"):
        if not isinstance(node.get(key), (Mapping, type(None))):
            raise malformed(where, f"`{key}` must be an object")
    for slot in _list(node, "inputs", where):
        if not isinstance(slot, Mapping):
            raise malformed(where, f"input {str(slot)[:60]} must be an object")
        if not isinstance(slot.get("name"), (str, type(None))) or not isinstance(slot.get("type", ""), (str, int)):
            raise malformed(where, f"input {str(slot)[:60]}: `name` and `type` must be strings")
        if slot.get("link") is not None and not is_id(slot["link"]):
            raise malformed(where, f"input {slot.get('name')!r}: the link id {slot['link']!r} is not an id")
        if not isinstance(slot.get("widget"), (Mapping, type(None))):
            raise malformed(where, f"input {slot.get('name')!r}: `widget` must be an object")
    for slot in _list(node, "outputs", where):
        if not isinstance(slot, Mapping) or not isinstance(slot.get("links"), (list, type(None))):
            raise malformed(where, f"output {str(slot)[:60]} must be an object whose `links` is a list")


def input_name(slot: Mapping[str, Any]) -> str:
    widget = slot.get("widget")
    name = slot.get("name") or (widget.get("name") if isinstance(widget, Mapping) else None)
    return str(name)


def read_links(graph: Mapping[str, Any], prefix: str) -> dict[Any, tuple[str, int, str, int, str]]:
    """`link id → (origin id, origin slot, target id, target slot, type)`, ids as written in this graph.

    Links are arrays `[id, origin, origin_slot, target, target_slot, type]` or objects (schema 1, subgraphs).
    """
    links = {}
    for raw in _list(graph, "links", f"graph {prefix or 'root'}"):
        if raw is None:  # a removed link some editors leave as null
            continue
        if isinstance(raw, Mapping):
            fields = [raw.get(k) for k in ("id", "origin_id", "origin_slot", "target_id", "target_slot")]
            fields.append(raw.get("type", "*"))
        elif isinstance(raw, list) and len(raw) >= 5:
            fields = [*raw[:5], raw[5] if len(raw) > 5 else "*"]
        else:
            raise malformed(f"link {str(raw)[:80]} of graph {prefix or 'root'}", "a link is an array of six "
                            "values or an object")
        lid, origin, oslot, target, tslot, kind = fields
        if not (is_id(lid) and is_id(origin) and is_id(target) and _slot(oslot) and _slot(tslot)):
            raise malformed(f"link {str(raw)[:80]} of graph {prefix or 'root'}", "ids must be integers or "
                            "strings and slots integers")
        if kind is not None and not isinstance(kind, (str, int)):
            raise malformed(f"link {lid} of graph {prefix or 'root'}", "`type` must be a string")
        links[lid] = (str(origin), oslot, str(target), tslot, "*" if kind is None else str(kind))
    return links


def read_definitions(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """`subgraph id → definition` from `definitions.subgraphs`."""
    definitions = doc.get("definitions")
    if definitions is None:
        return {}
    if not isinstance(definitions, Mapping):
        raise malformed("definitions", "must be an object")
    found: dict[str, Mapping[str, Any]] = {}
    for subgraph in _list(definitions, "subgraphs", "definitions"):
        if not isinstance(subgraph, Mapping) or not isinstance(subgraph.get("id"), str):
            raise malformed("definitions.subgraphs", f"a subgraph needs a string id: {str(subgraph)[:80]}")
        where = f"subgraph {subgraph['id']}"
        for key in ("inputs", "outputs"):
            if not all(isinstance(s, Mapping) for s in _list(subgraph, key, where)):
                raise malformed(where, f"each of `{key}` must be an object")
        found[subgraph["id"]] = subgraph
    return found
