"""The node API: one small typed class per node.

    @node(category="sampling", version="1.0.0")
    class KSampler(Node):
        \"\"\"Denoise a latent step by step.\"\"\"       # the docstring is the node's description
        model: Model = Input()
        seed: int = Input(0, ge=0, le=2**64 - 1, control_after_generate=True)
        sampler_name: Literal["euler", "heun"] = Input("euler")
        def run(self, ctx: Context) -> Latent: ...

A node is a pydantic model whose fields are its inputs (constraints are pydantic's `ge`/`le`, extra widget
options ride in `json_schema_extra`). `run`'s return annotation gives the outputs: one socket type, a
`NamedTuple` of socket types (field order = output index), or `None` for an output node that only shows
something through `ctx.show(...)`. `@node` turns the class into a checked `NodeSpec` at import: a broken
declaration raises `NodeDeclarationError` there, never at a user's run.

Nodes reach the outside world only through `Context` (progress, interrupt, UI output, the prompt being run) and
`Environment` (the data folders and shared services); they never import the executor or the server.
"""
from __future__ import annotations

import ast
import inspect
import re
import textwrap
import threading
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import annotated_types
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from nodes.paths import DataPaths
from nodes.precision import Precision
from nodes.types import TypeInfo, is_optional_annotation, type_info

SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
T = typing.TypeVar("T")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .+-]*$")
HIDDEN_KINDS = ("PROMPT", "EXTRA_PNGINFO", "UNIQUE_ID")
# Pythonic keyword → ComfyUI option key, for the widget options `Input` accepts.
OPTION_KEYS = {
    "step": "step", "round": "round", "multiline": "multiline", "placeholder": "placeholder",
    "display": "display", "control_after_generate": "control_after_generate", "image_upload": "image_upload",
    "dynamic_prompts": "dynamicPrompts", "force_input": "forceInput", "label_on": "label_on",
    "label_off": "label_off", "lazy": "lazy", "advanced": "advanced",
}


class NodeDeclarationError(Exception):
    """A node class that does not declare itself consistently (raised at import)."""


class Interrupted(Exception):
    """Raised inside a node (through `Context.check_interrupt`) when the run was interrupted."""


def Input(default: Any = PydanticUndefined, *, ge: float | None = None, le: float | None = None,
          tooltip: str | None = None, optional: bool = False, **options: Any) -> Any:
    """Declare one input. No default ⇒ required. `optional=True` puts it in ComfyUI's "optional" section.

    Widget options (`step`, `round`, `multiline`, `control_after_generate`, `display`, `image_upload`,
    `dynamic_prompts`, …) are passed through to `/object_info` under ComfyUI's names.
    """
    unknown = set(options) - set(OPTION_KEYS)
    if unknown:
        raise NodeDeclarationError(f"unknown input option(s): {sorted(unknown)}")
    extra = {OPTION_KEYS[k]: v for k, v in options.items()}
    if optional:
        extra["optional"] = True
    return Field(default, ge=ge, le=le, description=tooltip, json_schema_extra=extra or None)


@dataclass(frozen=True)
class InputSpec:
    """One declared input, in declaration order."""

    name: str
    type: TypeInfo
    required: bool
    default: Any = PydanticUndefined
    min: float | None = None
    max: float | None = None
    tooltip: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def has_default(self) -> bool:
        return self.default is not PydanticUndefined


@dataclass(frozen=True)
class OutputSpec:
    name: str
    type: str
    is_list: bool = False


@dataclass(frozen=True)
class OwnValidation:
    """How much of the built-in input checking a node's `validate_inputs` takes over (ComfyUI's VALIDATE_INPUTS).

    `inputs`: these constants are still coerced to their type but skip the built-in min/max/option checks.
    `sees_links`: the hook also receives each linked input, as a `LinkedInput` (its value exists only at run time).
    `link_types`: the built-in check of linked output types is skipped; the hook checks them from `LinkedInput.type`.
    """

    inputs: frozenset[str] = frozenset()
    sees_links: bool = False
    link_types: bool = False


@dataclass(frozen=True)
class LinkedInput:
    """What `validate_inputs` receives for a linked input when its node asks for links (`OwnValidation`)."""

    type: str


