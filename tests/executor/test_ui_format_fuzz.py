"""Generated UI-format documents, well-formed and not: the converter gives a Conversion or a WorkflowError, never
another exception."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.ui_format import Conversion, ui_to_api
from executor.workflow import WorkflowError
from nodes.builtin import builtin_registry

REGISTRY = builtin_registry()
SUBGRAPH = "5d1c7d3e-0000-4000-8000-00000000000a"
TYPES = ["KSampler", "KSamplerAdvanced", "SaveImage", "LoadImage", "LoraLoader", "EmptyLatentImage", "VAEDecode",
         "CLIPTextEncode", "PrimitiveNode", "Reroute", "Note", "PrimitiveInt", "PreviewAny", SUBGRAPH, "Unknown"]
SOCKETS = ["MODEL", "CLIP", "VAE", "LATENT", "IMAGE", "CONDITIONING", "INT", "STRING", "*"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**64) | st.floats(allow_nan=True) | st.text(max_size=4)
    | st.sampled_from(["fixed", "randomize", "increment", "image", "euler"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6)
ids = st.integers(-20, 6) | st.sampled_from(["1", "-10", "-20", "a"])
slots = st.integers(-1, 4)
link_ids = st.integers(0, 8)


def documents(dirty: bool) -> st.SearchStrategy:
    """UI-format documents with random graphs; `dirty`: any field may also hold any JSON value."""

    def maybe(strategy):
        return st.one_of(strategy, json_values) if dirty else strategy

    slot_inputs = st.fixed_dictionaries(
        {"name": st.sampled_from(["model", "seed", "steps", "images", "clip", "text", "value", ""]),
         "type": st.sampled_from(SOCKETS), "link": maybe(st.none() | link_ids)},
        optional={"widget": maybe(st.fixed_dictionaries({"name": st.sampled_from(["seed", "steps", "text"])}))})
    slot_outputs = st.fixed_dictionaries({"name": st.text(max_size=3), "type": st.sampled_from(SOCKETS),
                                          "links": maybe(st.none() | st.lists(link_ids, max_size=3))})
    nodes = st.fixed_dictionaries(
        {"id": maybe(ids), "type": maybe(st.sampled_from(TYPES))},
        optional={"mode": maybe(st.sampled_from([0, 2, 4])),
                  "inputs": maybe(st.lists(maybe(slot_inputs), max_size=4)),
                  "outputs": maybe(st.lists(maybe(slot_outputs), max_size=3)),
                  "widgets_values": maybe(st.lists(json_values, max_size=8)), "pos": json_values,
                  "size": json_values, "title": maybe(st.text(max_size=4)), "color": json_values,
                  "properties": maybe(st.fixed_dictionaries({"proxyWidgets": maybe(st.lists(
                      st.tuples(ids, st.sampled_from(["seed", "steps", "text"])).map(list), max_size=3))}))})
    array_links = st.tuples(maybe(link_ids), maybe(ids), maybe(slots), maybe(ids), maybe(slots),
                            maybe(st.sampled_from(SOCKETS))).map(list)
    object_links = st.fixed_dictionaries({"id": maybe(link_ids), "origin_id": maybe(ids),
                                          "origin_slot": maybe(slots), "target_id": maybe(ids),
                                          "target_slot": maybe(slots), "type": maybe(st.sampled_from(SOCKETS))})
    links = st.lists(maybe(array_links | object_links), max_size=8)
    subgraph = st.fixed_dictionaries(
        {"id": maybe(st.just(SUBGRAPH)), "nodes": maybe(st.lists(maybe(nodes), max_size=4)), "links": maybe(links)},
        optional={"inputs": maybe(st.lists(maybe(st.fixed_dictionaries({"name": st.text(max_size=3)})),
                                           max_size=3))})
    return st.fixed_dictionaries(
        {"nodes": st.lists(maybe(nodes), max_size=6, unique_by=None if dirty else (lambda n: str(n["id"]))),
         "links": maybe(links)},
        optional={"definitions": maybe(st.fixed_dictionaries({"subgraphs": maybe(st.lists(maybe(subgraph),
                                                                                           max_size=1))})),
                  "groups": json_values, "models": json_values, "version": json_values})


@pytest.mark.parametrize("dirty", [False, True])
def test_any_document_converts_or_is_refused_with_a_workflow_error(dirty):
    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(documents(dirty))
    def check(doc):
        _convert_or_refuse(doc)

    check()


def _convert_or_refuse(doc):
    try:
        result = ui_to_api(doc, REGISTRY)
    except WorkflowError as error:
        assert error.message and error.type == "invalid_prompt"
        return
    assert isinstance(result, Conversion) and all(isinstance(n, str) for n in result.notes)


@pytest.mark.parametrize("doc, where", [
    ({"nodes": [{"id": 1, "type": "SaveImage", "inputs": [{"name": "images", "link": [1]}]}], "links": []},
     "node 1"),
    ({"nodes": [], "links": [[{"x": 1}, 1, 0, 2, 0, "IMAGE"]]}, "link"),
    ({"nodes": [], "links": [], "definitions": ["not", "an", "object"]}, "definitions"),
    ({"nodes": [{"id": 3, "type": "SaveImage", "widgets_values": "ComfyUI"}], "links": []}, "node 3"),
    ({"nodes": [{"id": 3, "type": "SaveImage", "mode": "bypass"}], "links": []}, "node 3"),
    ({"nodes": [{"id": 2, "type": "SaveImage"}, {"id": 2, "type": "SaveImage"}], "links": []}, "node 2"),
    ({"nodes": [{"id": 1, "type": "S"}], "links": [],
      "definitions": {"subgraphs": [{"id": "S", "nodes": [{"id": 4, "type": "S"}]}]}}, "node 1:4"),
])
def test_malformed_documents_name_what_is_wrong(doc, where):
    with pytest.raises(WorkflowError) as caught:
        ui_to_api(doc, REGISTRY)
    assert caught.value.details.startswith(where), caught.value.details


def test_subgraphs_that_expand_beyond_reason_are_refused():
    """Ten instances of a subgraph holding ten instances of the next, six levels deep: 10**6 nodes."""
    levels = [{"id": f"level{i}", "nodes": [{"id": n, "type": f"level{i + 1}"} for n in range(10)]} for i in range(6)]
    levels.append({"id": "level6", "nodes": [{"id": 1, "type": "PrimitiveInt", "widgets_values": [1, "fixed"]}]})
    doc = {"nodes": [{"id": 1, "type": "level0"}], "links": [], "definitions": {"subgraphs": levels}}
    with pytest.raises(WorkflowError) as caught:
        ui_to_api(doc, REGISTRY)
    assert "expand to more than 100000 nodes" in caught.value.details
