"""The registry: node types by name, and how the outside world sees them.

A registry is built from modules (`add_module`) or single specs (`add`); names and aliases are unique within
it. It renders each node as its `/object_info` entry in ComfyUI's exact shape (V1 style: legacy combos are an
options list in the type slot, optional keys only when set) and as a JSON schema of its inputs.
"""
from __future__ import annotations

import logging
from types import ModuleType
from typing import Any, Iterator

from nodes.api import Environment, InputSpec, NodeDeclarationError, NodeSpec

log = logging.getLogger(__name__)
HIDDEN_NAMES = {"PROMPT": "prompt", "EXTRA_PNGINFO": "extra_pnginfo", "UNIQUE_ID": "unique_id"}


class Registry:
    """The node types by name (canonical names and aliases): what validation, `/object_info` and the CLI see."""

    def __init__(self) -> None:
        self._specs: dict[str, NodeSpec] = {}
        self._names: dict[str, NodeSpec] = {}  # canonical names and aliases

    def add(self, spec: NodeSpec) -> None:
        """Register a node type; a name or alias that is already taken raises `NodeDeclarationError`."""
        for name in (spec.name, *spec.aliases):
            if name in self._names:
                other = self._names[name]
                raise NodeDeclarationError(
                    f"node name {name!r} of {spec.cls.__module__}.{spec.cls.__qualname__} is already taken by "
                    f"{other.cls.__module__}.{other.cls.__qualname__}")
        self._specs[spec.name] = spec
        for name in (spec.name, *spec.aliases):
            self._names[name] = spec

    def add_module(self, module: ModuleType) -> list[NodeSpec]:
        """Register every node class defined in `module` (in definition order)."""
        found = [obj.__node_spec__ for obj in vars(module).values()
                 if isinstance(obj, type) and "__node_spec__" in vars(obj) and obj.__module__ == module.__name__]
        for spec in found:
            self.add(spec)
        return found

    def get(self, name: str) -> NodeSpec | None:
        """The node type of a name or alias, or None."""
        return self._names.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[NodeSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def object_info(self, env: Environment) -> dict[str, Any]:
        """`GET /object_info`: every node under its name and each alias. A node that fails to render is skipped."""
        info: dict[str, Any] = {}
        for spec in self._specs.values():
            try:
                entry = render_object_info(spec, env)
            except Exception:  # a dynamic combo that fails must not take the whole listing down
                log.exception("object_info failed for node %s", spec.name)
                continue
            info[spec.name] = entry
            for alias in spec.aliases:
                info[alias] = {**entry, "name": alias, "alias_of": spec.name}
        return info


def input_options(inp: InputSpec, env: Environment) -> list[str] | None:
    """The current options of a combo input (dynamic lists are computed now), or None for other inputs."""
    if inp.type.dynamic is not None:
        return list(inp.type.dynamic.options(env))
    return list(inp.type.options) if inp.type.options is not None else None


def render_input(inp: InputSpec, env: Environment) -> list[Any]:
    opts: dict[str, Any] = {}
    if inp.has_default and inp.default is not None:
        opts["default"] = inp.default
    if inp.min is not None:
        opts["min"] = inp.min
    if inp.max is not None:
        opts["max"] = inp.max
    opts.update(inp.options)
    if inp.tooltip:
        opts["tooltip"] = inp.tooltip
    choices = input_options(inp, env)
    type_slot: Any = choices if choices is not None else inp.type.name
    return [type_slot, opts] if opts else [type_slot]


def render_object_info(spec: NodeSpec, env: Environment) -> dict[str, Any]:
    if spec.object_info is not None:
        return spec.object_info(env)
    required = {i.name: render_input(i, env) for i in spec.inputs if i.required}
    optional = {i.name: render_input(i, env) for i in spec.inputs if not i.required}
    inputs: dict[str, Any] = {"required": required}
    order: dict[str, list[str]] = {"required": list(required)}
    if optional:
        inputs["optional"] = optional
        order["optional"] = list(optional)
    if spec.hidden:
        inputs["hidden"] = {HIDDEN_NAMES[h]: h for h in spec.hidden}
        order["hidden"] = [HIDDEN_NAMES[h] for h in spec.hidden]
    entry: dict[str, Any] = {
        "input": inputs,
        "input_order": order,
        "output": [o.type for o in spec.outputs],
        "output_is_list": [o.is_list for o in spec.outputs],
        "output_name": [o.name for o in spec.outputs],
        "name": spec.name,
        "display_name": spec.display_name,
        "description": spec.description,
        "python_module": spec.python_module,
        "category": spec.category,
        "output_node": spec.output_node,
    }
    if spec.deprecated:
        entry["deprecated"] = True
    if spec.experimental:
        entry["experimental"] = True
    return entry


def json_schema(spec: NodeSpec) -> dict[str, Any]:
    """JSON schema of a node's `inputs` object (constants; socket inputs are links)."""
    schema = spec.cls.model_json_schema()
    schema["title"] = spec.name
    schema["description"] = spec.description
    return schema
