"""Graph planning (networkx): the link graph of a workflow, its cycles, and a topological order.

A node comes after every node it links to. Ties keep workflow order, so runs are reproducible. The order of the
whole graph restricted to the nodes a run needs is a valid order for them, which keeps planning linear.
"""
from __future__ import annotations

from typing import Iterable

import networkx as nx

from executor.workflow import Link, Workflow


def link_graph(workflow: Workflow) -> nx.DiGraph:
    """Edges source → consumer for every link between existing nodes."""
    graph = nx.DiGraph()
    graph.add_nodes_from(workflow.nodes)
    for nid, n in workflow.nodes.items():
        graph.add_edges_from((v.node, nid) for v in n.inputs.values()
                             if isinstance(v, Link) and v.node in workflow.nodes)
    return graph


def cycles(graph: nx.DiGraph) -> list[set[str]]:
    """Each group of nodes that depend on each other (a strongly connected component with a cycle)."""
    return [c for c in nx.strongly_connected_components(graph)
            if len(c) > 1 or any(graph.has_edge(n, n) for n in c)]


def plan(graph: nx.DiGraph, needed: Iterable[str], skip: set[str] = frozenset()) -> list[str]:
    """`needed` in topological order; nodes in `skip` (those on cycles) are left out."""
    wanted = set(needed) - skip
    acyclic = graph.subgraph(set(graph) - skip) if skip else graph
    return [nid for nid in nx.topological_sort(acyclic) if nid in wanted]
