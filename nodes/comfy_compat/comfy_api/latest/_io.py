"""`comfy_api.latest.io`: V3 schemas (`Schema`, typed `Input`/`Output` declarations, `Hidden`), the `ComfyNode`
base and `NodeOutput`; and `v1_class(node)`, the V1 class a V3 node is registered as.

Rules of the V1 class (what ComfyUI synthesises, §4.10):
- `INPUT_TYPES()` calls `define_schema()` again (combo lists stay current): inputs in order, in "required" or
  "optional", each `(TYPE, options)` with the options that are set (ComfyUI's names: `forceInput`,
  `dynamicPrompts`, `rawLink`, `display` …); combos are `("COMBO", {"options": [...]})`. Hidden inputs are listed
  as `{name: (KIND,)}`; an output node also gets PROMPT and EXTRA_PNGINFO.
- Outputs: `RETURN_TYPES`, `RETURN_NAMES` (display name, else id, else type), `OUTPUT_IS_LIST`, `OUTPUT_TOOLTIPS`.
- `execute` runs the node's classmethod on a throw-away subclass whose `hidden` holds this call's hidden values
  (the class itself is never mutated); a coroutine is awaited. `NodeOutput(*values, ui=…, expand=…)` becomes
  `{"result": values, "ui": …, "expand": …}`. `block_execution` is not supported (an error says so).
- `fingerprint_inputs`, `validate_inputs` and `check_lazy_status` become `IS_CHANGED`, `VALIDATE_INPUTS` and
  `check_lazy_status` when the node overrides them.
"""
from __future__ import annotations

import enum
import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ._ui import UIOutput

# Python keyword of a V3 input → ComfyUI's option key in INPUT_TYPES.
OPTION_KEYS = {"force_input": "forceInput", "dynamic_prompts": "dynamicPrompts", "raw_link": "rawLink",
               "display_mode": "display", "upload": "image_upload"}


class Input:
    """One input declaration: `io.Int.Input("steps", default=20, min=1, max=100, lazy=True)`."""

    io_type: ClassVar[str] = "*"

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, extra_dict: dict[str, Any] | None = None, **options: Any) -> None:
        if not isinstance(id, str) or not id:
            raise TypeError(f"a {self.io_type} input needs a non-empty id, got {id!r}")
        self.id, self.optional = id, optional
        listed = options.get("options")
        if isinstance(listed, type) and issubclass(listed, enum.Enum):
            options["options"] = [member.value for member in listed]
        if isinstance(options.get("default"), enum.Enum):
            options["default"] = options["default"].value
        self.options = {"display_name": display_name, "tooltip": tooltip, "lazy": lazy,
                        **{OPTION_KEYS.get(k, k): v for k, v in options.items()}, **(extra_dict or {})}

    def as_v1(self) -> tuple[Any, ...]:
        options = {k: v for k, v in self.options.items() if v is not None}
        return (self.io_type, options) if options else (self.io_type,)


class Output:
    """One output declaration: `io.Image.Output(display_name="mask image", is_output_list=False)`."""

    io_type: ClassVar[str] = "*"

    def __init__(self, id: str | None = None, display_name: str | None = None, tooltip: str | None = None,
                 is_output_list: bool = False) -> None:
        self.id, self.display_name, self.tooltip, self.is_output_list = id, display_name, tooltip, is_output_list

    @property
    def name(self) -> str:
        return self.display_name or self.id or self.io_type


def Custom(io_type: str) -> type:  # noqa: N802 - ComfyUI's name
    """A socket type of the pack's own (`io.Custom("MY_TYPE").Input("x")`)."""
    name = io_type.title().replace("_", "")
    return type(name, (), {"io_type": io_type, "Input": type("Input", (Input,), {"io_type": io_type}),
                           "Output": type("Output", (Output,), {"io_type": io_type})})


