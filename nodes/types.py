"""Socket types: what flows along the links of a workflow.

A node declares each input and output with a Python annotation; this module turns annotations into ComfyUI's
socket type names. Primitive Python types are widgets (`int` → INT, `float` → FLOAT, `str` → STRING, `bool` →
BOOLEAN); `Literal[...]`, an `Enum` or `Annotated[str, Choices(fn)]` are combos; everything else is a socket
named by a `Socket` marker inside `Annotated` (`Model`, `Latent`, `Image`, … below, or `socket("MY_TYPE")` for
a plugin's own type). `list[T]` of a socket type marks a list output (ComfyUI's OUTPUT_IS_LIST).

Value conventions are ComfyUI's (see ARCHITECTURE.md): IMAGE float32 [B, H, W, C] in 0..1, MASK [B, H, W],
LATENT {"samples": [B, 4, h, w], ...}, CONDITIONING [[cond, {"pooled_output": ...}], ...].
"""
from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal

from pydantic import WithJsonSchema

PRIMITIVES: dict[type, str] = {int: "INT", float: "FLOAT", str: "STRING", bool: "BOOLEAN"}
ANY = "*"
MAX_RESOLUTION = 16384  # the largest width or height image and latent nodes accept (ComfyUI's limit)


@dataclass(frozen=True)
class Socket:
    """Marks an annotation as a socket of the given ComfyUI type name (e.g. "MODEL")."""

    name: str


@dataclass(frozen=True)
class Choices:
    """A combo whose options are computed when asked (e.g. the files of a model folder).

    `options` receives the node environment (see `nodes.api.Environment`) and returns the current list.
    """

    options: Callable[[Any], list[str]]

    @classmethod
    def model_files(cls, kind: str) -> "Choices":
        """The files of a model kind (every folder of it), listed when asked."""
        return cls(lambda env: env.paths.model_files(kind))


def _link_schema(type_name: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "type": "array",
            "prefixItems": [{"type": "string"}, {"type": "integer", "minimum": 0}],
            "minItems": 2,
            "maxItems": 2,
            "description": f"link [node_id, output_index] to a {type_name} output",
        }
    )


def socket(name: str) -> Any:
    """The annotation for a socket of type `name`; plugins use it for their own types."""
    return Annotated[Any, Socket(name), _link_schema(name)]


Model = socket("MODEL")
Clip = socket("CLIP")
Vae = socket("VAE")
Conditioning = socket("CONDITIONING")
Latent = socket("LATENT")
Image = socket("IMAGE")
Mask = socket("MASK")
AnyType = socket(ANY)


@dataclass(frozen=True)
class TypeInfo:
    """What an annotation means for the graph: its socket type name, combo options, and list-ness."""

    name: str
    options: tuple[str, ...] | None = None
    dynamic: Choices | None = None
    is_list: bool = False

    @property
    def is_combo(self) -> bool:
        return self.options is not None or self.dynamic is not None

    @property
    def is_widget(self) -> bool:
        return self.name in PRIMITIVES.values() or self.is_combo


def type_info(annotation: Any) -> TypeInfo:
    """Interpret one annotation; raises TypeError for an annotation that is not a socket type."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *extras = typing.get_args(annotation)
        for extra in extras:
            if isinstance(extra, Socket):
                return TypeInfo(extra.name)
            if isinstance(extra, Choices):
                return TypeInfo("COMBO", dynamic=extra)
        return type_info(base)
    if origin is Literal:
        return TypeInfo("COMBO", options=tuple(str(a) for a in typing.get_args(annotation)))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:  # Optional[T]
            return type_info(args[0])
    if origin is list:
        (item,) = typing.get_args(annotation)
        inner = type_info(item)
        return TypeInfo(inner.name, inner.options, inner.dynamic, is_list=True)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return TypeInfo("COMBO", options=tuple(str(m.value) for m in annotation))
    if annotation in PRIMITIVES:
        return TypeInfo(PRIMITIVES[annotation])
    raise TypeError(f"{annotation!r} is not a socket type (use int/float/str/bool, Literal, or nodes.types.socket)")


def is_optional_annotation(annotation: Any) -> bool:
    """True for `T | None` / `Optional[T]`."""
    origin = typing.get_origin(annotation)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation)


def types_compatible(received: str, expected: str) -> bool:
    """ComfyUI's link rule: "*" matches anything, otherwise comma-separated unions must intersect."""
    if ANY in (received, expected) or received == expected:
        return True
    return bool(set(received.split(",")) & set(expected.split(",")))
