"""`comfy_execution.graph_utils`: `GraphBuilder`, to build the subgraph a node returns for expansion, and `is_link`.

    graph = GraphBuilder()
    blur = graph.node("ImageBlur", image=image_link, blur_radius=2)
    return {"result": (blur.out(0),), "expand": graph.finalize()}

Node ids are prefixed (`"<running node id>.<8 hex>."` by default) so that they never collide with the workflow's or
another expansion's; a node is named by its own id (`id=`) or numbered in creation order.
"""
from __future__ import annotations

import uuid
from typing import Any

from nodes.comfy_compat import current_context


def is_link(obj: Any) -> bool:
    """Whether `obj` is a link `[node id, output index]`."""
    return (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], int)
            and not isinstance(obj[1], bool))


class Node:
    """One node of a `GraphBuilder`."""

    def __init__(self, id: str, class_type: str, inputs: dict[str, Any]) -> None:
        self.id, self.class_type, self.inputs = id, class_type, dict(inputs)
        self.override_display_id: str | None = None

    def out(self, index: int) -> list[Any]:
        return [self.id, index]

    def set_input(self, key: str, value: Any) -> None:
        if value is None:
            self.inputs.pop(key, None)
        else:
            self.inputs[key] = value

    def get_input(self, key: str) -> Any:
        return self.inputs.get(key)

    def set_override_display_id(self, override_display_id: str) -> None:
        self.override_display_id = override_display_id

    def serialize(self) -> dict[str, Any]:
        return {"class_type": self.class_type, "inputs": dict(self.inputs)}


class GraphBuilder:
    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix if prefix is not None else self.alloc_prefix()
        self.nodes: dict[str, Node] = {}
        self.id_gen = 1

    @staticmethod
    def alloc_prefix() -> str:
        ctx = current_context()
        return f"{ctx.node_id if ctx is not None else 'expansion'}.{uuid.uuid4().hex[:8]}."

    def node(self, class_type: str, id: str | None = None, **kwargs: Any) -> Node:
        if id is None:
            id = str(self.id_gen)
            self.id_gen += 1
        full_id = self.prefix + id
        if full_id in self.nodes:
            return self.nodes[full_id]
        self.nodes[full_id] = Node(full_id, class_type, kwargs)
        return self.nodes[full_id]

    def lookup_node(self, id: str) -> Node | None:
        return self.nodes.get(self.prefix + id)

    def remove_node(self, id: str) -> None:
        self.nodes.pop(self.prefix + id, None)

    def finalize(self) -> dict[str, dict[str, Any]]:
        return {nid: node.serialize() for nid, node in self.nodes.items()}
