"""The SQLite queue/history store and seed resolution: order, persistence across reopen, recovery, trimming."""
from __future__ import annotations

import sqlite3

import pytest

from executor.queue import RESTART_REASON, DuplicatePromptError, HistoryEntry, QueueItem
from executor.seeds import RANDOM_CAP, SeedError, resolve_seeds
from executor.store_sqlite import SqliteQueueStore
from nodes.api import Context, Input, Node, node
from nodes.builtin import builtin_registry
from nodes.registry import Registry


@pytest.fixture
def store(tmp_path):
    s = SqliteQueueStore(tmp_path)
    yield s
    s.close()


def item(pid, number, **extra):
    return QueueItem(number, pid, {"1": {"class_type": "X", "inputs": {}}}, {"client_id": "c", **extra}, ["1"])


def test_numbers_come_from_a_persistent_counter(tmp_path):
    s = SqliteQueueStore(tmp_path)
    assert [s.next_number(), s.next_number(), s.next_number(front=True)] == [0, 1, -2]
    s.close()
    again = SqliteQueueStore(tmp_path)
    assert again.next_number() == 3  # a restart does not let new prompts jump ahead of old ones
    again.close()


def test_claims_in_number_order_then_queue_order(store):
    for pid, number in [("a", 5), ("b", 1), ("c", 5), ("d", -3), ("e", 1.5)]:
        store.put(item(pid, number))
    assert [i.prompt_id for i in store.pending()] == ["d", "b", "e", "a", "c"]
    claimed = [store.claim().prompt_id for _ in range(5)]
    assert claimed == ["d", "b", "e", "a", "c"]
    assert store.claim() is None
    assert store.remaining() == 5 and len(store.running()) == 5


def test_duplicate_pending_or_running_id_refused(store):
    store.put(item("a", 1))
    with pytest.raises(DuplicatePromptError):
        store.put(item("a", 2))
    store.claim()
    with pytest.raises(DuplicatePromptError):
        store.put(item("a", 3))
    store.finish(HistoryEntry(store.running()[0], "success"))
    store.put(item("a", 4))  # finished: the id may be used again (ComfyUI overwrites the history entry)
    assert store.remaining() == 1


def test_finish_moves_item_to_history_without_secrets(store):
    store.put(item("a", 1, api_key_comfy_org="k", auth_token_comfy_org="t", extra_pnginfo={"workflow": {}}))
    running = store.claim()
    assert running.extra_data["api_key_comfy_org"] == "k"  # the run itself still sees them
    assert store.pending() == [] and store.remaining() == 1
    store.finish(HistoryEntry(running, "success", {"1": {"text": ["hi"]}},
                              [("execution_start", {"prompt_id": "a", "timestamp": 1})]))
    assert store.remaining() == 0
    entry = store.history_entry("a")
    assert entry == {
        "prompt": [1, "a", {"1": {"class_type": "X", "inputs": {}}},
                   {"client_id": "c", "extra_pnginfo": {"workflow": {}}}, ["1"]],
        "outputs": {"1": {"text": ["hi"]}},
        "status": {"status_str": "success", "completed": True,
                   "messages": [["execution_start", {"prompt_id": "a", "timestamp": 1}]]},
        "meta": {"1": {"node_id": "1", "display_node": "1", "parent_node": None, "real_node_id": "1"}},
    }
    assert store.history_entry("nope") is None


def test_history_windows_and_trim(tmp_path):
    s = SqliteQueueStore(tmp_path, history_max=4)
    for n in range(6):
        s.put(item(f"p{n}", n))
        s.finish(HistoryEntry(s.claim(), "success"))
    assert list(s.history()) == ["p2", "p3", "p4", "p5"]  # oldest dropped past history_max
    assert list(s.history(max_items=2)) == ["p4", "p5"]  # the last N
    assert list(s.history(max_items=2, offset=1)) == ["p3", "p4"]  # N from offset
    assert list(s.history(offset=3)) == ["p5"]
    assert s.delete_history(["p3", "zz"]) == 1 and list(s.history()) == ["p2", "p4", "p5"]
    # a reused id moves to the end of completion order
    s.put(item("p2", 9))
    s.finish(HistoryEntry(s.claim(), "error"))
    assert list(s.history()) == ["p4", "p5", "p2"]
    assert s.history_entry("p2")["status"]["completed"] is False
    assert s.clear_history() == 3 and s.history() == {}
    s.close()


