"""Utility nodes that show values in the editor."""
from __future__ import annotations

import json
from typing import Any

from nodes.api import Context, Input, Node, node
from nodes.types import AnyType


@node(category="utils", version="1.0.0", display_name="Preview Any", output=True)
class PreviewAny(Node):
    """Show any value as text in the node (and in the run's history)."""

    source: AnyType = Input()

    def run(self, ctx: Context) -> None:
        ctx.show(text=[_as_text(self.source)])


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=2)
    except (TypeError, ValueError):
        return repr(value)
