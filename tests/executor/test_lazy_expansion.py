"""Lazy inputs and node expansion in the run loop, with nodes of our own API (V1 and V3 packs: tests/nodes)."""
from __future__ import annotations

import pytest

from nodes.registry import Registry
from tests.executor import flow_nodes, stub_nodes


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.add_module(stub_nodes)
    reg.add_module(flow_nodes)
    return reg


def choose(first: bool) -> dict:
    return {
        "1": {"class_type": "Constant", "inputs": {"value": 3.0}},
        "2": {"class_type": "Constant", "inputs": {"value": 5.0}},
        "3": {"class_type": "Scale", "inputs": {"x": ["2", 0], "factor": 7, "mode": "multiply"}},
        "4": {"class_type": "LazyChoose", "inputs": {"first": first, "a": ["1", 0], "b": ["3", 0]}},
        "5": {"class_type": "Show", "inputs": {"value": ["4", 0]}},
    }


def test_only_the_requested_lazy_branch_runs(engine):
    result = engine.run(choose(True))
    assert result.success and result.outputs["5"] == {"text": ["3.0"]}
    assert result.executed == ["1", "4", "5"]
    result = engine.run(choose(False))
    assert result.outputs["5"] == {"text": ["35.0"]}
    assert result.executed == ["2", "3", "4", "5"]  # 1 is not needed: never fetched, never run
    again = engine.run(choose(False))
    assert again.executed == [] and again.outputs["5"] == {"text": ["35.0"]}


def test_expansion_runs_the_subgraph_and_caches_its_nodes(engine):
    wf = {"1": {"class_type": "Constant", "inputs": {"value": 1.5}},
          "2": {"class_type": "TimesByExpansion", "inputs": {"x": ["1", 0], "times": 3, "show_inside": True}},
          "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    result = engine.run(wf)
    assert result.success, result.error
    assert result.outputs["3"] == {"text": ["12.0"]} and result.outputs["2.show"] == {"text": ["12.0"]}
    assert result.executed == ["1", "2.zero", "2.x", "2.0", "2.1", "2.2", "2.show", "2", "3"]
    wf["2"]["inputs"]["times"] = 4  # the parent re-runs; the first three Scale nodes' keys are unchanged
    result = engine.run(wf)
    assert result.outputs["3"] == {"text": ["24.0"]}
    assert result.executed == ["2.3", "2.show", "2", "3"]


def test_an_invalid_expansion_fails_the_expanding_node(engine, monkeypatch):
    wf = {"1": {"class_type": "Constant", "inputs": {"value": 1.0}},
          "2": {"class_type": "TimesByExpansion", "inputs": {"x": ["1", 0], "times": 1, "show_inside": False}},
          "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    expand = flow_nodes.TimesByExpansion.run

    def broken(self, ctx):
        expansion = expand(self, ctx)
        expansion.graph[ctx.node_id + ".0"]["inputs"]["factor"] = 1000  # above Scale's max
        return expansion

    monkeypatch.setattr(flow_nodes.TimesByExpansion, "run", broken)
    result = engine.run(wf)
    assert result.status == "error" and result.error.node_id == "2"
    assert "node expansion added invalid nodes: #2.0 Value 1000 bigger than max of 100" in (
        result.error.exception_message)