def test_delete_and_clear_leave_running_alone(store):
    for pid in "abcd":
        store.put(item(pid, ord(pid)))
    store.claim()  # a runs
    assert store.delete_pending(["a", "c", "x"]) == 1
    assert [i.prompt_id for i in store.pending()] == ["b", "d"]
    assert store.clear_pending() == 2
    assert [i.prompt_id for i in store.running()] == ["a"] and store.remaining() == 1


def test_everything_survives_reopen_and_running_is_requeued(tmp_path):
    s = SqliteQueueStore(tmp_path)
    s.put(item("done", 0))
    s.finish(HistoryEntry(s.claim(), "success", {"1": {"text": ["x"]}}))
    s.put(item("run", 1))
    s.put(item("wait", 2))
    assert s.claim().prompt_id == "run"
    s.db.close()  # the process dies: no finish, no close
    again = SqliteQueueStore(tmp_path)
    assert again.recover("requeue") == ["run"]
    assert [i.prompt_id for i in again.pending()] == ["run", "wait"]  # keeps its number, so runs first
    assert again.history_entry("done")["outputs"] == {"1": {"text": ["x"]}}
    again.close()


def test_recover_fail_writes_the_reason(tmp_path):
    s = SqliteQueueStore(tmp_path)
    s.put(item("run", 1))
    s.claim()
    s.db.close()
    again = SqliteQueueStore(tmp_path)
    assert again.recover("fail") == ["run"]
    assert again.remaining() == 0
    status = again.history_entry("run")["status"]
    assert status["status_str"] == "error" and status["completed"] is False
    kind, data = status["messages"][-1]
    assert kind == "execution_error" and data["exception_message"] == RESTART_REASON
    assert again.recover("fail") == []
    again.close()


def test_requeue_after_clean_interrupt(store):
    store.put(item("a", 1))
    store.claim()
    assert store.requeue("a") and not store.requeue("a")
    assert [i.prompt_id for i in store.pending()] == ["a"]


def test_newer_schema_refused(tmp_path):
    SqliteQueueStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "latentloom.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        SqliteQueueStore(tmp_path)


def test_seed_counter_streams_wrap_and_persist(tmp_path):
    s = SqliteQueueStore(tmp_path)
    assert [s.advance_seed("k", 2**64 - 2, 1, 0, 2**64 - 1) for _ in range(3)] == [2**64 - 2, 2**64 - 1, 0]
    assert [s.advance_seed("d", 1, -1, 0, 10) for _ in range(3)] == [1, 0, 10]
    s.close()
    assert SqliteQueueStore(tmp_path).advance_seed("k", 5, 1, 0, 2**64 - 1) == 1


# --- seeds -------------------------------------------------------------------------------------------------


@node(category="test", version="1.0.0")
class Sampler(Node):
    """A node with a seed input (min 0) and a plain int."""

    seed: int = Input(0, ge=0, le=2**64 - 1, control_after_generate=True)
    steps: int = Input(20, ge=1, le=100)

    def run(self, ctx: Context) -> int:
        return self.seed


@pytest.fixture
def seed_registry():
    reg = builtin_registry()
    reg.add(Sampler.__node_spec__)
    return reg


def fixed(values):
    values = list(values)
    return lambda n: values.pop(0)


