"""The run loop: order, caching across runs, events, errors, interrupt and list mapping."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from executor.cache import MemoryCache
from executor.events import ExecutionError, ExecutionInterrupted, Executed, Executing, Progress
from executor.run import Executor
from tests.executor import stub_nodes


def diamond(value=2.0, factor=3):
    return {
        "1": {"class_type": "Constant", "inputs": {"value": value}},
        "2": {"class_type": "Scale", "inputs": {"x": ["1", 0], "factor": factor, "mode": "multiply"}},
        "3": {"class_type": "Constant", "inputs": {"value": 10.0}},
        "4": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": ["3", 0]}},
        "5": {"class_type": "Show", "inputs": {"value": ["4", 0]}},
        "6": {"class_type": "Constant", "inputs": {"value": 99.0}},  # not connected to an output: never runs
    }


def test_runs_ancestors_of_outputs_in_order(engine):
    result = engine.run(diamond())
    assert result.success
    assert result.outputs == {"5": {"text": ["16.0"]}}
    ran = engine.ran()
    assert "Constant" in ran and ran.index("Scale") < ran.index("Add") < ran.index("Show")
    assert len(ran) == 5  # node 6 never ran
    executing = [e.node for e in engine.events if isinstance(e, Executing)]
    assert executing == result.executed and set(executing) == {"1", "2", "3", "4", "5"}


def test_events_in_comfy_order(engine):
    engine.run(diamond())
    types = [e.type for e in engine.events]
    assert types[0] == "execution_start" and types[1] == "execution_cached"
    assert types[-1] == "execution_success"
    executed = [e for e in engine.events if isinstance(e, Executed)]
    assert [(e.node, e.output) for e in executed] == [("5", {"text": ["16.0"]})]
    assert engine.events[-1].message() == {"type": "execution_success",
                                          "data": {"prompt_id": "p1", "timestamp": engine.events[-1].timestamp}}


def test_second_run_is_all_cached_and_republishes_ui(engine):
    engine.run(diamond())
    result = engine.run(diamond(), prompt_id="p2")
    assert engine.ran() == []
    assert result.cached == ["1", "3", "2", "4", "5"] or set(result.cached) == {"1", "2", "3", "4", "5"}
    assert result.outputs == {"5": {"text": ["16.0"]}}
    assert [e.type for e in engine.events].count("executing") == 0
    assert [e.output for e in engine.events if isinstance(e, Executed)] == [{"text": ["16.0"]}]


def test_changed_input_reruns_node_and_descendants_only(engine):
    engine.run(diamond())
    result = engine.run(diamond(factor=4))
    assert sorted(engine.ran()) == ["Add", "Scale", "Show"]
    assert set(result.cached) == {"1", "3"}
    assert result.outputs["5"] == {"text": ["18.0"]}


def test_same_work_under_other_ids_and_workflow_hits_cache(engine):
    engine.run(diamond())
    renamed = {"a": {"class_type": "Const", "inputs": {"value": 2.0}},  # alias, other ids
               "b": {"class_type": "Scale", "inputs": {"x": ["a", 0], "factor": 3, "mode": "multiply"}},
               "c": {"class_type": "Show", "inputs": {"value": ["b", 0]}}}
    result = engine.run(renamed)
    assert set(result.cached) == {"a", "b"}
    assert engine.ran() == ["Show"]


def test_failing_node_ends_run_and_keeps_earlier_results(engine):
    wf = diamond()
    wf["7"] = {"class_type": "Fail", "inputs": {"x": ["2", 0], "message": "kaput"}}
    wf["8"] = {"class_type": "Show", "inputs": {"value": ["7", 0]}}
    result = engine.run(wf)
    assert result.status == "error"
    err = result.error
    assert isinstance(err, ExecutionError)
    assert (err.node_id, err.node_type, err.exception_message, err.exception_type) == \
        ("7", "Fail", "kaput", "RuntimeError")
    assert err.current_inputs == {"x": [6.0], "message": ["kaput"]}
    assert "Traceback" in err.traceback[0] and "kaput" in err.traceback[-1]
    assert set(err.executed) <= {"1", "2", "3", "4", "5"} and "2" in err.executed
    assert engine.events[-1] is err
    assert result.messages[-1][0] == "execution_error"
    # what was computed before the failure is cached
    again = engine.run(diamond())
    assert "2" in again.cached and "1" in again.cached


def test_list_output_maps_downstream_node_per_item(engine):
    wf = {"1": {"class_type": "Range", "inputs": {"count": 3}},
          "2": {"class_type": "Constant", "inputs": {"value": 100.0}},
          "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},  # 3 items vs 1: repeats last
          "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}},
          "5": {"class_type": "Sum", "inputs": {"values": ["3", 0]}},  # INPUT_IS_LIST: one call
          "6": {"class_type": "Show", "inputs": {"value": ["5", 0]}}}
    result = engine.run(wf)
    assert result.outputs["4"] == {"text": ["100.0", "101.0", "102.0"]}
    assert result.outputs["6"] == {"text": ["303.0"]}
    assert engine.ran().count("Add") == 3 and engine.ran().count("Sum") == 1


def test_shorter_lists_repeat_their_last_item(engine):
    wf = {"1": {"class_type": "Range", "inputs": {"count": 4}},
          "2": {"class_type": "Range", "inputs": {"count": 2}},
          "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
          "4": {"class_type": "Show", "inputs": {"value": ["3", 0]}}}
    assert engine.run(wf).outputs["4"] == {"text": ["0.0", "2.0", "3.0", "4.0"]}


def test_named_outputs(engine):
    wf = {"1": {"class_type": "Constant", "inputs": {"value": 17.0}},
          "2": {"class_type": "Divide", "inputs": {"x": ["1", 0], "y": 5}},
          "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
          "4": {"class_type": "Show", "inputs": {"value": ["2", 1]}}}
    outputs = engine.run(wf).outputs
    assert outputs["3"] == {"text": ["3.0"]} and outputs["4"] == {"text": ["2.0"]}


def test_interrupt_stops_between_nodes_and_inside_a_node(engine):
    wf = diamond()
    wf["7"] = {"class_type": "Slow", "inputs": {"x": ["4", 0], "steps": 200, "delay": 0.01}}
    wf["8"] = {"class_type": "Show", "inputs": {"value": ["7", 0]}}
    holder = {}
    worker = threading.Thread(target=lambda: holder.setdefault("r", engine.run(wf)))
    worker.start()
    assert stub_nodes.SLOW_STARTED.wait(10)
    deadline = time.monotonic() + 10
    while not any(isinstance(e, Progress) for e in list(engine.events)) and time.monotonic() < deadline:
        time.sleep(0.005)
    engine.executor.interrupt()
    worker.join(10)
    result = holder["r"]
    assert result.status == "interrupted"
    assert isinstance(result.error, ExecutionInterrupted) and result.error.node_id == "7"
    steps = [e.value for e in engine.events if isinstance(e, Progress)]
    assert 0 < len(steps) < 200 and steps == list(range(1, len(steps) + 1))
    assert "Show" not in [n for n in engine.ran()[engine.ran().index("Slow"):]]
    # the flag is reset for the next run
    assert engine.run(diamond(value=3.0)).success


def test_fingerprint_notices_changed_file(engine, env):
    (env.paths.input / "a.txt").write_text("one")
    wf = {"1": {"class_type": "ReadFile", "inputs": {"name": "a.txt"}},
          "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    assert engine.run(wf).outputs["2"] == {"text": ["one"]}
    engine.run(wf)
    assert engine.ran() == []
    time.sleep(0.01)
    (env.paths.input / "a.txt").write_text("two!")
    assert engine.run(wf).outputs["2"] == {"text": ["two!"]}
    assert engine.ran() == ["ReadFile", "Show"]


def test_eviction_under_byte_budget(registry, env):
    from executor.validate import validate
    from executor.workflow import parse_workflow

    executor = Executor(env, MemoryCache(max_bytes=2000))  # room for one 1000-byte blob, not two

    def run(tag, plus):
        wf = {"1": {"class_type": "Blob", "inputs": {"size": 1000, "tag": tag}},
              "2": {"class_type": "Length", "inputs": {"blob": ["1", 0], "plus": plus}},
              "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
        stub_nodes.RUNS.clear()
        executor.execute(validate(parse_workflow(wf), registry, env), prompt_id=tag)
        assert executor.cache.total_bytes <= 2000
        return [n for n, _ in stub_nodes.RUNS]

    assert run("a", 0) == ["Blob", "Length", "Show"]
    assert run("b", 0) == ["Blob", "Length", "Show"]  # evicts a's blob
    assert run("b", 1) == ["Length", "Show"]
    assert run("a", 1) == ["Blob", "Length", "Show"]  # a's blob was evicted; evicts b's
    assert run("b", 2) == ["Blob", "Length", "Show"]


def test_memory_cache_is_lru_in_bytes():
    from executor.cache import CacheEntry

    cache = MemoryCache(max_bytes=300)
    for key in "abc":
        cache.put(key, CacheEntry([], None, 100))
    assert cache.get("a") is not None  # refresh a: b is now the least recently used
    cache.put("d", CacheEntry([], None, 100))
    assert "b" not in cache and {"a", "c", "d"} <= set(cache._entries)
    cache.put("huge", CacheEntry([], None, 301))
    assert "huge" not in cache and cache.total_bytes == 300


def test_cache_keys_agree_across_processes(tmp_path):
    script = (
        "import json,sys; from tests.executor.stub_nodes import *\n"
        "from nodes.registry import Registry; from nodes.api import Environment; from nodes.paths import DataPaths\n"
        "from executor.validate import validate; from executor.workflow import parse_workflow\n"
        "from executor.run import _Run, Executor; from tests.executor import stub_nodes\n"
        "r=Registry(); r.add_module(stub_nodes); env=Environment(DataPaths(sys.argv[1]))\n"
        "wf={'1':{'class_type':'Constant','inputs':{'value':2.5}},"
        "'2':{'class_type':'Scale','inputs':{'x':['1',0],'factor':3,'mode':'divide'}},"
        "'3':{'class_type':'Show','inputs':{'value':['2',0]}}}\n"
        "rep=validate(parse_workflow(wf), r, env)\n"
        "run=_Run(Executor(env), rep, 'p', {}, None)\n"
        "print(json.dumps(run.compute_keys(['1','2','3'])))\n")
    outs = [subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": str(seed), "PATH": ""}, cwd=".").stdout
            for seed in (1, 2)]
    first, second = (json.loads(o) for o in outs)
    assert first == second and len(set(first.values())) == 3
    assert all(len(k) == 64 for k in first.values())


def test_cached_output_does_not_rerun_its_upstream(engine):
    engine.run(diamond())
    engine.executor.cache.clear()
    engine.run(diamond())
    key_of_show = None
    # drop everything but the output's entry: the run must reuse it without recomputing its inputs
    entries = engine.executor.cache._entries
    show_entry = [k for k, e in entries.items() if e.ui is not None]
    assert len(show_entry) == 1
    key_of_show = show_entry[0]
    for key in [k for k in entries if k != key_of_show]:
        del entries[key]
    result = engine.run(diamond())
    assert engine.ran() == [] and result.outputs == {"5": {"text": ["16.0"]}}
