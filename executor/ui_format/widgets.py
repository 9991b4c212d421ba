"""A UI-format node's `widgets_values` read into input values, as ComfyUI's frontend reads them on load.

`widgets_values` is positional over the node's widgets: its widget inputs in declaration order (required, then
optional; `forceInput` ones have none). A widget converted to an input keeps its slot, linked or not. A widget
with a seed control (declared `control_after_generate`, or, as the frontend assumes, an INT named `seed` or
`noise_seed`) is followed by the control's value (`fixed`/`increment`/`decrement`/`randomize`; old files store a
boolean) when the file has one; an `image_upload` widget by its upload button's value. A dict is read by name.
A missing or short list leaves the remaining widgets at the node's defaults, as the frontend creates them.
"""
from __future__ import annotations

from typing import Any, Mapping

from nodes.api import Environment, InputSpec, NodeSpec

CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
SEED_NAMES = ("seed", "noise_seed")
TYPE_DEFAULTS = {"STRING": "", "INT": 0, "FLOAT": 0.0, "BOOLEAN": False}


def widget_inputs(spec: NodeSpec) -> list[InputSpec]:
    """A node's widget inputs in the editor's order: required, then optional; `forceInput` ones have none."""
    ordered = [i for i in spec.inputs if i.required] + [i for i in spec.inputs if not i.required]
    return [i for i in ordered if i.type.is_widget and not i.options.get("forceInput")]


def has_seed_control(widget: InputSpec) -> bool:
    """Whether the executor resolves a control for this input (`executor.seeds` takes these and no others)."""
    return widget.type.name == "INT" and bool(widget.options.get("control_after_generate"))


def is_control_value(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, str) and value in CONTROL_VALUES)


def control_mode(value: Any) -> str:
    if isinstance(value, bool):
        return "randomize" if value else "fixed"
    return value if value in CONTROL_VALUES else "fixed"


def constant(value: Any) -> Any:
    """A 2-element list constant would read as a link: wrap it, as the API format does."""
    return {"__value__": value} if isinstance(value, list) and len(value) == 2 else value


def widget_values(nid: str, node: Mapping[str, Any], spec: NodeSpec, env: Environment | None, linked: set[str],
                  notes: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`(inputs, controls)`: each widget's value, and the control value of each input with a seed control.

    `linked`: inputs the file links; their defaults are given (a link may not resolve) but not noted.
    """
    label = f"node {nid} ({node['type']})"
    values = node.get("widgets_values")
    widgets = widget_inputs(spec)
    inputs: dict[str, Any] = {}
    controls: dict[str, Any] = {}
    if isinstance(values, Mapping):  # some frontends and packs save widgets by name
        names = {w.name for w in widgets}
        extra = sorted(str(k) for k in values if k not in names)
        if extra:
            notes.append(f"{label}: widget values {extra} match no input and were ignored")
        inputs = {k: constant(v) for k, v in values.items() if k in names}
    else:
        at = _read_list(label, list(values or []), widgets, inputs, controls, notes)
        if at < len(values or []):
            notes.append(f"{label}: {len(values) - at} widget value(s) {values[at:]!r} match no input and were "
                         "ignored")
    _fill_defaults(label, widgets, env, inputs, linked, notes)
    return inputs, controls


def _read_list(label: str, values: list[Any], widgets: list[InputSpec], inputs: dict[str, Any],
               controls: dict[str, Any], notes: list[str]) -> int:
    at = 0
    for index, widget in enumerate(widgets):
        if at >= len(values):
            break
        inputs[widget.name] = constant(values[at])
        at += 1
        if _has_control_slot(widget) and at < len(values) and is_control_value(values[at]):
            if has_seed_control(widget):
                controls[widget.name] = values[at]
            elif control_mode(values[at]) != "fixed":
                notes.append(f"{label}: control {values[at]!r} of {widget.name} ignored: the node declares no "
                             "seed control for it")
            at += 1
        remaining = len(widgets) - index - 1
        if widget.options.get("image_upload") and at < len(values) and len(values) - at > remaining:
            at += 1  # the upload button's value ("image")
    return at


def _has_control_slot(widget: InputSpec) -> bool:
    """The frontend's rule: the declared flag, else an INT named like a seed."""
    declared = widget.options.get("control_after_generate")
    if declared is not None:
        return bool(declared)
    return widget.type.name == "INT" and widget.name in SEED_NAMES


def _fill_defaults(label: str, widgets: list[InputSpec], env: Environment | None, inputs: dict[str, Any],
                   linked: set[str], notes: list[str]) -> None:
    filled = []
    for widget in widgets:
        if widget.name in inputs:
            continue
        value = default_value(widget, env)
        if value is not None:
            inputs[widget.name] = constant(value)
            if widget.name not in linked:
                filled.append(widget.name)
    if filled:
        notes.append(f"{label}: no widget value for {', '.join(filled)}; the default(s) used")


def default_value(widget: InputSpec, env: Environment | None) -> Any:
    """The value the frontend gives a new widget: its default, else a combo's first option, else the type's zero
    (required inputs only; an optional input without a default stays unset). None: no value to give."""
    if widget.has_default and widget.default is not None:
        return widget.default
    if not widget.required:
        return None
    if widget.type.options:
        return widget.type.options[0]
    if widget.type.dynamic is not None:
        options = _current_options(widget, env)
        return options[0] if options else None
    return TYPE_DEFAULTS.get(widget.type.name)


def _current_options(widget: InputSpec, env: Environment | None) -> list[Any]:
    if env is None:
        return []
    try:
        options = widget.type.dynamic.options(env)
    except Exception:  # a plugin's option list that fails here fails again, named, in validation
        return []
    return list(options) if isinstance(options, (list, tuple)) else []
