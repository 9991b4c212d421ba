"""Example nodes written with latentloom's node API: typed inputs, a list output, an output node."""
from __future__ import annotations

from typing import Literal

import torch

from nodes.api import Context, Input, Node, node
from nodes.types import Image


@node(category="example/image", version="1.0.0", display_name="Blend Images")
class BlendImages(Node):
    """Mix two images: `normal` fades from A to B, `multiply` darkens, `screen` lightens."""

    image_a: Image = Input(tooltip="the base image")
    image_b: Image = Input(tooltip="the image mixed in (same size as A)")
    factor: float = Input(0.5, ge=0.0, le=1.0, step=0.01, tooltip="0 keeps A, 1 gives the blended result")
    mode: Literal["normal", "multiply", "screen"] = Input("normal")

    def run(self, ctx: Context) -> Image:
        a, b = self.image_a, self.image_b
        if a.shape[1:] != b.shape[1:]:
            raise ValueError(f"images differ in size: {tuple(a.shape[1:3])} and {tuple(b.shape[1:3])}")
        if self.mode == "multiply":
            mixed = a * b
        elif self.mode == "screen":
            mixed = 1.0 - (1.0 - a) * (1.0 - b)
        else:
            mixed = b
        return torch.lerp(a, mixed, self.factor)


@node(category="example/text", version="1.0.0", display_name="Split Lines")
class SplitLines(Node):
    """Split a text into its non-empty lines: a list output, so the next node runs once per line."""

    text: str = Input("one\ntwo", multiline=True)

    def run(self, ctx: Context) -> list[str]:
        return [line.strip() for line in self.text.splitlines() if line.strip()]


@node(category="example/text", version="1.0.0", display_name="Join Lines", input_is_list=True)
class JoinLines(Node):
    """Join every line it receives (a list input: it runs once with all of them)."""

    # With input_is_list every input arrives as the whole list of items (a constant as a one-item list).
    lines: list[str] = Input(force_input=True, tooltip="link a STRING output, e.g. Split Lines")
    separator: list[str] = Input(", ")

    def run(self, ctx: Context) -> str:
        return self.separator[0].join(self.lines)


@node(category="example/text", version="1.0.0", display_name="Show Text", output=True)
class ShowText(Node):
    """Show a text in the editor (and in the run's history)."""

    text: str = Input(force_input=True, tooltip="link a STRING output")

    def run(self, ctx: Context) -> None:
        ctx.show(text=[self.text])
