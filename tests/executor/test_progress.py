"""`ProgressStates`: ComfyUI's progress_state snapshots derived from the events of real runs."""
from __future__ import annotations

from executor.events import ProgressState
from executor.progress import ProgressStates
from tests.executor.test_run import diamond


def replay(events, wanted=True):
    """Every event with the progress states due around it, in the order the server sends them."""
    states = ProgressStates()
    out = []
    for event in events:
        before, after = states.on(event, wanted)
        out += [*before, event, *after]
    return states, out


def summary(state: ProgressState):
    return {nid: (e["state"], e["value"], e["max"]) for nid, e in state.nodes.items()}


def test_each_node_runs_then_finishes_and_steps_are_reported(engine):
    wf = diamond()
    wf["7"] = {"class_type": "Slow", "inputs": {"x": ["4", 0], "steps": 2, "delay": 0.0}}
    wf["8"] = {"class_type": "Show", "inputs": {"value": ["7", 0]}}
    assert engine.run(wf).success
    _, out = replay(engine.events)
    messages = [summary(e) if isinstance(e, ProgressState) else e.type for e in out]
    at_slow = messages.index({"1": ("finished", 1, 1), "2": ("finished", 1, 1), "3": ("finished", 1, 1),
                              "4": ("finished", 1, 1), "5": ("finished", 1, 1), "7": ("running", 0, 1)})
    assert messages[at_slow + 1:at_slow + 6] == [
        "executing", "progress", {**messages[at_slow], "7": ("running", 1, 2)},
        "progress", {**messages[at_slow], "7": ("running", 2, 2)}]
    final = messages[messages.index("execution_success") - 1]
    assert set(final) == {"1", "2", "3", "4", "5", "7", "8"} and {s for s, _, _ in final.values()} == {"finished"}
    assert "6" not in final  # never planned: not in any snapshot
    assert all(e.prompt_id == "p1" for e in out if isinstance(e, ProgressState))


def test_cached_nodes_are_finished_in_one_snapshot(engine):
    engine.run(diamond())
    engine.run(diamond(factor=4))  # 1 and 3 are cached; 2, 4, 5 run again
    _, out = replay(engine.events)
    kinds = [e.type for e in out]
    assert kinds[:3] == ["execution_start", "execution_cached", "progress_state"]
    assert summary(out[2]) == {"1": ("finished", 1, 1), "3": ("finished", 1, 1)}


def test_failing_node_is_in_error_and_nothing_is_built_unless_wanted(engine):
    wf = {"1": {"class_type": "Constant", "inputs": {"value": 1.0}},
          "2": {"class_type": "Fail", "inputs": {"x": ["1", 0], "message": "boom"}},
          "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    assert not engine.run(wf).success
    _, out = replay(engine.events)
    assert out[-2].type == "progress_state" and out[-1].type == "execution_error"
    assert summary(out[-2]) == {"1": ("finished", 1, 1), "2": ("error", 0, 1)}
    states, quiet = replay(engine.events, wanted=False)
    assert not any(isinstance(e, ProgressState) for e in quiet)
    assert states.nodes["2"]["state"] == "error"  # the state is still followed