def test_placeholders_become_random_values(seed_registry, store):
    prompt = {"1": {"class_type": "Sampler", "inputs": {"seed": "random", "steps": -1}},
              "2": {"class_type": "Sampler", "inputs": {"seed": -1, "steps": 3}},
              "3": {"class_type": "PrimitiveInt", "inputs": {"value": -1}},  # min < 0: -1 is a value
              "4": {"class_type": "Sampler", "inputs": {"seed": ["9", 0]}},  # a link is left alone
              "5": {"class_type": "Unknown", "inputs": {"seed": "random"}}}
    out = resolve_seeds(prompt, seed_registry, store, randbelow=fixed([7, 11]))
    assert out["1"]["inputs"] == {"seed": 7, "steps": -1}  # only controlled inputs change
    assert out["2"]["inputs"] == {"seed": 11, "steps": 3}
    assert out["3"] is prompt["3"] and out["4"] is prompt["4"] and out["5"] is prompt["5"]
    assert prompt["1"]["inputs"]["seed"] == "random"  # the caller's dict is not mutated


def test_random_range_is_capped_for_browsers(seed_registry, store):
    prompt = {"1": {"class_type": "Sampler", "inputs": {"seed": "random"}}}
    top = resolve_seeds(prompt, seed_registry, store, randbelow=lambda n: n - 1)
    assert top["1"]["inputs"]["seed"] == RANDOM_CAP
    real = resolve_seeds(prompt, seed_registry, store)["1"]["inputs"]["seed"]
    assert isinstance(real, int) and 0 <= real <= RANDOM_CAP
    # PrimitiveInt allows negatives, but a random one is a seed: never below 0
    primitive = {"1": {"class_type": "PrimitiveInt", "inputs": {"value": "random"}}}
    assert resolve_seeds(primitive, seed_registry, store, randbelow=lambda n: 0)["1"]["inputs"]["value"] == 0
    assert resolve_seeds(primitive, seed_registry, store, randbelow=lambda n: n - 1)["1"]["inputs"]["value"] == RANDOM_CAP


def test_meta_modes(seed_registry, store):
    def submit(mode, seed=100, client="c"):
        p = {"3": {"class_type": "Sampler", "inputs": {"seed": seed}, "_meta": {"control_after_generate": mode}}}
        return resolve_seeds(p, seed_registry, store, client_id=client, randbelow=fixed([42]))["3"]

    assert [submit("increment")["inputs"]["seed"] for _ in range(3)] == [100, 101, 102]
    assert [submit("decrement")["inputs"]["seed"] for _ in range(2)] == [100, 99]
    assert submit("increment", client="other")["inputs"]["seed"] == 100  # streams are per client
    assert submit("increment", seed=5)["inputs"]["seed"] == 5  # a new submitted value starts a new stream
    assert submit("fixed")["inputs"]["seed"] == 100
    randomized = submit({"seed": "randomize"})
    assert randomized["inputs"]["seed"] == 42
    assert randomized["_meta"] == {"control_after_generate": {"seed": "randomize"}}  # the choice is kept
    assert submit(True)["inputs"]["seed"] == 100  # the frontend's bare boolean means nothing here


@pytest.mark.parametrize("control, details", [("sometimes", "'sometimes' is not one of"),
                                              ({"steps": "increment"}, "steps: not an input with a seed control"),
                                              (["increment"], "must be a mode")])
def test_bad_modes_are_reported_on_the_node(seed_registry, store, control, details):
    p = {"3": {"class_type": "Sampler", "inputs": {"seed": 1}, "_meta": {"control_after_generate": control}}}
    with pytest.raises(SeedError) as info:
        resolve_seeds(p, seed_registry, store)
    errors = info.value.node_errors
    assert errors["3"]["class_type"] == "Sampler"
    assert errors["3"]["errors"][0]["type"] == "invalid_seed_control"
    assert details in errors["3"]["errors"][0]["details"]


def test_registry_without_seed_inputs_changes_nothing(store):
    reg = Registry()
    prompt = {"1": {"class_type": "Sampler", "inputs": {"seed": "random"}}}
    assert resolve_seeds(prompt, reg, store) == prompt
