"""Primitive value nodes (ComfyUI's `PrimitiveInt`, …): a constant that several inputs can share by link."""
from __future__ import annotations

from nodes.api import Context, Input, Node, node


@node(category="utils/primitive", version="1.0.0", display_name="Int")
class PrimitiveInt(Node):
    """An integer constant."""

    value: int = Input(0, ge=-(2**63), le=2**64 - 1, control_after_generate=True)

    def run(self, ctx: Context) -> int:
        return self.value


@node(category="utils/primitive", version="1.0.0", display_name="Float")
class PrimitiveFloat(Node):
    """A floating-point constant."""

    value: float = Input(0.0, ge=-1e18, le=1e18, step=0.01)

    def run(self, ctx: Context) -> float:
        return self.value


@node(category="utils/primitive", version="1.0.0", display_name="String")
class PrimitiveString(Node):
    """A one-line string constant."""

    value: str = Input("")

    def run(self, ctx: Context) -> str:
        return self.value


@node(category="utils/primitive", version="1.0.0", display_name="String (Multiline)")
class PrimitiveStringMultiline(Node):
    """A multi-line string constant (for prompts)."""

    value: str = Input("", multiline=True)

    def run(self, ctx: Context) -> str:
        return self.value


@node(category="utils/primitive", version="1.0.0", display_name="Boolean")
class PrimitiveBoolean(Node):
    """A true/false constant."""

    value: bool = Input(False)

    def run(self, ctx: Context) -> bool:
        return self.value