@dataclass(frozen=True)
class NodeSpec:
    """Everything the registry and the executor need to know about a node type."""

    name: str
    cls: type[Node]
    version: str
    category: str
    description: str
    display_name: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    returns_named: bool
    output_node: bool = False
    input_is_list: bool = False
    not_idempotent: bool = False
    aliases: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()
    python_module: str = "nodes"
    deprecated: bool = False
    experimental: bool = False
    own_validation: OwnValidation = OwnValidation()
    # A node adapted from another declaration style renders its own `/object_info` entry (a V1 class: its
    # INPUT_TYPES verbatim); None renders it from `inputs`/`outputs`.
    object_info: Callable[[Environment], dict[str, Any]] | None = None

    @property
    def input_map(self) -> dict[str, InputSpec]:
        return {i.name: i for i in self.inputs}

    @property
    def lazy_inputs(self) -> frozenset[str]:
        return frozenset(i.name for i in self.inputs if i.options.get("lazy"))

    @property
    def raw_link_inputs(self) -> frozenset[str]:
        """Inputs that receive the link `[node id, slot]` itself, not its value (`rawLink`, for expansion)."""
        return frozenset(i.name for i in self.inputs if i.options.get("rawLink"))

    def output_values(self, result: Any) -> tuple[Any, ...]:
        """What one `run` returned, as one value per output."""
        if not self.outputs:
            return ()
        if self.returns_named:
            if not isinstance(result, tuple) or len(result) != len(self.outputs):
                raise TypeError(f"{self.name}.run returned {type(result).__name__}, expected "
                                f"{len(self.outputs)} outputs")
            return result
        return (result,)


@dataclass(frozen=True)
class Expansion:
    """What a node's `run` returns to replace itself by a subgraph (ComfyUI's node expansion, reference §4.7).

    `graph`: new nodes in the API format (`{id: {"class_type": …, "inputs": {…}}}`), whose links may reach the
    workflow's nodes; ids must be new (prefix them with the node's own id). `result`: one entry per output, a link
    `[node id, slot]` into the graph (the output becomes that node's output) or a value.
    """

    graph: dict[str, Any]
    result: tuple[Any, ...] = ()


@dataclass(frozen=True, eq=False)
class ServiceKey(typing.Generic[T]):
    """The typed name of a shared service (as aiohttp's `AppKey`): `Services.get(key)` is a `T`."""

    name: str


class Services:
    """An environment's shared services (model manager, hash cache, …): one object per key, made on first use."""

    def __init__(self) -> None:
        self._items: dict[ServiceKey[Any], Any] = {}
        self._lock = threading.RLock()  # admission and the executor thread may make the same service at once

    def get(self, key: ServiceKey[T]) -> T | None:
        """The service, or None when nothing has made it yet."""
        return self._items.get(key)

    def get_or_create(self, key: ServiceKey[T], make: Callable[[], T]) -> T:
        """The service, made by `make()` the first time."""
        with self._lock:
            if key not in self._items:
                self._items[key] = make()
            return self._items[key]


@dataclass
class Environment:
    """What every node may use outside its inputs: the data folders and shared services (e.g. models)."""

    paths: DataPaths
    services: Services = field(default_factory=Services)
    previews: bool = False  # whether nodes should produce live preview images (they cost time)
    allow_pickle: bool = False  # whether loaders may unpickle .ckpt/.pt files (code can hide in a pickle)
    precision: Precision = field(default_factory=Precision)  # the dtypes loaders give models (--precision, …)
    compile: Any = None  # torch.compile backend for UNets and VAE decoding (--compile: "inductor"); None: eager


