"""Nodes of our own API that use lazy inputs and node expansion, for the run-loop tests."""
from __future__ import annotations

from nodes.api import Context, Expansion, Input, Node, node
from tests.executor.stub_nodes import Number, record


@node(category="test/flow", version="1.0.0")
class LazyChoose(Node):
    """`a` when `first`, else `b`; only the chosen one is evaluated."""

    first: bool = Input(True)
    a: Number = Input(lazy=True)
    b: Number = Input(lazy=True)

    def check_lazy_status(self, ctx: Context) -> list[str]:
        return ["a"] if self.first else ["b"]

    def run(self, ctx: Context) -> Number:
        record(self)
        return self.a if self.first else self.b


@node(category="test/flow", version="1.0.0")
class TimesByExpansion(Node):
    """`x` doubled `times` times, by expanding into a chain of Scale nodes that ends in a Show."""

    x: Number = Input()
    times: int = Input(2, ge=0, le=10)
    show_inside: bool = Input(False)

    def run(self, ctx: Context) -> Number:
        record(self)
        graph: dict = {}
        current: list = [ctx.node_id + ".x", 0]
        graph[ctx.node_id + ".x"] = {"class_type": "Add", "inputs": {"a": list(ctx.prompt[ctx.node_id]["inputs"]["x"]),
                                                                     "b": [ctx.node_id + ".zero", 0]}}
        graph[ctx.node_id + ".zero"] = {"class_type": "Constant", "inputs": {"value": 0.0}}
        for i in range(self.times):
            graph[f"{ctx.node_id}.{i}"] = {"class_type": "Scale", "inputs": {"x": current, "factor": 2,
                                                                     "mode": "multiply"}}
            current = [f"{ctx.node_id}.{i}", 0]
        if self.show_inside:
            graph[ctx.node_id + ".show"] = {"class_type": "Show", "inputs": {"value": current}}
        return Expansion(graph, (current,))
