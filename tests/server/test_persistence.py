"""Nothing queued or finished is lost: restarts on the same data folder, clean shutdown, and real process death."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from aiohttp import WSMsgType

from executor.queue import RESTART_REASON, QueueItem
from executor.store_sqlite import SqliteQueueStore
from nodes.registry import Registry
from tests.executor import stub_nodes
from tests.server import server_nodes
from tests.server.conftest import chain, gated, queue, until_done, wait_for, wait_history

ROOT = Path(__file__).resolve().parents[2]


def store_at(data_dir) -> SqliteQueueStore:
    return SqliteQueueStore(data_dir / "latentloom.db")


async def test_restart_keeps_queue_and_history(make_client, data_dir):
    first = await make_client()
    done = await queue(first, chain())
    await wait_history(first, done["prompt_id"])
    ws = await first.ws_connect("/ws")
    await ws.receive_json()
    running = await queue(first, gated())
    waiting = [(await queue(first, chain(float(v))))["prompt_id"] for v in (10, 20)]
    await wait_for(server_nodes.GATE_ENTERED.is_set)
    await first.close()  # clean shutdown: the gate never opens, so the running prompt is re-queued
    msg = await ws.receive()
    while msg.type == WSMsgType.TEXT:
        msg = await ws.receive()
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)

    store = store_at(data_dir)
    assert [i.prompt_id for i in store.pending()] == [running["prompt_id"], *waiting]
    assert store.running() == [] and list(store.history()) == [done["prompt_id"]]
    store.close()

    server_nodes.GATE_ENTERED.clear()
    second = await make_client()
    await wait_for(server_nodes.GATE_ENTERED.is_set)
    q = await (await second.get("/queue")).json()
    assert [i[1] for i in q["queue_running"]] == [running["prompt_id"]]
    assert [i[1] for i in q["queue_pending"]] == waiting
    assert (await (await second.get(f"/history/{done['prompt_id']}")).json())[done["prompt_id"]]["outputs"] == {
        "3": {"text": ["6.0"]}}
    server_nodes.GATE.set()
    await wait_history(second, waiting[-1])
    assert list(await (await second.get("/history")).json()) == [done["prompt_id"], running["prompt_id"], *waiting]
    assert (await queue(second, chain(3.0)))["number"] == 4  # numbers continue: old prompts are not overtaken


async def test_clean_shutdown_lets_a_quick_prompt_finish(make_client, data_dir):
    client = await make_client(shutdown_grace=10.0)
    body = await queue(client, gated())
    await wait_for(server_nodes.GATE_ENTERED.is_set)
    asyncio.get_running_loop().call_later(0.2, server_nodes.GATE.set)
    await client.close()
    store = store_at(data_dir)
    assert store.remaining() == 0
    assert store.history_entry(body["prompt_id"])["status"]["status_str"] == "success"
    store.close()


def crashed_store(data_dir, prompt, prompt_id="crashed") -> None:
    """What a process that died mid-run leaves behind: the item marked running, no history."""
    store = store_at(data_dir)
    store.put(QueueItem(store.next_number(), prompt_id, prompt, {"client_id": "c"}, ["3"]))
    store.put(QueueItem(store.next_number(), "after", chain(7.0), {}, ["3"]))
    assert store.claim().prompt_id == prompt_id
    store.db.close()


async def test_prompt_running_at_a_crash_is_requeued(make_client, data_dir):
    crashed_store(data_dir, chain(5.0))
    client = await make_client()
    entry = await wait_history(client, "crashed")
    assert entry["status"]["status_str"] == "success" and entry["outputs"] == {"3": {"text": ["15.0"]}}
    await wait_history(client, "after")
    assert list(await (await client.get("/history")).json()) == ["crashed", "after"]


async def test_prompt_running_at_a_crash_can_be_failed_instead(make_client, data_dir):
    crashed_store(data_dir, chain(5.0))
    client = await make_client(interrupted_prompts="fail")
    entry = await wait_history(client, "crashed")
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    assert entry["status"]["messages"][-1][1]["exception_message"] == RESTART_REASON
    await wait_history(client, "after")
    assert ("Constant", {"value": 5.0}) not in stub_nodes.RUNS  # never ran again


async def test_prompt_that_no_longer_validates_fails_when_its_turn_comes(make_client, data_dir):
    seeded = {"1": {"class_type": "Seeded", "inputs": {"seed": 3}},
              "3": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    crashed_store(data_dir, seeded)
    without = Registry()
    without.add_module(stub_nodes)  # the node pack providing Seeded was removed meanwhile
    client = await make_client(without)
    ws = await client.ws_connect("/ws", params={"clientId": "c"})
    entry = await wait_history(client, "crashed")
    assert entry["status"]["status_str"] == "error"
    kind, error = entry["status"]["messages"][-1]
    assert kind == "execution_error" and error["exception_type"] == "ValidationError"
    assert error["node_id"] == "1" and error["node_type"] == "Seeded" and "Seeded" in error["exception_message"]
    await wait_history(client, "after")  # the worker went on
    await ws.close()


# --- real processes ------------------------------------------------------------------------------------------


def http(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def start(args, ready_prefix):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith(ready_prefix):
            return proc, line
    proc.kill()
    raise AssertionError("server did not start:\n" + "".join(lines))


def poll(fn, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def stub_server(data_dir):
    proc, line = start([sys.executable, "-m", "tests.server.serve_stub", str(data_dir)], "PORT ")
    return proc, int(line.split()[1])


def test_killed_process_loses_nothing(data_dir):
    proc, port = stub_server(data_dir)
    try:
        slow = {"1": {"class_type": "Constant", "inputs": {"value": 1.0}},
                "2": {"class_type": "Slow", "inputs": {"x": ["1", 0], "steps": 60, "delay": 0.02}},
                "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
        running = http(port, "POST", "/prompt", {"prompt": slow, "prompt_id": "slow"})["prompt_id"]
        pending = http(port, "POST", "/prompt", {"prompt": chain(4.0), "prompt_id": "next"})["prompt_id"]
        poll(lambda: http(port, "GET", "/queue")["queue_running"])
        proc.send_signal(signal.SIGKILL)  # no shutdown of any kind
        proc.wait(10)
    finally:
        proc.kill()
    proc, port = stub_server(data_dir)
    try:
        entry = poll(lambda: http(port, "GET", f"/history/{pending}"))[pending]
        assert entry["outputs"] == {"3": {"text": ["12.0"]}}
        history = http(port, "GET", "/history")
        assert list(history) == [running, pending]  # re-queued with its number, so it ran first
        assert history[running]["status"]["status_str"] == "success"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()


def test_kill_9_with_50_prompts_queued_loses_none(data_dir):
    proc, port = stub_server(data_dir)
    slow = {"1": {"class_type": "Constant", "inputs": {"value": 1.0}},
            "2": {"class_type": "Slow", "inputs": {"x": ["1", 0], "steps": 100, "delay": 0.02}},
            "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    try:
        ids = [http(port, "POST", "/prompt", {"prompt": slow, "prompt_id": "slow"})["prompt_id"]]
        poll(lambda: http(port, "GET", "/queue")["queue_running"])
        ids += [http(port, "POST", "/prompt", {"prompt": chain(float(i)), "prompt_id": f"p{i}"})["prompt_id"]
                for i in range(50)]
        assert len(http(port, "GET", "/queue")["queue_pending"]) == 50
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    proc, port = stub_server(data_dir)
    try:
        poll(lambda: len(http(port, "GET", "/history")) == 51 or None, timeout=120)
        history = http(port, "GET", "/history")
        assert list(history) == ids  # every prompt ran once, in queue order
        assert all(entry["status"]["status_str"] == "success" for entry in history.values())
        assert [history[f"p{i}"]["outputs"]["3"]["text"] for i in range(50)] == [[f"{3.0 * i}"] for i in range(50)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_main_serve_runs_and_stops_cleanly(tmp_path):
    """The real command with the built-in nodes; Ctrl-C stops it with exit 0 (SIGTERM: the stub server test)."""
    port = free_port()
    proc, _ = start([sys.executable, "main.py", "--data-dir", str(tmp_path / "d"), "serve", "--port", str(port)],
                    "latentloom serving on")
    try:
        wf = {"1": {"class_type": "PrimitiveInt", "inputs": {"value": "random"}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
        pid = http(port, "POST", "/api/prompt", {"prompt": wf})["prompt_id"]
        entry = poll(lambda: http(port, "GET", f"/api/history/{pid}"))[pid]
        value = entry["prompt"][2]["1"]["inputs"]["value"]
        assert isinstance(value, int) and value >= 0 and entry["outputs"]["2"]["text"] == [str(value)]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
    assert (tmp_path / "d" / "latentloom.db").exists()


def test_main_serve_refuses_exposure_without_token(tmp_path):
    result = subprocess.run([sys.executable, "main.py", "--data-dir", str(tmp_path), "serve", "--listen", "0.0.0.0",
                             "--port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k != "LATENTLOOM_AUTH_TOKEN"})
    assert result.returncode == 2 and "needs a token" in result.stderr


async def test_disk_cache_keeps_outputs_across_a_restart(make_client, data_dir):
    first = await make_client(disk_cache_bytes=10**8)
    ran = (await wait_history(first, (await queue(first, chain(7.0)))["prompt_id"]))["outputs"]
    await first.close()
    stub_nodes.RUNS.clear()
    second = await make_client(disk_cache_bytes=10**8)
    ws = await second.ws_connect("/ws", params={"clientId": "again"})
    await ws.receive_json()
    pid = (await queue(second, chain(7.0), client_id="again"))["prompt_id"]
    messages = await until_done(ws, pid)
    cached = next(m["data"]["nodes"] for m in messages if m["type"] == "execution_cached")
    assert sorted(cached) == ["1", "2", "3"] and stub_nodes.RUNS == []
    assert (await wait_history(second, pid))["outputs"] == ran
    await ws.close()
    await second.close()
    third = await make_client()  # without the flag: memory only, so it runs again
    await wait_history(third, (await queue(third, chain(7.0)))["prompt_id"])
    assert len(stub_nodes.RUNS) == 3