class Context:
    """The narrow door between a running node and the engine.

    The executor builds one per node call; `progress` and `preview` reach subscribers as events, `show` adds the
    node's UI output (what the editor displays and history records), `check_interrupt` raises `Interrupted`.
    """

    __slots__ = ("node_id", "prompt_id", "prompt", "extra_data", "env", "ui", "_on_progress", "_interrupt")

    def __init__(self, *, node_id: str, prompt_id: str, prompt: dict[str, Any], extra_data: dict[str, Any],
                 env: Environment, on_progress: Callable[[str, int, int, Any], None] | None = None,
                 interrupt: threading.Event | None = None) -> None:
        self.node_id = node_id
        self.prompt_id = prompt_id
        self.prompt = prompt
        self.extra_data = extra_data
        self.env = env
        self.ui: dict[str, list[Any]] = {}
        self._on_progress = on_progress
        self._interrupt = interrupt

    @property
    def interrupted(self) -> bool:
        return self._interrupt is not None and self._interrupt.is_set()

    def request_interrupt(self) -> None:
        """Stop the run this node belongs to, as `POST /interrupt` does (the node sees it at its next check)."""
        if self._interrupt is not None:
            self._interrupt.set()

    def check_interrupt(self) -> None:
        if self.interrupted:
            raise Interrupted(f"interrupted in node {self.node_id}")

    def progress(self, value: int, total: int, preview: Any = None) -> None:
        """Report progress (e.g. sampler step `value` of `total`); also checks for an interrupt."""
        self.check_interrupt()
        if self._on_progress is not None:
            self._on_progress(self.node_id, value, total, preview)

    def derive(self, *, prompt: dict[str, Any] | None = None, extra_data: dict[str, Any] | None = None) -> Context:
        """A context for a node this one calls directly (a pack calling ComfyUI's node classes): the same node,
        progress and interrupt, its own UI output; `prompt`/`extra_data` replace this one's when given."""
        return Context(node_id=self.node_id, prompt_id=self.prompt_id,
                       prompt=self.prompt if prompt is None else prompt,
                       extra_data=self.extra_data if extra_data is None else extra_data, env=self.env,
                       on_progress=self._on_progress, interrupt=self._interrupt)

    def show(self, **ui: list[Any]) -> None:
        """Add UI output, e.g. `ctx.show(images=[{"filename": ..., "subfolder": "", "type": "output"}])`."""
        for key, values in ui.items():
            self.ui.setdefault(key, []).extend(values)


class Node(BaseModel):
    """Base class of every node. Subclasses declare inputs as fields and implement `run`."""

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=(), extra="ignore")
    __node_spec__: ClassVar[NodeSpec]

    def run(self, ctx: Context) -> Any:  # pragma: no cover - always overridden
        raise NotImplementedError

    def check_lazy_status(self, ctx: Context) -> list[str]:
        """For a node with lazy inputs (`Input(lazy=True)`): the names of those it still needs, given the inputs
        evaluated so far (an unevaluated lazy input is None). The executor evaluates them and asks again; the node
        runs once it names none still unevaluated. By default none is needed (ComfyUI's rule)."""
        return []

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        """What of the outside world the result depends on (e.g. a file's hash); joins the cache key.

        Receives the constant inputs only. `None` means the result depends on the inputs alone.
        """
        return None

    @classmethod
    def validate_inputs(cls, inputs: dict[str, Any], env: Environment) -> str | dict[str, str] | None:
        """A node's own validation of its constant inputs: None when valid, else an error message, or
        `{input_name: message}` for one error per input. Linked inputs are included (as `LinkedInput`) only
        when the spec's `own_validation.sees_links` asks for them.
        """
        return None


def node(*, category: str, version: str, name: str | None = None, display_name: str | None = None,
         aliases: tuple[str, ...] = (), output: bool = False, input_is_list: bool = False,
         not_idempotent: bool = False, hidden: tuple[str, ...] = (), deprecated: bool = False,
         experimental: bool = False, python_module: str = "nodes") -> Callable[[type[Node]], type[Node]]:
    """Declare a node class; checks the declaration and attaches its `NodeSpec` as `cls.__node_spec__`."""

    def decorate(cls: type[Node]) -> type[Node]:
        spec = build_spec(cls, category=category, version=version, name=name or cls.__name__,
                          display_name=display_name, aliases=tuple(aliases), output=output,
                          input_is_list=input_is_list, not_idempotent=not_idempotent, hidden=tuple(hidden),
                          deprecated=deprecated, experimental=experimental, python_module=python_module)
        cls.__node_spec__ = spec
        return cls

    return decorate


