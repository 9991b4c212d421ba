import torch

from nodes.api import Context, Input, Node, node
from nodes.types import Image


@node(category="plugin/test", version="2.0.0")
class Invert(Node):
    """Invert an image (1 - value)."""

    image: Image = Input()

    def run(self, ctx: Context) -> Image:
        return 1.0 - self.image


@node(category="plugin/test", version="2.0.0")
class Sum(Node):
    """Add two integers."""

    a: int = Input(0, ge=-1000, le=1000)
    b: int = Input(0, ge=-1000, le=1000)

    def run(self, ctx: Context) -> int:
        return self.a + self.b
