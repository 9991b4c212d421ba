"""Validation: every problem of a workflow in one report, before anything runs.

The report uses ComfyUI's error types and shape so the same report serves the CLI, `POST /prompt` (its 400
body is `report.to_comfy()`) and the editor. Rules, in order:

1. Each node's `class_type` must be registered (else the request fails as `invalid_prompt`; every unknown
   node is named).
2. Outputs are the output nodes (optionally only the requested targets); none → `prompt_no_outputs`.
3. Cycles among the nodes that outputs depend on are reported on each node of the cycle.
4. Each node an output depends on has its declared inputs checked: presence, link shape, link target and type,
   constant coercion (ComfyUI's Python rules), min/max, combo membership, then the node's own hook.
5. An output whose whole upstream is clean is runnable; if none is, the request fails with
   `prompt_outputs_failed_validation`. Nodes with errors list the outputs depending on them.

Valid nodes come back as `ValidNode`s with coerced constants, ready for planning and execution.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from nodes.api import Environment, InputSpec, LinkedInput, NodeSpec
from nodes.registry import Registry, input_options, render_input
from nodes.types import ANY, types_compatible
from executor.errors import ErrorInfo, node_entry
from executor.graph import cycles, link_graph, plan
from executor.workflow import Link, Workflow, WorkflowError, Wrapped


@dataclass(slots=True)
class ValidNode:
    id: str
    spec: NodeSpec
    constants: dict[str, Any]
    links: dict[str, Link]


@dataclass
class ValidationReport:
    workflow: Workflow
    nodes: dict[str, ValidNode] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # the nodes the runnable outputs need, in run order
    errors: dict[str, list[ErrorInfo]] = field(default_factory=dict)
    dependent_outputs: dict[str, list[str]] = field(default_factory=dict)
    error: WorkflowError | None = None
    registry: Registry | None = None  # what the nodes were looked up in (node expansion adds nodes at run time)

    @property
    def ok(self) -> bool:
        """At least one output can run (ComfyUI accepts the prompt, dropping failing outputs)."""
        return self.error is None

    @property
    def clean(self) -> bool:
        return self.error is None and not self.errors

    def node_errors(self) -> dict[str, Any]:
        return {nid: node_entry(self.workflow.nodes[nid].class_type, errs, self.dependent_outputs.get(nid))
                for nid, errs in self.errors.items()}

    def to_comfy(self) -> dict[str, Any]:
        return {"error": self.error.to_comfy() if self.error else None, "node_errors": self.node_errors()}


def validate(workflow: Workflow, registry: Registry, env: Environment,
             targets: list[str] | None = None) -> ValidationReport:
    """Every problem of `workflow` in one report (rules in the module doc); never raises for bad input.

    `targets`: only these output nodes count (ComfyUI's `partial_execution_targets`); `env` lists the combo
    options that come from the data folder (model files, input images).
    """
    report = ValidationReport(workflow, registry=registry)
    specs = {nid: registry.get(n.class_type) for nid, n in workflow.nodes.items()}
    unknown = [nid for nid, spec in specs.items() if spec is None]
    for nid in unknown:
        report.errors[nid] = [ErrorInfo("invalid_prompt", "Unknown node type",
                                        f"Node ID '#{nid}': {workflow.nodes[nid].class_type!r} is not registered",
                                        {"class_type": workflow.nodes[nid].class_type})]
    outputs = [nid for nid, spec in specs.items() if spec is not None and spec.output_node
               and (targets is None or nid in targets)]
    if unknown:
        names = ", ".join(sorted({workflow.nodes[n].class_type for n in unknown}))
        report.error = WorkflowError("invalid_prompt", f"Cannot execute because node {names} does not exist.",
                                     ", ".join(f"Node ID '#{n}'" for n in unknown))
    elif not outputs:
        report.error = WorkflowError("prompt_no_outputs", "Prompt has no outputs",
                                     "no output node" + (" among the targets" if targets is not None else ""))
        return report
    graph = link_graph(workflow)
    upstream = {out: nx.ancestors(graph, out) | {out} for out in outputs}
    needed = set().union(*upstream.values())
    cyclic = _report_cycles(graph, needed, report)
    order = plan(graph, needed, cyclic)
    for nid in order:
        if specs[nid] is not None and nid not in report.errors:
            _check_node(workflow.nodes[nid].inputs, nid, specs[nid], specs, workflow, env, report)
    _finish(upstream, report)
    runnable = set().union(*(upstream[out] for out in report.outputs))
    report.order = [nid for nid in order if nid in runnable]
    return report


def _report_cycles(graph: nx.DiGraph, needed: set[str], report: ValidationReport) -> set[str]:
    """Report each needed node that sits on a cycle; returns every node on a cycle."""
    cyclic: set[str] = set()
    for component in cycles(graph):
        cyclic |= component
        members = sorted(component, key=_id_order)
        for nid in component & needed:
            report.errors.setdefault(nid, []).append(
                ErrorInfo("dependency_cycle", "Dependency cycle detected",
                          f"nodes {', '.join(members)} depend on each other", {"cycle": members}))
    return cyclic


def _id_order(nid: str) -> tuple[int, int | str]:
    return (0, int(nid)) if nid.isdigit() else (1, nid)


def _check_node(inputs: dict[str, Any], nid: str, spec: NodeSpec, specs: dict[str, NodeSpec | None],
                workflow: Workflow, env: Environment, report: ValidationReport) -> None:
    errors: list[ErrorInfo] = []
    constants: dict[str, Any] = {}
    links: dict[str, Link] = {}
    upstream_invalid = False
    for inp in spec.inputs:
        if inp.name not in inputs:
            if inp.required:
                errors.append(ErrorInfo("required_input_missing", "Required input is missing", inp.name,
                                        {"input_name": inp.name}))
            continue
        value = inputs[inp.name]
        if isinstance(value, Link):
            err, bad_upstream = _check_link(inp, value, specs, workflow, report, spec.own_validation.link_types)
            upstream_invalid |= bad_upstream
            if err:
                errors.append(err)
            else:
                links[inp.name] = value
            continue
        err, coerced = _check_constant(inp, value, env, inp.name in spec.own_validation.inputs)
        if err:
            errors.append(err)
        else:
            constants[inp.name] = coerced
    if not errors and not upstream_invalid:
        errors += _run_hook(spec, constants, links, specs, env)
    if errors:
        report.errors[nid] = errors
    elif not upstream_invalid:
        report.nodes[nid] = ValidNode(nid, spec, constants, links)


def _run_hook(spec: NodeSpec, constants: dict[str, Any], links: dict[str, Link],
              specs: dict[str, NodeSpec | None], env: Environment) -> list[ErrorInfo]:
    """The node's own `validate_inputs`: a message, or `{input: message}` for one error per input."""
    values: dict[str, Any] = dict(constants)
    if spec.own_validation.sees_links:
        for name, link in links.items():
            values[name] = LinkedInput(specs[link.node].outputs[int(link.slot)].type)
    try:
        result = spec.cls.validate_inputs(values, env)
    except Exception as exc:  # a node's own hook must not take validation down
        return [ErrorInfo("exception_during_validation", "Exception when validating node",
                          f"{type(exc).__name__}: {exc}", {"exception_type": type(exc).__name__})]
    if not result:
        return []
    per_input = result if isinstance(result, dict) else {"": result}
    return [ErrorInfo("custom_validation_failed", "Custom validation failed for node",
                      f"{name} - {message}" if name and message else name or str(message),
                      {"class_type": spec.name, **({"input_name": name} if name else {})})
            for name, message in per_input.items()]


def _check_link(inp: InputSpec, link: Link, specs: dict[str, NodeSpec | None], workflow: Workflow,
                report: ValidationReport, own_types: bool = False) -> tuple[ErrorInfo | None, bool]:
    extra = {"input_name": inp.name}
    if link.node not in workflow.nodes:
        return ErrorInfo("exception_during_inner_validation", "Exception when validating inner node",
                         f"{inp.name}: linked node '#{link.node}' does not exist", extra), False
    source = specs[link.node]
    if source is None:
        return None, True  # reported on the source node already
    slot = link.slot
    if isinstance(slot, float) and slot.is_integer():
        slot = int(slot)
    if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < len(source.outputs):
        return ErrorInfo("bad_linked_input",
                         "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                         f"{inp.name}: node '#{link.node}' ({source.name}) has no output {slot!r}", extra), False
    received = source.outputs[slot].type
    expected = "COMBO" if inp.type.is_combo else inp.type.name
    if not own_types and not (types_compatible(received, expected) or (inp.type.is_combo and received == "STRING")):
        return ErrorInfo("return_type_mismatch", "Return type mismatch between linked nodes",
                         f"{inp.name}, received_type({received}) mismatch input_type({expected})",
                         {**extra, "received_type": received, "linked_node": link.to_api()}), False
    return None, link.node not in report.nodes


def _check_constant(inp: InputSpec, value: Any, env: Environment,
                    own_checks: bool = False) -> tuple[ErrorInfo | None, Any]:
    """Coerce a constant; range and option checks unless the node's hook does them (`own_checks`)."""
    extra = {"input_name": inp.name, "received_value": value.value if isinstance(value, Wrapped) else value}
    if isinstance(value, Wrapped):
        value = value.value
    elif isinstance(value, list):
        return ErrorInfo("bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                         f"{inp.name}: a list of length {len(value)} is neither a link nor a value", extra), None
    if not inp.type.is_widget:
        if inp.type.name == ANY:
            return None, value
        return ErrorInfo("invalid_input_type", f"Failed to convert an input value to a {inp.type.name} value",
                         f"{inp.name}, {value!r}, a {inp.type.name} input takes a link, not a constant",
                         extra), None
    if inp.type.is_combo and own_checks:
        return None, value
    if inp.type.is_combo:
        try:
            options = input_options(inp, env) or []
        except Exception as exc:  # a dynamic list that cannot be computed (e.g. an unreadable folder)
            return ErrorInfo("exception_during_validation", "Exception when validating node",
                             f"{inp.name}: cannot list options: {exc}", extra), None
        if str(value) not in options or not isinstance(value, (str, int, float)):
            shown = str(options) if len(options) <= 20 else f"(list of length {len(options)})"
            return ErrorInfo("value_not_in_list", "Value not in list", f"{inp.name}: '{value}' not in {shown}",
                             {**extra, "input_config": render_input(inp, env) if len(options) <= 20 else None}), None
        return None, str(value)
    try:
        coerced = _coerce(inp.type.name, value)
    except (TypeError, ValueError, OverflowError) as exc:
        return ErrorInfo("invalid_input_type", f"Failed to convert an input value to a {inp.type.name} value",
                         f"{inp.name}, {value!r}, {exc}", extra), None
    if own_checks:
        return None, coerced
    if inp.min is not None and coerced < inp.min:
        return ErrorInfo("value_smaller_than_min", f"Value {coerced} smaller than min of {inp.min}",
                         inp.name, {**extra, "input_config": render_input(inp, env)}), None
    if inp.max is not None and coerced > inp.max:
        return ErrorInfo("value_bigger_than_max", f"Value {coerced} bigger than max of {inp.max}",
                         inp.name, {**extra, "input_config": render_input(inp, env)}), None
    return None, coerced


def _coerce(type_name: str, value: Any) -> Any:
    """ComfyUI's coercions: Python's int()/float()/str()/bool() (so INT of 1.9 is 1 and of "1.5" fails)."""
    if value is None or isinstance(value, dict):
        raise TypeError(f"{type(value).__name__} is not a {type_name}")
    if type_name == "INT":
        return int(value)
    if type_name == "FLOAT":
        result = float(value)
        if result != result or result in (float("inf"), float("-inf")):
            raise ValueError("not a finite number")
        return result
    if type_name == "STRING":
        return str(value)
    return bool(value)


def _finish(upstream: dict[str, set[str]], report: ValidationReport) -> None:
    bad = set(report.errors)
    good: list[str] = []
    for out, nodes in upstream.items():
        failing = nodes & bad
        for nid in failing:
            report.dependent_outputs.setdefault(nid, []).append(out)
        if not failing and out in report.nodes:
            good.append(out)
    report.outputs = good
    if report.error is None and not good:
        lines = [f"{e.message}: {e.details}" for errs in report.errors.values() for e in errs]
        report.error = WorkflowError("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                                     "\n".join(lines))


def validate_added(workflow: Workflow, added: list[str], known: dict[str, ValidNode], registry: Registry,
                   env: Environment) -> ValidationReport:
    """Check the nodes a running node added (node expansion, reference §4.7) with the per-node checks above.

    `workflow` holds every node, `known` the valid nodes already there (links may reach them). The report's
    `order` is the added nodes in run order, `nodes` the valid ones (known included), `errors` the others; an
    added node linking to a node that is not valid gets an error of its own.
    """
    report = ValidationReport(workflow, nodes=dict(known), registry=registry)
    specs = {nid: registry.get(n.class_type) for nid, n in workflow.nodes.items()}
    graph = link_graph(Workflow({nid: workflow.nodes[nid] for nid in added}))
    cyclic = _report_cycles(graph, set(added), report)
    report.order = plan(graph, added, cyclic)
    for nid in report.order:
        spec = specs[nid]
        if spec is None:
            report.errors[nid] = [ErrorInfo("invalid_prompt", "Unknown node type",
                                             f"{workflow.nodes[nid].class_type!r} is not registered")]
        elif nid not in report.errors:
            _check_node(workflow.nodes[nid].inputs, nid, spec, specs, workflow, env, report)
        if nid not in report.nodes and nid not in report.errors:
            report.errors[nid] = [ErrorInfo("exception_during_inner_validation", "Linked node is not valid",
                                             f"node '#{nid}' links to a node that did not validate")]
    return report