Int, Float, String, Boolean, Combo = (Custom(t) for t in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"))
Image, Mask, Latent, Conditioning = (Custom(t) for t in ("IMAGE", "MASK", "LATENT", "CONDITIONING"))
Model, Clip, Vae, ControlNet = (Custom(t) for t in ("MODEL", "CLIP", "VAE", "CONTROL_NET"))
Sampler, Sigmas, Noise, Guider = (Custom(t) for t in ("SAMPLER", "SIGMAS", "NOISE", "GUIDER"))
UpscaleModel = Custom("UPSCALE_MODEL")


class Hidden(str, enum.Enum):
    """Hidden inputs a schema may ask for; their values are read from `cls.hidden` in `execute`."""

    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


@dataclass(frozen=True)
class HiddenHolder:
    unique_id: str | None = None
    prompt: dict[str, Any] | None = None
    extra_pnginfo: dict[str, Any] | None = None
    dynprompt: Any = None
    auth_token_comfy_org: str | None = None
    api_key_comfy_org: str | None = None


@dataclass
class Schema:
    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list[Input] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    hidden: list[Hidden] = field(default_factory=list)
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    search_aliases: list[str] = field(default_factory=list)

    def hidden_kinds(self) -> list[Hidden]:
        kinds = list(self.hidden)
        if self.is_output_node:
            kinds += [h for h in (Hidden.prompt, Hidden.extra_pnginfo) if h not in kinds]
        return kinds


class NodeOutput:
    """What `execute` returns: output values in order, and optionally UI results and an expansion graph."""

    def __init__(self, *args: Any, ui: Any = None, expand: dict[str, Any] | None = None,
                 block_execution: str | None = None) -> None:
        self.args, self.ui, self.expand, self.block_execution = args, ui, expand, block_execution

    @property
    def result(self) -> tuple[Any, ...] | None:
        return self.args or None


class ComfyNode:
    """Base of V3 nodes: stateless classmethods; `hidden` holds the hidden values during `execute`."""

    hidden: ClassVar[HiddenHolder] = HiddenHolder()

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError(f"{cls.__name__} must define define_schema()")

    @classmethod
    def execute(cls, **kwargs: Any) -> NodeOutput:
        raise NotImplementedError(f"{cls.__name__} must define execute()")

    @classmethod
    def validate_inputs(cls, **kwargs: Any) -> bool | str:
        return True

    @classmethod
    def fingerprint_inputs(cls, **kwargs: Any) -> Any:
        return None

    @classmethod
    def check_lazy_status(cls, **kwargs: Any) -> list[str]:
        return []


def v1_class(node: type[ComfyNode]) -> tuple[Schema, type]:
    """The node's schema and the V1 class it is registered as (see the module's rules)."""
    if not (isinstance(node, type) and issubclass(node, ComfyNode)):
        raise TypeError(f"{node!r} is not an io.ComfyNode subclass")
    schema = node.define_schema()
    if not isinstance(schema, Schema):
        raise TypeError(f"{node.__name__}.define_schema() must return an io.Schema")
    hidden_names = {h.name: (h.value,) for h in schema.hidden_kinds()}

    def input_types(cls: type) -> dict[str, Any]:
        current = node.define_schema()
        types: dict[str, Any] = {"required": {i.id: i.as_v1() for i in current.inputs if not i.optional}}
        optional = {i.id: i.as_v1() for i in current.inputs if i.optional}
        if optional:
            types["optional"] = optional
        if hidden_names:
            types["hidden"] = dict(hidden_names)
        return types

    def execute(self: Any, **kwargs: Any) -> Any:
        holder = HiddenHolder(**{name: kwargs.pop(name) for name in hidden_names if name in kwargs})
        bound = type(node.__name__, (node,), {"hidden": holder, "__module__": node.__module__})
        result = bound.execute(**kwargs)
        if inspect.isawaitable(result):
            return _awaited_result(result)
        return _v1_result(node, result)

    async def _awaited_result(pending: Any) -> Any:
        return _v1_result(node, await pending)

    attrs: dict[str, Any] = {
        "INPUT_TYPES": classmethod(input_types), "RETURN_TYPES": tuple(o.io_type for o in schema.outputs),
        "RETURN_NAMES": tuple(o.name for o in schema.outputs),
        "OUTPUT_IS_LIST": tuple(o.is_output_list for o in schema.outputs), "FUNCTION": "execute",
        "CATEGORY": schema.category, "OUTPUT_NODE": schema.is_output_node, "INPUT_IS_LIST": schema.is_input_list,
        "NOT_IDEMPOTENT": schema.not_idempotent, "DEPRECATED": schema.is_deprecated,
        "EXPERIMENTAL": schema.is_experimental, "API_NODE": schema.is_api_node,
        "DESCRIPTION": schema.description or node.__doc__ or "", "execute": execute, "__module__": node.__module__}
    if any(o.tooltip for o in schema.outputs):
        attrs["OUTPUT_TOOLTIPS"] = tuple(o.tooltip or "" for o in schema.outputs)
    for v3_name, v1_name in (("fingerprint_inputs", "IS_CHANGED"), ("validate_inputs", "VALIDATE_INPUTS")):
        if _overrides(node, v3_name):
            attrs[v1_name] = getattr(node, v3_name)
    if _overrides(node, "check_lazy_status"):
        attrs["check_lazy_status"] = lambda self, **kwargs: node.check_lazy_status(
            **{k: v for k, v in kwargs.items() if k not in hidden_names})
    return schema, type(node.__name__, (), attrs)


def _overrides(node: type[ComfyNode], name: str) -> bool:
    return getattr(node, name).__func__ is not getattr(ComfyNode, name).__func__


def _v1_result(node: type[ComfyNode], out: Any) -> dict[str, Any]:
    if not isinstance(out, NodeOutput):
        raise TypeError(f"{node.__name__}.execute must return io.NodeOutput, not {type(out).__name__}")
    if out.block_execution is not None:
        raise NotImplementedError(f"{node.__name__}: execution blockers are not supported by latentloom")
    result: dict[str, Any] = {"result": out.args}
    if out.ui is not None:
        if not isinstance(out.ui, (dict, UIOutput)):
            raise TypeError(f"{node.__name__}: NodeOutput(ui=…) takes a dict or a comfy_api.latest.ui result")
        result["ui"] = out.ui.as_dict() if isinstance(out.ui, UIOutput) else out.ui
    if out.expand is not None:
        result["expand"] = out.expand
    return result


__all__ = [
    "Input", "Output", "Custom", "Int", "Float", "String", "Boolean", "Combo", "Image", "Mask", "Latent",
    "Conditioning", "Model", "Clip", "Vae", "ControlNet", "Sampler", "Sigmas", "Noise", "Guider", "UpscaleModel",
    "Hidden", "HiddenHolder", "Schema", "NodeOutput", "ComfyNode", "v1_class"]
