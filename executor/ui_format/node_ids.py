"""Inner node ids made unique across the whole document, as the newest ComfyUI frontend does when it loads one.

The frontend keeps every node id unique across the root graph and all subgraph definitions. On load, walking the
definitions in file order and each one's nodes in order, a node whose id is already taken (by a root node or an
inner node met before) gets the next free id after the document's last node id (`last_node_id`, or
`state.lastNodeId` for schema 1, raised by every id met); a node with a free id keeps it. The links inside its
definition and the `properties.proxyWidgets` entries of the nodes that stand for that subgraph follow the new id.
Flattened inner ids (`<outer>:<inner>`) are then the ones the frontend queues; a document without clashes comes
back unchanged.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping


def renumber_clashing_inner_ids(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """`doc`, or a copy of it whose subgraph definitions' clashing node ids are renumbered."""
    definitions = (doc.get("definitions") or {}).get("subgraphs") if isinstance(doc.get("definitions"), Mapping) \
        else None
    if not isinstance(definitions, list) or not definitions:
        return doc
    used = {str(node.get("id")) for node in doc.get("nodes") or [] if isinstance(node, Mapping)}
    state = doc.get("state") if isinstance(doc.get("state"), Mapping) else {}
    last = _number(doc.get("last_node_id", state.get("lastNodeId"))) or 0
    last = max([last, *(n for n in map(_number, used) if n is not None)])
    plans: dict[str, dict[str, int]] = {}
    for definition in definitions:
        if not isinstance(definition, Mapping):
            continue
        remap: dict[str, int] = {}
        for node in definition.get("nodes") or []:
            key = str(node.get("id")) if isinstance(node, Mapping) else None
            if key is None:
                continue
            if key in used:
                last += 1
                while str(last) in used:
                    last += 1
                remap[key] = last
                used.add(str(last))
            else:
                used.add(key)
                last = max(last, _number(key) or 0)
        if remap:
            plans[str(definition.get("id"))] = remap
    if not plans:
        return doc
    doc = copy.deepcopy(doc)
    graphs = [doc, *doc["definitions"]["subgraphs"]]
    for definition in doc["definitions"]["subgraphs"]:
        remap = plans.get(str(definition.get("id")))
        if remap:
            _apply(definition, remap)
    for graph in graphs:  # the subgraph nodes that stand for a renumbered definition, wherever they are
        for node in graph.get("nodes") or []:
            remap = plans.get(str(node.get("type"))) if isinstance(node, Mapping) else None
            proxies = (node.get("properties") or {}).get("proxyWidgets") if remap else None
            for entry in proxies if isinstance(proxies, list) else []:
                if isinstance(entry, list) and entry and str(entry[0]) in remap:
                    entry[0] = type(entry[0])(remap[str(entry[0])])
    return doc


def _apply(definition: dict[str, Any], remap: dict[str, int]) -> None:
    for node in definition.get("nodes") or []:
        if isinstance(node, dict) and str(node.get("id")) in remap:
            node["id"] = remap[str(node["id"])]
    for link in definition.get("links") or []:
        if isinstance(link, dict):
            for end in ("origin_id", "target_id"):
                if str(link.get(end)) in remap:
                    link[end] = remap[str(link[end])]
        elif isinstance(link, list) and len(link) >= 5:
            for index in (1, 3):
                if str(link[index]) in remap:
                    link[index] = remap[str(link[index])]
    for widget in definition.get("widgets") or []:
        if isinstance(widget, dict) and str(widget.get("id")) in remap:
            widget["id"] = remap[str(widget["id"])]


def _number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
