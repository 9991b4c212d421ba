"""ComfyUI V1 node classes, adapted once at the registry boundary into our declarations (reference §4).

A V1 pack exports `NODE_CLASS_MAPPINGS = {class_type: class}` whose classes declare `INPUT_TYPES`,
`RETURN_TYPES`, `FUNCTION`, …; `adapt_v1(name, cls, …)` turns one class into a `NodeSpec` whose node class (a
generated `ComfyV1Node` subclass) calls the pack's code. After that the executor, validation, caching and the
editor treat it like any other node. The rules:

- Inputs: `required` then `optional` of `INPUT_TYPES()`, in order. A list in the type slot (or `"COMBO"` with
  `options`) is a combo whose options are read again from `INPUT_TYPES()` at each validation (packs list files
  there); INT/FLOAT `min`/`max` are enforced; other options are kept for the editor and the UI-format converter.
  A type object whose class overrides `!=` (ComfyUI's "any" idiom) matches every type, as in ComfyUI.
- Hidden inputs `PROMPT`, `EXTRA_PNGINFO`, `UNIQUE_ID` are passed under the pack's own parameter names;
  `DYNPROMPT` and the comfy.org tokens receive None (we have no such objects). `UNIQUE_ID` or `NOT_IDEMPOTENT`
  puts the node id into the cache key.
- `INPUT_IS_LIST`: one call with whole lists (hidden values too, as one-item lists); `OUTPUT_IS_LIST` per output.
- `IS_CHANGED` → the node's fingerprint, called with the constant inputs (required linked inputs as None); NaN
  or an exception means "always re-run" and becomes a fresh value, so the cache never matches.
- `VALIDATE_INPUTS` → `validate_inputs`: its parameter names select the inputs it receives (`**kwargs`: all),
  linked ones as None; those inputs skip the built-in min/max/option checks (still coerced); a parameter named
  `input_types` receives `{input: linked type}` and replaces the built-in link type check. `True` is valid;
  `False` or a string fails once per input it received.
- `FUNCTION` runs on one instance per (node id, class type), created without arguments and kept in the
  environment across prompts, as ComfyUI does. A coroutine result is awaited. While it runs (async too), its
  `Context` is the current node's (`nodes.comfy_compat.running`): that is how `comfy.utils.ProgressBar` and
  `comfy.model_management`'s interrupt checks reach it.
- Results: a tuple/list (one value per output) or `{"ui": {...}, "result": (...)}`; `ui` reaches the editor
  through `Context.show`. A result with `"expand"` becomes an `Expansion` the executor runs (its `result` may
  link into the new nodes). Execution blockers are not supported.
- `{"lazy": True}` inputs are evaluated only when the instance's `check_lazy_status(**inputs)` names them (the
  executor asks until it names none left); `{"rawLink": True}` inputs receive the link `[node id, slot]`.
- `/object_info` renders the class as ComfyUI does: `INPUT_TYPES()` verbatim (JSON round-tripped), its key order
  as `input_order`, `RETURN_TYPES`/`RETURN_NAMES`/`OUTPUT_IS_LIST`, display name from
  `NODE_DISPLAY_NAME_MAPPINGS`.
"""
from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import math
import threading
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import ConfigDict
from pydantic_core import PydanticUndefined

from nodes.api import (HIDDEN_KINDS, SEMVER, Context, Environment, Expansion, InputSpec, LinkedInput, Node,
                       NodeDeclarationError, NodeSpec, OutputSpec, OwnValidation, ServiceKey)
from nodes.comfy_compat import running
from nodes.types import ANY, Choices, TypeInfo

log = logging.getLogger(__name__)
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
INSTANCES_KEY: ServiceKey[dict[tuple[str, str], Any]] = ServiceKey("comfy_v1.instances")


@dataclass(frozen=True)
class V1Plan:
    """What running and checking one adapted class needs, computed once."""

    name: str
    cls: type
    function: str
    hidden: dict[str, str]          # parameter name → hidden kind
    n_outputs: int
    input_is_list: bool
    required: tuple[str, ...]
    declared: tuple[str, ...]
    is_changed: tuple[frozenset[str] | None, bool] | None   # (parameter names or None for **kwargs, present)
    validate: tuple[frozenset[str] | None, bool] | None     # (parameter names or None, takes input_types)
    typed_combos: dict[str, tuple[Any, ...]]                # combos whose options are not all strings


