"""Validation: each ComfyUI error code, the report's shape, and malformed documents."""
from __future__ import annotations

import pytest

from executor.workflow import WorkflowError, parse_workflow


def chain(**overrides):
    wf = {
        "1": {"class_type": "Constant", "inputs": {"value": 2.0}},
        "2": {"class_type": "Scale", "inputs": {"x": ["1", 0], "factor": 3, "mode": "multiply"}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
    }
    for key, value in overrides.items():
        nid, name = key.split("_", 1)
        if value is None:
            del wf[nid]["inputs"][name]
        else:
            wf[nid]["inputs"][name] = value
    return wf


def only_error(report, nid):
    errs = report.node_errors()[nid]["errors"]
    assert len(errs) == 1, errs
    return errs[0]


def test_clean_workflow_coerces_constants(engine):
    report = engine.check(chain(**{"2_factor": 2.9, "1_value": 1}))
    assert report.clean and report.outputs == ["3"]
    assert report.nodes["2"].constants["factor"] == 2  # INT truncates like Python's int()
    assert isinstance(report.nodes["1"].constants["value"], float)


def test_required_input_missing(engine):
    report = engine.check(chain(**{"2_x": None}))
    err = only_error(report, "2")
    assert err["type"] == "required_input_missing" and err["details"] == "x"
    assert not report.ok and report.error.type == "prompt_outputs_failed_validation"
    assert report.node_errors()["2"]["dependent_outputs"] == ["3"]
    assert report.node_errors()["2"]["class_type"] == "Scale"


def test_link_to_missing_node_and_output(engine):
    report = engine.check(chain(**{"2_x": ["9", 0]}))
    assert only_error(report, "2")["type"] == "exception_during_inner_validation"
    report = engine.check(chain(**{"2_x": ["1", 4]}))
    err = only_error(report, "2")
    assert err["type"] == "bad_linked_input" and "no output 4" in err["details"]


def test_type_mismatch(engine):
    wf = chain()
    wf["4"] = {"class_type": "Format", "inputs": {"x": ["1", 0], "template": "{}"}}
    wf["2"]["inputs"]["x"] = ["4", 0]  # STRING into NUMBER
    err = only_error(engine.check(wf), "2")
    assert err["type"] == "return_type_mismatch"
    assert err["details"] == "x, received_type(STRING) mismatch input_type(NUMBER)"


def test_wrong_value_type_and_ranges(engine):
    assert only_error(engine.check(chain(**{"2_factor": "1.5"})), "2")["type"] == "invalid_input_type"
    err = only_error(engine.check(chain(**{"2_factor": -1})), "2")
    assert err["type"] == "value_smaller_than_min" and err["message"] == "Value -1 smaller than min of 0"
    err = only_error(engine.check(chain(**{"1_value": 5000})), "1")
    assert err["type"] == "value_bigger_than_max"
    err = only_error(engine.check(chain(**{"2_mode": "cube"})), "2")
    assert err["type"] == "value_not_in_list"
    assert err["details"] == "mode: 'cube' not in ['multiply', 'divide']"
    assert err["extra_info"]["input_config"][0] == ["multiply", "divide"]


def test_constant_on_socket_and_list_value(engine):
    assert only_error(engine.check(chain(**{"2_x": 3.0})), "2")["type"] == "invalid_input_type"
    assert only_error(engine.check(chain(**{"2_factor": [1, 2, 3]})), "2")["type"] == "bad_linked_input"


def test_value_wrapper_is_a_constant(engine):
    wf = chain()
    wf["4"] = {"class_type": "Format", "inputs": {"x": ["1", 0], "template": {"__value__": ["{}", "x"]}}}
    wf["5"] = {"class_type": "Show", "inputs": {"value": ["4", 0]}}
    # a 2-list constant reaches a STRING input as its str(); it must not be taken for a link
    report = engine.check(wf)
    assert report.clean
    assert report.nodes["4"].constants["template"] == "['{}', 'x']"


def test_cycle_names_its_nodes(engine):
    wf = chain()
    wf["4"] = {"class_type": "Add", "inputs": {"a": ["5", 0], "b": ["1", 0]}}
    wf["5"] = {"class_type": "Add", "inputs": {"a": ["4", 0], "b": ["1", 0]}}
    wf["6"] = {"class_type": "Show", "inputs": {"value": ["5", 0]}}
    report = engine.check(wf)
    errs = report.node_errors()
    assert set(errs) == {"4", "5"}
    assert errs["4"]["errors"][0]["type"] == "dependency_cycle"
    assert "4, 5" in errs["4"]["errors"][0]["details"]
    assert report.ok and report.outputs == ["3"]  # the other output still runs, as in ComfyUI


def test_no_output_node(engine):
    report = engine.check({"1": {"class_type": "Constant", "inputs": {"value": 1}}})
    assert report.error.type == "prompt_no_outputs"


def test_unknown_class_type_names_every_unknown_node(engine):
    wf = chain()
    wf["7"] = {"class_type": "Nope", "inputs": {}}
    wf["8"] = {"class_type": "AlsoNope", "inputs": {}}
    report = engine.check(wf)
    assert report.error.type == "invalid_prompt"
    assert "AlsoNope, Nope" in report.error.message
    assert set(report.node_errors()) == {"7", "8"}


def test_custom_validation_hook(engine):
    wf = chain()
    wf["4"] = {"class_type": "Format", "inputs": {"x": ["1", 0], "template": "no placeholder"}}
    wf["5"] = {"class_type": "Show", "inputs": {"value": ["4", 0]}}
    err = only_error(engine.check(wf), "4")
    assert err["type"] == "custom_validation_failed" and err["details"] == "template must contain {}"


def test_exception_in_validation_hook_is_reported(engine):
    wf = chain()
    wf["4"] = {"class_type": "Format", "inputs": {"x": ["1", 0], "template": "crash"}}
    wf["5"] = {"class_type": "Show", "inputs": {"value": ["4", 0]}}
    report = engine.check(wf)
    err = only_error(report, "4")
    assert err["type"] == "exception_during_validation" and "hook bug" in err["details"]
    assert report.ok and report.outputs == ["3"]


def test_all_problems_in_one_report(engine):
    wf = chain(**{"2_factor": -5, "2_mode": "cube"})
    wf["4"] = {"class_type": "Divide", "inputs": {"y": 0}}
    wf["5"] = {"class_type": "Show", "inputs": {"value": ["4", 1]}}
    errs = engine.check(wf).node_errors()
    assert [e["type"] for e in errs["2"]["errors"]] == ["value_smaller_than_min", "value_not_in_list"]
    assert sorted(e["type"] for e in errs["4"]["errors"]) == ["required_input_missing", "value_smaller_than_min"]


def test_downstream_of_invalid_node_gets_no_duplicate_errors(engine):
    report = engine.check(chain(**{"1_value": "abc"}))
    assert set(report.node_errors()) == {"1"}
    assert report.node_errors()["1"]["dependent_outputs"] == ["3"]


def test_targets_restrict_outputs(engine):
    wf = chain()
    wf["4"] = {"class_type": "Show", "inputs": {"value": ["1", 0]}}
    assert engine.check(wf, targets=["4"]).outputs == ["4"]
    assert engine.check(wf, targets=[]).error.type == "prompt_no_outputs"


def test_alias_resolves(engine):
    wf = chain()
    wf["1"]["class_type"] = "Const"
    report = engine.check(wf)
    assert report.clean and report.nodes["1"].spec.name == "Constant"


def test_to_comfy_shape(engine):
    body = engine.check(chain(**{"2_factor": 1000})).to_comfy()
    assert set(body) == {"error", "node_errors"}
    assert set(body["error"]) == {"type", "message", "details", "extra_info"}
    err = body["node_errors"]["2"]["errors"][0]
    assert set(err) == {"type", "message", "details", "extra_info"}
    assert err["extra_info"]["input_name"] == "factor" and err["extra_info"]["received_value"] == 1000


@pytest.mark.parametrize("text, fragment", [
    ("{not json", "Invalid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"1": {"inputs": {}}}', "missing the class_type"),
    ('{"1": 5}', "missing the class_type"),
    ('{"1": {"class_type": "Constant", "inputs": 7}}', "malformed"),
    ('{"nodes": [], "links": []}', "UI-format"),
])
def test_malformed_documents_raise_workflow_error(text, fragment):
    with pytest.raises(WorkflowError) as info:
        parse_workflow(text)
    assert fragment in info.value.message
    assert info.value.to_comfy()["type"] == "invalid_prompt"


def test_meta_preserved_round_trip():
    wf = {"1": {"class_type": "Constant", "inputs": {"value": 1, "pair": {"__value__": [1, 2]}},
                "_meta": {"title": "One", "pos": [10, 20]}},
          "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}, "_meta": {"title": "S"}}}
    assert parse_workflow(wf).to_api() == wf