def build_spec(cls: type[Node], *, name: str, version: str, category: str, display_name: str | None,
               output: bool, **flags: Any) -> NodeSpec:
    where = f"node {name!r} ({cls.__module__}.{cls.__qualname__})"
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise NodeDeclarationError(f"{where}: must subclass nodes.api.Node")
    if not NAME.match(name):
        raise NodeDeclarationError(f"{where}: invalid node name")
    if not SEMVER.match(version):
        raise NodeDeclarationError(f"{where}: version {version!r} is not semantic (MAJOR.MINOR.PATCH)")
    if not cls.__doc__ or cls.__doc__ is Node.__doc__:
        raise NodeDeclarationError(f"{where}: needs a docstring (it is the node's description)")
    for kind in flags["hidden"]:
        if kind not in HIDDEN_KINDS:
            raise NodeDeclarationError(f"{where}: unknown hidden input {kind!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    inputs = tuple(_input_spec(where, n, hints[n], f) for n, f in cls.model_fields.items())
    outputs, named = _output_specs(where, cls, output)
    _check_run_body(where, cls)
    return NodeSpec(name=name, cls=cls, version=version, category=category,
                    description=inspect.cleandoc(cls.__doc__), display_name=display_name or name,
                    inputs=inputs, outputs=outputs, returns_named=named, output_node=output, **flags)


def _input_spec(where: str, name: str, annotation: Any, info: FieldInfo) -> InputSpec:
    try:
        tinfo = type_info(annotation)
    except TypeError as exc:
        raise NodeDeclarationError(f"{where}: input {name!r}: {exc}") from None
    extra = dict(info.json_schema_extra or {}) if isinstance(info.json_schema_extra, dict) else {}
    optional = bool(extra.pop("optional", False)) or is_optional_annotation(annotation)
    lo = hi = None
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            lo = meta.ge
        elif isinstance(meta, annotated_types.Le):
            hi = meta.le
        elif isinstance(meta, (annotated_types.Gt, annotated_types.Lt)):
            raise NodeDeclarationError(f"{where}: input {name!r}: use ge/le (ComfyUI min/max are inclusive)")
    default = info.default
    # An optional combo may default to None (absent), as ComfyUI's combos without a "default" option.
    if (tinfo.options is not None and default is not PydanticUndefined and str(default) not in tinfo.options
            and not (optional and default is None)):
        raise NodeDeclarationError(f"{where}: input {name!r}: default {default!r} is not one of its options")
    if default is not PydanticUndefined and isinstance(default, (int, float)) and not isinstance(default, bool):
        if (lo is not None and default < lo) or (hi is not None and default > hi):
            raise NodeDeclarationError(f"{where}: input {name!r}: default {default!r} outside [{lo}, {hi}]")
    if not optional and default is not PydanticUndefined and not tinfo.is_widget:
        raise NodeDeclarationError(f"{where}: socket input {name!r} has a default; declare it optional=True")
    return InputSpec(name=name, type=tinfo, required=not optional, default=default, min=lo, max=hi,
                     tooltip=info.description, options=extra)


def _output_specs(where: str, cls: type[Node], output_node: bool) -> tuple[tuple[OutputSpec, ...], bool]:
    run = cls.__dict__.get("run")
    if run is None or not callable(run):
        raise NodeDeclarationError(f"{where}: must define run(self, ctx)")
    params = list(inspect.signature(run).parameters)
    if params != ["self", "ctx"]:
        raise NodeDeclarationError(f"{where}: run must take (self, ctx), not ({', '.join(params)})")
    hints = typing.get_type_hints(run, include_extras=True)
    if "return" not in hints:
        raise NodeDeclarationError(f"{where}: run needs a return annotation (its outputs)")
    ret = hints["return"]
    if ret is type(None):
        if not output_node:
            raise NodeDeclarationError(f"{where}: a node with no outputs must be declared output=True")
        return (), False
    if isinstance(ret, type) and issubclass(ret, tuple) and hasattr(ret, "_fields"):
        field_hints = typing.get_type_hints(ret, include_extras=True)
        specs = tuple(_output_spec(where, f, field_hints[f]) for f in ret._fields)
        return specs, True
    single = _output_spec(where, None, ret)
    return (single,), False


def _output_spec(where: str, name: str | None, annotation: Any) -> OutputSpec:
    try:
        tinfo = type_info(annotation)
    except TypeError as exc:
        raise NodeDeclarationError(f"{where}: output {name or 'return'}: {exc}") from None
    return OutputSpec(name=name or tinfo.name, type=tinfo.name, is_list=tinfo.is_list)


def _check_run_body(where: str, cls: type[Node]) -> None:
    """`run` may read `self.<x>` only for declared inputs or class attributes (catches renamed inputs)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls.__dict__["run"])))
    except (OSError, TypeError, SyntaxError):
        return  # source not available (e.g. generated classes): nothing to check
    known = set(cls.model_fields) | {n for k in cls.__mro__ for n in vars(k)}
    for sub in ast.walk(tree):
        if (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == "self"
                and sub.attr not in known):
            raise NodeDeclarationError(f"{where}: run reads self.{sub.attr}, which is not a declared input")