class ComfyV1Node(Node):
    """Base of the generated node classes: inputs arrive as extra fields (a V1 class has no annotations)."""

    model_config = ConfigDict(extra="allow")
    __v1_plan__: ClassVar[V1Plan]

    def run(self, ctx: Context) -> Any:
        return call_v1(type(self).__v1_plan__, dict(self.model_extra or {}), ctx)

    def check_lazy_status(self, ctx: Context) -> list[str]:
        return lazy_status_v1(type(self).__v1_plan__, dict(self.model_extra or {}), ctx)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return is_changed(cls.__v1_plan__, inputs)

    @classmethod
    def validate_inputs(cls, inputs: dict[str, Any], env: Environment) -> str | dict[str, str] | None:
        return validate_v1(cls.__v1_plan__, inputs)


def adapt_v1(name: str, cls: type, *, display_name: str | None = None, python_module: str = "custom_nodes",
             version: str | None = None) -> NodeSpec:
    """The `NodeSpec` of one V1 class registered as `name`; raises `NodeDeclarationError` when it is broken."""
    where = f"V1 node {name!r} ({getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)!s})"
    if not isinstance(name, str) or not name or not isinstance(cls, type):
        raise NodeDeclarationError(f"{where}: NODE_CLASS_MAPPINGS needs a non-empty name and a class")
    types = _input_types(where, cls)
    inputs, hidden = _inputs(where, cls, types)
    outputs = _outputs(where, cls)
    function = getattr(cls, "FUNCTION", None)
    if not isinstance(function, str) or not callable(getattr(cls, function, None)):
        raise NodeDeclarationError(f"{where}: FUNCTION must name a method of the class, got {function!r}")
    declared = tuple(i.name for i in inputs)
    validate = _hook_params(cls, "VALIDATE_INPUTS")
    plan = V1Plan(name=name, cls=cls, function=function, hidden=hidden, n_outputs=len(outputs),
                  input_is_list=bool(getattr(cls, "INPUT_IS_LIST", False)),
                  required=tuple(i.name for i in inputs if i.required), declared=declared,
                  is_changed=_hook_params(cls, "IS_CHANGED"), validate=validate, typed_combos=_typed_combos(types))
    own = OwnValidation()
    if validate is not None:
        params, wants_types = validate
        own = OwnValidation(inputs=frozenset(declared if params is None else params & set(declared)),
                            sees_links=True, link_types=wants_types)
    node_cls = type(f"V1_{cls.__name__}", (ComfyV1Node,), {
        "__doc__": getattr(cls, "DESCRIPTION", None) or cls.__doc__ or f"ComfyUI node {name}",
        "__module__": cls.__module__, "__v1_plan__": plan})
    display = display_name or name
    spec = NodeSpec(
        name=name, cls=node_cls, version=version if version and SEMVER.match(version) else "0.0.0",
        category=str(getattr(cls, "CATEGORY", "sd")), description=str(getattr(cls, "DESCRIPTION", "") or ""),
        display_name=display, inputs=inputs, outputs=outputs, returns_named=True,
        output_node=bool(getattr(cls, "OUTPUT_NODE", False)), input_is_list=plan.input_is_list,
        not_idempotent=bool(getattr(cls, "NOT_IDEMPOTENT", False)) or "UNIQUE_ID" in hidden.values(),
        hidden=tuple(k for k in HIDDEN_KINDS if k in hidden.values()), python_module=python_module,
        deprecated=bool(getattr(cls, "DEPRECATED", False)), experimental=bool(getattr(cls, "EXPERIMENTAL", False)),
        own_validation=own,
        object_info=lambda env: render_v1(cls, name=name, display_name=display, python_module=python_module))
    node_cls.__node_spec__ = spec
    return spec


