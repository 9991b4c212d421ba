"""A small node pack for engine tests: arithmetic, strings, lists, a slow node, a failing node, an output node.

Every node records its runs in `RUNS` (node type, inputs) so tests can assert exactly what executed.
"""
from __future__ import annotations

import threading
import time
from typing import Literal, NamedTuple

from nodes.api import Context, Input, Node, node
from nodes.types import AnyType, socket

RUNS: list[tuple[str, dict]] = []
SLOW_STARTED = threading.Event()
Number = socket("NUMBER")
Tensorish = socket("TENSORISH")


def record(node_obj: Node) -> None:
    RUNS.append((type(node_obj).__name__, node_obj.model_dump()))


@node(category="test/math", version="1.0.0", aliases=("Const",))
class Constant(Node):
    """A number."""

    value: float = Input(0.0, ge=-1000.0, le=1000.0)

    def run(self, ctx: Context) -> Number:
        record(self)
        return self.value


@node(category="test/math", version="1.0.0")
class Add(Node):
    """Add two numbers."""

    a: Number = Input()
    b: Number = Input()

    def run(self, ctx: Context) -> Number:
        record(self)
        return self.a + self.b


@node(category="test/math", version="1.0.0")
class Scale(Node):
    """Multiply a number by an integer factor."""

    x: Number = Input()
    factor: int = Input(2, ge=0, le=100)
    mode: Literal["multiply", "divide"] = Input("multiply")

    def run(self, ctx: Context) -> Number:
        record(self)
        return self.x * self.factor if self.mode == "multiply" else self.x / self.factor


class DivMod(NamedTuple):
    quotient: Number
    remainder: Number


@node(category="test/math", version="1.0.0")
class Divide(Node):
    """Quotient and remainder."""

    x: Number = Input()
    y: int = Input(1, ge=1, le=1000)

    def run(self, ctx: Context) -> DivMod:
        record(self)
        return DivMod(self.x // self.y, self.x % self.y)


@node(category="test/strings", version="1.0.0")
class Format(Node):
    """Format a number with a template."""

    x: Number = Input()
    template: str = Input("{}", multiline=True)
    suffix: str = Input("", optional=True)

    def run(self, ctx: Context) -> str:
        record(self)
        return self.template.format(self.x) + self.suffix

    @classmethod
    def validate_inputs(cls, inputs, env):
        if inputs.get("template") == "crash":
            raise KeyError("hook bug")
        if "template" in inputs and "{}" not in inputs["template"]:
            return "template must contain {}"
        return None


@node(category="test/lists", version="1.0.0")
class Range(Node):
    """The numbers 0 .. count-1 as a list output."""

    count: int = Input(3, ge=0, le=100)

    def run(self, ctx: Context) -> list[Number]:
        record(self)
        return [float(i) for i in range(self.count)]


@node(category="test/lists", version="1.0.0", input_is_list=True)
class Sum(Node):
    """Sum a whole list (list input)."""

    values: Number = Input()

    def run(self, ctx: Context) -> Number:
        record(self)
        return sum(self.values)


@node(category="test/slow", version="1.0.0")
class Slow(Node):
    """Reports progress for `steps` steps, sleeping between them; sets SLOW_STARTED when it begins."""

    x: Number = Input()
    steps: int = Input(5, ge=1, le=1000)
    delay: float = Input(0.01, ge=0.0, le=10.0)

    def run(self, ctx: Context) -> Number:
        record(self)
        SLOW_STARTED.set()
        for i in range(self.steps):
            time.sleep(self.delay)
            ctx.progress(i + 1, self.steps)
        return self.x


@node(category="test/fail", version="1.0.0")
class Fail(Node):
    """Always raises."""

    x: Number = Input()
    message: str = Input("boom")

    def run(self, ctx: Context) -> Number:
        record(self)
        raise RuntimeError(self.message)


@node(category="test/data", version="1.0.0")
class Blob(Node):
    """A payload of `size` bytes (for the cache's byte budget)."""

    size: int = Input(1000, ge=0, le=10**9)
    tag: str = Input("")

    def run(self, ctx: Context) -> Tensorish:
        record(self)
        import numpy

        return numpy.zeros(self.size, dtype=numpy.uint8)


@node(category="test/data", version="1.0.0")
class Length(Node):
    """The size of a payload plus a number."""

    blob: Tensorish = Input()
    plus: int = Input(0, ge=0, le=100)

    def run(self, ctx: Context) -> Number:
        record(self)
        return float(len(self.blob) + self.plus)


@node(category="test/io", version="1.0.0")
class ReadFile(Node):
    """Read a text file from the input folder (fingerprinted by mtime and size)."""

    name: str = Input("a.txt")

    def run(self, ctx: Context) -> str:
        record(self)
        return ctx.env.paths.resolve(ctx.env.paths.input, self.name).read_text()

    @classmethod
    def fingerprint(cls, inputs, env):
        st = env.paths.resolve(env.paths.input, inputs["name"]).stat()
        return [st.st_mtime_ns, st.st_size]


@node(category="test/io", version="1.0.0", output=True)
class Show(Node):
    """Show a value (output node)."""

    value: AnyType = Input()

    def run(self, ctx: Context) -> None:
        record(self)
        ctx.show(text=[str(self.value)])
