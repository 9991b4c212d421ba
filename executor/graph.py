"""Planning: which nodes a run needs, in an order where every node comes after the nodes it links to."""
from __future__ import annotations

import networkx as nx

from executor.validate import ValidNode


def plan(nodes: dict[str, ValidNode], outputs: list[str]) -> list[str]:
    """The ancestors of `outputs` (and the outputs), topologically sorted; ties keep workflow order."""
    graph = nx.DiGraph()
    stack = list(outputs)
    seen = set(stack)
    graph.add_nodes_from(stack)
    while stack:
        nid = stack.pop()
        for link in nodes[nid].links.values():
            graph.add_edge(link.node, nid)
            if link.node not in seen:
                seen.add(link.node)
                stack.append(link.node)
    order = {nid: i for i, nid in enumerate(nodes)}
    return list(nx.lexicographical_topological_sort(graph, key=order.__getitem__))