def _input_types(where: str, cls: type) -> dict[str, Any]:
    method = getattr(cls, "INPUT_TYPES", None)
    if not callable(method):
        raise NodeDeclarationError(f"{where}: INPUT_TYPES must be a classmethod returning a dict")
    try:
        types = method()
    except Exception as exc:
        raise NodeDeclarationError(f"{where}: INPUT_TYPES() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(types, dict) or not all(isinstance(types.get(k, {}), dict)
                                              for k in ("required", "optional", "hidden")):
        raise NodeDeclarationError(f"{where}: INPUT_TYPES() must return {{'required': {{...}}, ...}}")
    return types


def _inputs(where: str, cls: type, types: dict[str, Any]) -> tuple[tuple[InputSpec, ...], dict[str, str]]:
    specs = []
    for section in ("required", "optional"):
        for name, decl in types.get(section, {}).items():
            specs.append(_input_spec(where, cls, section, name, decl))
    hidden = {}
    for name, kind in types.get("hidden", {}).items():
        hidden[name] = kind if isinstance(kind, str) else str(kind[0] if isinstance(kind, (list, tuple)) else kind)
    return tuple(specs), hidden


def _input_spec(where: str, cls: type, section: str, name: str, decl: Any) -> InputSpec:
    if isinstance(decl, str):  # tolerated shorthand: "IMAGE" for ("IMAGE",)
        decl = (decl,)
    if not isinstance(decl, (list, tuple)) or not decl or len(decl) > 2:
        raise NodeDeclarationError(f"{where}: input {name!r} must be declared (TYPE,) or (TYPE, options)")
    kind, options = decl[0], (decl[1] if len(decl) > 1 else {}) or {}
    if not isinstance(options, dict):
        raise NodeDeclarationError(f"{where}: input {name!r}: options must be a dict")
    tinfo = _type_info(where, cls, section, name, kind, options)
    rest = {k: v for k, v in options.items() if k not in ("default", "min", "max", "tooltip")}
    numeric = tinfo.name in ("INT", "FLOAT")
    return InputSpec(name=name, type=tinfo, required=section == "required",
                     default=options.get("default", PydanticUndefined),
                     min=options.get("min") if numeric else None, max=options.get("max") if numeric else None,
                     tooltip=options.get("tooltip"), options=rest)


def _type_info(where: str, cls: type, section: str, name: str, kind: Any, options: dict[str, Any]) -> TypeInfo:
    if isinstance(kind, (list, tuple)) or kind == "COMBO":
        listed = kind if isinstance(kind, (list, tuple)) else options.get("options", [])
        if not isinstance(listed, (list, tuple)):
            raise NodeDeclarationError(f"{where}: combo input {name!r} needs a list of options")
        return TypeInfo("COMBO", dynamic=Choices(lambda env: _current_options(cls, section, name)))
    if not isinstance(kind, str):
        raise NodeDeclarationError(f"{where}: input {name!r}: type must be a string or a list, got {kind!r}")
    if type(kind).__ne__ is not str.__ne__:  # a str subclass that never differs: ComfyUI's "any" type idiom
        return TypeInfo(ANY)
    return TypeInfo(str(kind))


def _current_options(cls: type, section: str, name: str) -> list[str]:
    """A V1 combo's options now: INPUT_TYPES is called again, as ComfyUI does when validating."""
    kind, *rest = cls.INPUT_TYPES()[section][name]
    listed = kind if isinstance(kind, (list, tuple)) else (rest[0] if rest else {}).get("options", [])
    return [str(v) for v in listed]


