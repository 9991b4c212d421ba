from __future__ import annotations

import pytest

from executor.cache import MemoryCache
from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.paths import DataPaths
from nodes.registry import Registry
from tests.executor import stub_nodes


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.add_module(stub_nodes)
    return reg


@pytest.fixture
def env(tmp_path) -> Environment:
    return Environment(DataPaths(tmp_path / "data"))


@pytest.fixture(autouse=True)
def clear_runs():
    stub_nodes.RUNS.clear()
    stub_nodes.SLOW_STARTED.clear()
    yield


@pytest.fixture
def engine(registry, env):
    """A small facade: check(workflow) → report; run(workflow) → (result, events)."""

    class Engine:
        def __init__(self):
            self.executor = Executor(env, MemoryCache(10**8))
            self.events = []
            self.executor.subscribe(self.events.append)

        def check(self, wf, targets=None):
            return validate(parse_workflow(wf), registry, env, targets)

        def run(self, wf, prompt_id="p1", targets=None):
            self.events.clear()
            stub_nodes.RUNS.clear()
            report = self.check(wf, targets)
            assert report.ok, report.to_comfy()
            return self.executor.execute(report, prompt_id=prompt_id)

        def ran(self):
            return [name for name, _ in stub_nodes.RUNS]

    return Engine()
