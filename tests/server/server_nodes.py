"""Nodes for the server tests: a seeded number, a gate a test opens, and live previews."""
from __future__ import annotations

import threading

from nodes.api import Context, Input, Node, node
from tests.executor.stub_nodes import Number

GATE = threading.Event()
GATE_ENTERED = threading.Event()
CHECK_GATE = threading.Event()
CHECK_ENTERED = threading.Event()


@node(category="test/seed", version="1.0.0")
class Seeded(Node):
    """A number made from a seed (the seed has the editor's control_after_generate widget)."""

    seed: int = Input(0, ge=0, le=2**64 - 1, control_after_generate=True)

    def run(self, ctx: Context) -> Number:
        return float(self.seed)


@node(category="test/slow", version="1.0.0")
class Gate(Node):
    """Waits until the test opens GATE (interruptible), then passes its input on."""

    x: Number = Input()
    tag: str = Input("")

    def run(self, ctx: Context) -> Number:
        GATE_ENTERED.set()
        while not GATE.wait(0.005):
            ctx.check_interrupt()
        return self.x


@node(category="test/preview", version="1.0.0")
class Previewer(Node):
    """Reports `steps` progress steps, each with a preview image of `size` × `size // 2` pixels."""

    x: Number = Input()
    steps: int = Input(2, ge=1, le=100)
    size: int = Input(64, ge=8, le=2048)

    def run(self, ctx: Context) -> Number:
        from PIL import Image as PILImage

        for i in range(self.steps):
            ctx.progress(i + 1, self.steps, PILImage.new("RGB", (self.size, self.size // 2), (200, 30 * i, 10)))
        return self.x


@node(category="test/slow", version="1.0.0")
class SlowCheck(Node):
    """A node whose validation waits until the test opens CHECK_GATE (a stand-in for a large prompt)."""

    x: Number = Input()

    def run(self, ctx: Context) -> Number:
        return self.x

    @classmethod
    def validate_inputs(cls, inputs, env):
        CHECK_ENTERED.set()
        CHECK_GATE.wait(10)
        return None