def _typed_combos(types: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """Combos listing numbers (e.g. `([1, 2, 4],)`): validation compares options as strings, the pack gets the
    option object back."""
    found = {}
    for section in ("required", "optional"):
        for name, decl in types.get(section, {}).items():
            kind = decl[0] if isinstance(decl, (list, tuple)) and decl else None
            if isinstance(kind, (list, tuple)) and not all(isinstance(v, str) for v in kind):
                found[name] = tuple(kind)
    return found


def _outputs(where: str, cls: type) -> tuple[OutputSpec, ...]:
    types = getattr(cls, "RETURN_TYPES", None)
    if not isinstance(types, (tuple, list)):
        raise NodeDeclarationError(f"{where}: RETURN_TYPES must be a tuple (even for one output), got {types!r}")
    names = getattr(cls, "RETURN_NAMES", None) or None
    is_list = getattr(cls, "OUTPUT_IS_LIST", None) or None
    for label, seq in (("RETURN_NAMES", names), ("OUTPUT_IS_LIST", is_list)):
        if seq is not None and (not isinstance(seq, (tuple, list)) or len(seq) != len(types)):
            raise NodeDeclarationError(f"{where}: {label} must have one entry per RETURN_TYPES entry")
    type_names = ["COMBO" if isinstance(t, (list, tuple)) else str(t) for t in types]
    return tuple(OutputSpec(name=str(names[i]) if names else type_names[i], type=type_names[i],
                            is_list=bool(is_list[i]) if is_list else False) for i in range(len(types)))


def _hook_params(cls: type, attr: str) -> tuple[frozenset[str] | None, bool] | None:
    """(parameter names, or None when it takes **kwargs; whether it takes `input_types`) of a hook, or None."""
    hook = getattr(cls, attr, None)
    if hook is None:
        return None
    try:
        params = inspect.signature(hook).parameters
    except (TypeError, ValueError):
        return None, False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None, "input_types" in params
    return frozenset(params), "input_types" in params


def _select(params: frozenset[str] | None, values: dict[str, Any]) -> dict[str, Any]:
    return dict(values) if params is None else {k: v for k, v in values.items() if k in params}


def is_changed(plan: V1Plan, constants: dict[str, Any]) -> Any:
    """The IS_CHANGED value joining the cache key; a fresh value (never cached) for NaN or an error."""
    if plan.is_changed is None:
        return None
    params, _ = plan.is_changed
    values = {**{n: None for n in plan.required}, **constants, **{n: None for n in plan.hidden}}
    try:
        value = plan.cls.IS_CHANGED(**_select(params, values))
    except Exception as exc:  # ComfyUI treats a failing IS_CHANGED as "changed"
        log.warning("IS_CHANGED of %s raised %s: %s; the node will re-run", plan.name, type(exc).__name__, exc)
        return ["always", uuid.uuid4().hex]
    if isinstance(value, float) and math.isnan(value):
        return ["always", uuid.uuid4().hex]
    return ["IS_CHANGED", value]


def validate_v1(plan: V1Plan, inputs: dict[str, Any]) -> str | dict[str, str] | None:
    if plan.validate is None:
        return None
    params, wants_types = plan.validate
    values = {k: None if isinstance(v, LinkedInput) else v for k, v in inputs.items()}
    values.update({n: None for n in plan.hidden if params is not None and n in params})
    kwargs = _select(params, values)
    if wants_types:
        kwargs["input_types"] = {k: v.type for k, v in inputs.items() if isinstance(v, LinkedInput)}
    result = plan.cls.VALIDATE_INPUTS(**kwargs)
    if result is True:
        return None
    message = "" if result is False else str(result)
    received = [k for k in kwargs if k in plan.declared]
    return {k: message for k in received} if received else (message or "VALIDATE_INPUTS returned False")


def _arguments(plan: V1Plan, kwargs: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """The keyword arguments the pack's methods receive: combo option objects, hidden values."""
    for name, options in plan.typed_combos.items():
        if name in kwargs:
            kwargs[name] = _option_object(options, kwargs[name], plan.input_is_list)
    for param, kind in plan.hidden.items():
        value = hidden_value(kind, ctx)
        kwargs[param] = [value] if plan.input_is_list else value
    return kwargs


def lazy_status_v1(plan: V1Plan, kwargs: dict[str, Any], ctx: Context) -> list[str]:
    """The instance's `check_lazy_status(**inputs)` (no method: no lazy input is needed, as in ComfyUI)."""
    instance = _instance(plan, ctx)
    method = getattr(instance, "check_lazy_status", None)
    if method is None:
        return []
    with running(ctx):
        needed = method(**_arguments(plan, kwargs, ctx))
        if inspect.isawaitable(needed):
            needed = await_result(needed)
    return [str(n) for n in needed or []]


def call_v1(plan: V1Plan, kwargs: dict[str, Any], ctx: Context) -> tuple[Any, ...] | Expansion:
    """One call of the pack's FUNCTION (list mapping is the executor's); returns one value per output, or the
    `Expansion` a result with `"expand"` asks for."""
    with running(ctx):  # comfy.utils.ProgressBar and the interrupt checks report through ctx
        result = getattr(_instance(plan, ctx), plan.function)(**_arguments(plan, kwargs, ctx))
        if inspect.isawaitable(result):
            result = await_result(result)
    values: Any = result
    if isinstance(result, dict):
        ui = result.get("ui")
        if ui:
            ctx.show(**{str(k): list(v) if isinstance(v, (list, tuple)) else [v] for k, v in ui.items()})
        values = result.get("result", ())
        if result.get("expand") is not None:
            return Expansion(dict(result["expand"]), tuple(values or ()))
    if values is None:
        values = ()
    if not isinstance(values, (tuple, list)):
        raise TypeError(f"{plan.name}.{plan.function} returned {type(values).__name__}; expected a tuple of "
                        f"{plan.n_outputs} value(s)")
    if not values:  # an output node may return only its UI
        return (None,) * plan.n_outputs
    if len(values) != plan.n_outputs:
        raise TypeError(f"{plan.name}.{plan.function} returned {len(values)} value(s) for "
                        f"{plan.n_outputs} RETURN_TYPES")
    return tuple(values)


def _option_object(options: tuple[Any, ...], value: Any, as_list: bool) -> Any:
    if as_list:
        return [_option_object(options, v, False) for v in value]
    return next((o for o in options if str(o) == str(value)), value)


def hidden_value(kind: str, ctx: Context) -> Any:
    if kind == "PROMPT":
        return ctx.prompt
    if kind == "EXTRA_PNGINFO":
        return ctx.extra_data.get("extra_pnginfo")
    if kind == "UNIQUE_ID":
        return ctx.node_id
    return None


def _instance(plan: V1Plan, ctx: Context) -> Any:
    """One instance per (node id, class type), kept across prompts (packs keep state on it)."""
    instances = ctx.env.services.get_or_create(INSTANCES_KEY, dict)
    key = (ctx.node_id, plan.name)
    if key not in instances:
        instances[key] = plan.cls()
    return instances[key]


def await_result(awaitable: Any) -> Any:
    """Run a pack's coroutine (an async FUNCTION, a V3 entry point) to completion (in a fresh loop; on a helper thread if this one has a loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_as_coroutine(awaitable))
    box: dict[str, Any] = {}
    context = contextvars.copy_context()  # the running node travels to the helper thread

    def target() -> None:
        try:
            box["value"] = context.run(asyncio.run, _as_coroutine(awaitable))
        except BaseException as exc:  # re-raised on the calling thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="v1-async-node")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _as_coroutine(awaitable: Any) -> Any:
    return await awaitable


def render_v1(cls: type, *, name: str, display_name: str, python_module: str) -> dict[str, Any]:
    """The `/object_info` entry ComfyUI shows for a V1 class."""
    inputs = json.loads(json.dumps(cls.INPUT_TYPES(), default=str))
    types = list(getattr(cls, "RETURN_TYPES", ()))
    is_list = getattr(cls, "OUTPUT_IS_LIST", None)
    entry: dict[str, Any] = {
        "input": inputs,
        "input_order": {k: list(v) for k, v in inputs.items() if isinstance(v, dict)},
        "output": json.loads(json.dumps(types, default=str)),
        "output_is_list": [bool(x) for x in is_list] if is_list else [False] * len(types),
        "output_name": list(getattr(cls, "RETURN_NAMES", None) or types),
        "name": name,
        "display_name": display_name,
        "description": str(getattr(cls, "DESCRIPTION", "") or ""),
        "python_module": python_module,
        "category": str(getattr(cls, "CATEGORY", "sd")),
        "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
    }
    if getattr(cls, "OUTPUT_TOOLTIPS", None):
        entry["output_tooltips"] = list(cls.OUTPUT_TOOLTIPS)
    for attr, key in (("DEPRECATED", "deprecated"), ("EXPERIMENTAL", "experimental"), ("API_NODE", "api_node")):
        if getattr(cls, attr, False):
            entry[key] = True
    return entry
