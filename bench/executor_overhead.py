"""Executor overhead on graphs of trivial nodes.

For chains and fan-outs of 100, 1,000 and 10,000 nodes it measures: validation, a cold run, a fully cached
re-run, and a re-run after changing the first node (everything downstream re-runs). It prints microseconds per
node, the growth factor per 10x nodes (1.0 = linear), and the ratio against a reference measured in the same
run: the bare cost of calling the same nodes' `run` directly in a Python loop (the floor any engine pays).

    .venv/bin/python bench/executor_overhead.py [--sizes 100 1000 10000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executor.cache import MemoryCache  # noqa: E402
from executor.run import Executor  # noqa: E402
from executor.validate import validate  # noqa: E402
from executor.workflow import parse_workflow  # noqa: E402
from nodes.api import Context, Environment, Input, Node, node  # noqa: E402
from nodes.paths import DataPaths  # noqa: E402
from nodes.registry import Registry  # noqa: E402
from nodes.types import socket  # noqa: E402

Number = socket("NUMBER")


@node(category="bench", version="1.0.0")
class Seed(Node):
    """A number."""

    value: int = Input(0)

    def run(self, ctx: Context) -> Number:
        return self.value


@node(category="bench", version="1.0.0")
class Inc(Node):
    """Add one."""

    x: Number = Input()
    step: int = Input(1)

    def run(self, ctx: Context) -> Number:
        return self.x + self.step


@node(category="bench", version="1.0.0", output=True)
class Sink(Node):
    """Consume a number (output node with no UI)."""

    x: Number = Input()

    def run(self, ctx: Context) -> None:
        return None


def chain(n: int, first: int = 0) -> dict:
    wf = {"0": {"class_type": "Seed", "inputs": {"value": first}}}
    for i in range(1, n - 1):
        wf[str(i)] = {"class_type": "Inc", "inputs": {"x": [str(i - 1), 0], "step": 1}}
    wf[str(n - 1)] = {"class_type": "Sink", "inputs": {"x": [str(n - 2), 0]}}
    return wf


def fanout(n: int, first: int = 0) -> dict:
    wf = {"0": {"class_type": "Seed", "inputs": {"value": first}}}
    for i in range(1, n):
        wf[str(i)] = {"class_type": "Sink", "inputs": {"x": ["0", 0]}}
    return wf


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def direct_calls(n: int, ctx: Context) -> None:
    """The reference: construct and run n trivial nodes in a plain loop."""
    value = Seed.model_construct(value=0).run(ctx)
    for _ in range(n - 2):
        value = Inc.model_construct(x=value, step=1).run(ctx)
    Sink.model_construct(x=value).run(ctx)


def measure(shape, n: int, registry: Registry, env: Environment, repeat: int) -> dict[str, float]:
    doc, changed = shape(n), shape(n, first=1)
    figures = {"validate": best(lambda: validate(parse_workflow(doc), registry, env), repeat)}
    report, report_changed = (validate(parse_workflow(d), registry, env) for d in (doc, changed))

    def cold():
        Executor(env, MemoryCache(10**9)).execute(report, prompt_id="b", prompt=doc)

    figures["cold run"] = best(cold, repeat)
    warm = Executor(env, MemoryCache(10**9))
    warm.execute(report, prompt_id="b", prompt=doc)
    figures["cached re-run"] = best(lambda: warm.execute(report, prompt_id="b", prompt=doc), repeat)

    def rerun_changed():
        ex = Executor(env, MemoryCache(10**9))
        ex.execute(report, prompt_id="b", prompt=doc)
        gc.collect()
        start = time.perf_counter()
        ex.execute(report_changed, prompt_id="b", prompt=changed)
        return time.perf_counter() - start

    figures["re-run, first changed"] = min(rerun_changed() for _ in range(repeat))
    ctx = Context(node_id="0", prompt_id="b", prompt={}, extra_data={}, env=env)
    figures["reference: direct calls"] = best(lambda: direct_calls(n, ctx), repeat)
    return {k: v / n * 1e6 for k, v in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    registry = Registry()
    registry.add_module(sys.modules[__name__] if __name__ != "__main__" else _as_module())
    env = Environment(DataPaths(tempfile.mkdtemp(prefix="ll-bench-")))
    sys.setrecursionlimit(100_000)
    for shape in (chain, fanout):
        rows = {n: measure(shape, n, registry, env, args.repeat) for n in args.sizes}
        print(f"\n{shape.__name__}: microseconds per node (growth per 10x nodes; 1.00 = linear)")
        print(f"{'':28}" + "".join(f"{n:>12,}" for n in args.sizes) + f"{'growth':>10}{'vs ref':>9}")
        for metric in rows[args.sizes[0]]:
            values = [rows[n][metric] for n in args.sizes]
            growth = (values[-1] / values[0]) ** (1 / max(len(values) - 1, 1))
            ratio = values[-1] / rows[args.sizes[-1]]["reference: direct calls"]
            print(f"{metric:28}" + "".join(f"{v:12.2f}" for v in values) + f"{growth:10.2f}{ratio:8.1f}x")


def _as_module() -> ModuleType:
    module = ModuleType("bench_nodes")
    for cls in (Seed, Inc, Sink):
        cls.__module__ = module.__name__
        setattr(module, cls.__name__, cls)
    return module


if __name__ == "__main__":
    main()
