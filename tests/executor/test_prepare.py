"""executor.prepare.admit: the one admission path, and the one error shape it refuses with."""
from __future__ import annotations

import pytest

from executor.errors import PromptError, format_errors
from executor.prepare import admit
from executor.seeds import FirstSubmission
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths

PROMPT = {"1": {"class_type": "PrimitiveInt", "inputs": {"value": 41},
                "_meta": {"control_after_generate": "randomize"}},
          "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


@pytest.fixture(scope="module")
def registry():
    return builtin_registry()


@pytest.fixture
def env(tmp_path):
    return Environment(DataPaths(tmp_path / "data"))


def test_admits_with_seeds_resolved_and_keeps_them_when_admitted_again(registry, env):
    admitted = admit(PROMPT, registry, env, seeds=FirstSubmission())
    seed = admitted.prompt["1"]["inputs"]["value"]
    assert admitted.report.clean and admitted.report.outputs == ["2"]
    assert 0 <= seed <= 2**50
    again = admit(admitted.prompt, registry, env)  # the worker's and reproduce's call: no counters
    assert again.prompt["1"]["inputs"]["value"] == seed


@pytest.mark.parametrize("doc, code", [
    ([1, 2], "invalid_prompt"),
    ({"1": {"inputs": {}}}, "invalid_prompt"),
    ({"1": {"class_type": "Nope", "inputs": {}}}, "invalid_prompt"),
    ({"1": {"class_type": "PrimitiveInt", "inputs": {"value": 1}}}, "prompt_no_outputs"),
])
def test_refusals_carry_comfyui_error_shape(registry, env, doc, code):
    with pytest.raises(PromptError) as info:
        admit(doc, registry, env, seeds=FirstSubmission())
    body = info.value.body()
    assert set(body) == {"error", "node_errors"}
    assert body["error"]["type"] == code and set(body["error"]) == {"type", "message", "details", "extra_info"}


def test_node_problems_are_reported_per_node(registry, env):
    bad = {**PROMPT, "1": {**PROMPT["1"], "inputs": {"value": "many"}, "_meta": {}}}
    with pytest.raises(PromptError) as info:
        admit(bad, registry, env)
    assert info.value.type == "prompt_outputs_failed_validation"
    entry = info.value.node_errors["1"]
    assert entry["class_type"] == "PrimitiveInt" and entry["dependent_outputs"] == ["2"]
    assert entry["errors"][0]["type"] == "invalid_input_type"
    lines = list(format_errors(info.value.body()))
    assert lines[0] == "error: Prompt outputs failed validation"
    assert any(line.startswith("node 1 (PrimitiveInt): invalid_input_type: ") for line in lines)


def test_bad_seed_control_is_a_node_error(registry, env):
    bad = {**PROMPT, "1": {**PROMPT["1"], "_meta": {"control_after_generate": "sometimes"}}}
    with pytest.raises(PromptError) as info:
        admit(bad, registry, env, seeds=FirstSubmission())
    assert info.value.node_errors["1"]["errors"][0]["type"] == "invalid_seed_control"
