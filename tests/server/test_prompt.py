"""Queueing routes: POST /prompt and its refusals, /queue, /history, /interrupt, /free, numbers and seeds."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.executor import stub_nodes
from tests.server import server_nodes
from tests.server.conftest import chain, gated, queue, wait_for, wait_history


async def test_prompt_runs_and_lands_in_history(client):
    body = await queue(client, chain(), client_id="me", extra_data={"extra_pnginfo": {"workflow": {"x": 1}}})
    assert set(body) == {"prompt_id", "number", "node_errors"}
    assert uuid.UUID(body["prompt_id"]).version == 4 and body["node_errors"] == {}
    entry = await wait_history(client, body["prompt_id"])
    assert entry["prompt"] == [body["number"], body["prompt_id"], chain(),
                               {"extra_pnginfo": {"workflow": {"x": 1}}, "client_id": "me"}, ["3"]]
    assert entry["outputs"] == {"3": {"text": ["6.0"]}}
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    kinds = [m[0] for m in entry["status"]["messages"]]
    assert kinds == ["execution_start", "execution_cached", "execution_success"]
    assert all(m[1]["prompt_id"] == body["prompt_id"] and isinstance(m[1]["timestamp"], int)
               for m in entry["status"]["messages"])
    assert entry["meta"] == {"3": {"node_id": "3", "display_node": "3", "parent_node": None, "real_node_id": "3"}}


async def test_every_route_answers_under_api_too(client):
    body = await (await client.post("/api/prompt", json={"prompt": chain(), "prompt_id": 77})).json()
    assert body["prompt_id"] == "77"  # a caller's id, as a string
    entry = await (await client.get("/api/history/77")).json()
    while not entry:
        entry = await (await client.get("/api/history/77")).json()
    assert list(entry) == ["77"]
    for path in ("/api/queue", "/api/prompt", "/api/history", "/api/object_info", "/api/features",
                 "/api/system_stats", "/api/embeddings", "/api/models", "/api/extensions"):
        assert (await client.get(path)).status == 200, path


async def test_client_prompt_id_is_unique_while_queued(client):
    await queue(client, gated(), prompt_id="same")
    resp = await client.post("/prompt", json={"prompt": chain(), "prompt_id": "same"})
    assert resp.status == 400
    assert (await resp.json())["error"]["type"] == "duplicate_prompt_id"
    server_nodes.GATE.set()
    await wait_history(client, "same")
    await queue(client, chain(5.0), prompt_id="same")  # finished: reuse replaces the history entry
    entry = await wait_history_text(client, "same", "15.0")
    assert entry["outputs"]["3"] == {"text": ["15.0"]}


async def wait_history_text(client, prompt_id, text):
    for _ in range(1000):
        entry = (await (await client.get(f"/history/{prompt_id}")).json()).get(prompt_id)
        if entry and entry["outputs"].get("3") == {"text": [text]}:
            return entry
        await asyncio.sleep(0.01)
    raise AssertionError("history entry not replaced")


async def test_no_prompt_is_comfyui_400(client):
    resp = await client.post("/prompt", json={"client_id": "x"})
    assert resp.status == 400
    assert await resp.json() == {"error": {"type": "no_prompt", "message": "No prompt provided",
                                           "details": "No prompt provided", "extra_info": {}}, "node_errors": {}}


@pytest.mark.parametrize("raw, kind", [
    (b"{not json", "invalid_json"), (b"", "invalid_json"), (b"\xff\xfe", "invalid_json"),
    (b"[1, 2]", "invalid_request"), (b'{"prompt": 5}', "invalid_request"),
    (b'{"prompt": {}, "client_id": 7}', "invalid_request"), (b'{"prompt": {}, "number": "x"}', "invalid_request"),
    (b"[" * 100_000 + b"]" * 100_000, "invalid_json"), (b'{"prompt": {}, "number": 1' + b"0" * 5000 + b"}",
                                                         "invalid_json"),
])
async def test_malformed_bodies_are_400_with_a_message(client, raw, kind):
    resp = await client.post("/prompt", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["type"] == kind and body["error"]["details"] and body["node_errors"] == {}
    assert (await client.get("/prompt")).status == 200  # still serving


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity"])
async def test_non_finite_numbers_are_refused_with_a_clear_message(client, number):
    resp = await client.post("/prompt", data=b'{"prompt": {}, "number": ' + number + b"}",
                             headers={"Content-Type": "application/json"})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["type"] == "invalid_json" and f"{number.decode()} is not a JSON value" in error["details"]
    assert (await (await client.get("/queue")).json())["queue_pending"] == []  # nothing stored


async def test_invalid_workflows(client):
    resp = await client.post("/prompt", json={"prompt": {"1": {"inputs": {}}}})
    assert resp.status == 400
    assert (await resp.json())["error"] == {
        "type": "invalid_prompt", "message": "Cannot execute because a node is missing the class_type property.",
        "details": "Node ID '#1'", "extra_info": {}}
    ui = {"nodes": [{"id": 1, "type": "Nope"}], "links": [], "version": 0.4}  # UI format is converted first
    ui_error = (await (await client.post("/prompt", json={"prompt": ui})).json())["error"]
    assert ui_error["type"] == "invalid_prompt" and "unknown node type(s) Nope" in ui_error["message"]
    unknown = await (await client.post("/prompt", json={"prompt": {"1": {"class_type": "Nope", "inputs": {}}}})).json()
    assert unknown["error"]["type"] == "invalid_prompt" and "Nope" in unknown["error"]["message"]
    no_out = await (await client.post("/prompt", json={"prompt": {"1": {"class_type": "Constant",
                                                                          "inputs": {"value": 1}}}})).json()
    assert no_out["error"]["type"] == "prompt_no_outputs"


async def test_node_errors_shape_and_partial_acceptance(client):
    bad = chain()
    bad["2"]["inputs"]["factor"] = 1000
    resp = await client.post("/prompt", json={"prompt": bad})
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert body["node_errors"] == {"2": {
        "errors": [{"type": "value_bigger_than_max", "message": "Value 1000 bigger than max of 100",
                    "details": "factor", "extra_info": {"input_name": "factor", "received_value": 1000,
                                                        "input_config": ["INT", {"default": 2, "min": 0,
                                                                                 "max": 100}]}}],
        "dependent_outputs": ["3"], "class_type": "Scale"}}
    mixed = {**chain(), "9": {"class_type": "Show", "inputs": {"value": ["8", 0]}},
             "8": {"class_type": "Scale", "inputs": {"x": ["1", 0], "factor": -1, "mode": "multiply"}}}
    ok = await queue(client, mixed)
    assert list(ok["node_errors"]) == ["8"]  # accepted: output 3 runs, output 9 is dropped
    entry = await wait_history(client, ok["prompt_id"])
    assert entry["prompt"][4] == ["3"] and list(entry["outputs"]) == ["3"]


async def test_partial_execution_targets(client):
    two = {**chain(), "4": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    body = await queue(client, two, partial_execution_targets=["4", "2"])  # "2" is not an output: ignored
    entry = await wait_history(client, body["prompt_id"])
    assert entry["prompt"][4] == ["4"] and entry["outputs"] == {"4": {"text": ["2.0"]}}
    resp = await client.post("/prompt", json={"prompt": two, "partial_execution_targets": []})
    assert (await resp.json())["error"]["type"] == "prompt_no_outputs"


async def test_numbers_front_and_order(client):
    first = await queue(client, gated("a"), client_id="c")
    assert first["number"] == 0
    await wait_for(server_nodes.GATE_ENTERED.is_set)
    second = await queue(client, chain(1.0))
    front = await queue(client, chain(2.0), front=True)
    explicit = await queue(client, chain(3.0), number=-12.5)
    assert (second["number"], front["number"], explicit["number"]) == (1, -2, -12.5)
    q = await (await client.get("/queue")).json()
    assert [i[1] for i in q["queue_running"]] == [first["prompt_id"]]
    assert [i[1] for i in q["queue_pending"]] == [explicit["prompt_id"], front["prompt_id"], second["prompt_id"]]
    assert q["queue_running"][0] == [0, first["prompt_id"], gated("a"), {"client_id": "c"}, ["3"]]
    server_nodes.GATE.set()
    await wait_history(client, second["prompt_id"])
    order = list(await (await client.get("/history")).json())
    assert order == [first["prompt_id"], explicit["prompt_id"], front["prompt_id"], second["prompt_id"]]


async def test_queue_remaining_counts_at_once_and_queue_edits(client):
    running = await queue(client, gated())
    ids = [(await queue(client, chain(float(v))))["prompt_id"] for v in range(3)]
    assert await (await client.get("/prompt")).json() == {"exec_info": {"queue_remaining": 4}}
    await wait_for(server_nodes.GATE_ENTERED.is_set)
    assert (await client.post("/queue", json={"delete": [ids[1], running["prompt_id"], "nope"]})).status == 200
    q = await (await client.get("/queue")).json()
    assert [i[1] for i in q["queue_pending"]] == [ids[0], ids[2]]
    assert [i[1] for i in q["queue_running"]] == [running["prompt_id"]]  # delete never touches the running one
    assert (await client.post("/api/queue", json={"clear": True})).status == 200
    q = await (await client.get("/queue")).json()
    assert q["queue_pending"] == [] and len(q["queue_running"]) == 1
    assert (await client.post("/queue", data=b"nope")).status == 400
    server_nodes.GATE.set()
    await wait_history(client, running["prompt_id"])
    assert await (await client.get("/prompt")).json() == {"exec_info": {"queue_remaining": 0}}
    assert set(await (await client.get("/history")).json()) == {running["prompt_id"]}


async def test_secrets_never_leave_the_server(client):
    secrets = {"auth_token_comfy_org": "t", "api_key_comfy_org": "k"}
    body = await queue(client, gated(), extra_data={**secrets, "extra_pnginfo": {}})
    await wait_for(server_nodes.GATE_ENTERED.is_set)
    text = await (await client.get("/queue")).text()
    assert '"t"' not in text and '"k"' not in text and "extra_pnginfo" in text
    server_nodes.GATE.set()
    entry = await wait_history(client, body["prompt_id"])
    assert entry["prompt"][3] == {"extra_pnginfo": {}}


async def test_history_windows_delete_clear(client):
    ids = []
    for v in range(4):
        ids.append((await queue(client, chain(float(v))))["prompt_id"])
        await wait_history(client, ids[-1])
    assert list(await (await client.get("/history?max_items=2")).json()) == ids[2:]
    assert list(await (await client.get("/history?max_items=2&offset=1")).json()) == ids[1:3]
    assert await (await client.get("/history/unknown")).json() == {}
    for bad in ("max_items=x", "max_items=-1", "offset=1.5"):
        resp = await client.get(f"/history?{bad}")
        assert resp.status == 400 and (await resp.json())["error"]["type"] == "invalid_request"
    assert (await client.post("/history", json={"delete": [ids[0]]})).status == 200
    assert list(await (await client.get("/history")).json()) == ids[1:]
    assert (await client.post("/history", json={"clear": True})).status == 200
    assert await (await client.get("/history")).json() == {}


async def test_interrupt_only_the_named_prompt(client):
    body = await queue(client, gated(), client_id="c")
    await wait_for(server_nodes.GATE_ENTERED.is_set)
    assert (await client.post("/interrupt", json={"prompt_id": "someone-else"})).status == 200
    assert await (await client.get(f"/history/{body['prompt_id']}")).json() == {}  # still running
    assert (await client.post("/api/interrupt", json={"prompt_id": body["prompt_id"]})).status == 200
    entry = await wait_history(client, body["prompt_id"])
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    kind, data = entry["status"]["messages"][-1]
    assert kind == "execution_interrupted" and data["node_id"] == "2" and data["node_type"] == "Gate"
    # a bare interrupt (no body) stops whatever runs; while idle it does nothing
    assert (await client.post("/interrupt")).status == 200
    server_nodes.GATE_ENTERED.clear()
    again = await queue(client, gated("2"))
    await wait_for(server_nodes.GATE_ENTERED.is_set)
    assert (await client.post("/interrupt", data=b"")).status == 200
    assert (await wait_history(client, again["prompt_id"]))["status"]["status_str"] == "error"


async def test_free_memory_drops_cached_results(client):
    await wait_history(client, (await queue(client, chain()))["prompt_id"])
    stub_nodes.RUNS.clear()
    await wait_history(client, (await queue(client, chain()))["prompt_id"])
    assert stub_nodes.RUNS == []  # all cached
    assert (await client.post("/free", json={"unload_models": True, "free_memory": True})).status == 200
    assert (await client.post("/free", data=b"{")).status == 400
    entry = await wait_history(client, (await queue(client, chain()))["prompt_id"])
    assert [name for name, _ in stub_nodes.RUNS] == ["Constant", "Scale", "Show"]
    assert entry["status"]["messages"][1][1]["nodes"] == []


async def test_seeds_are_resolved_and_stored(client):
    wf = {"1": {"class_type": "Seeded", "inputs": {"seed": "random"}},
          "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    first = await wait_history(client, (await queue(client, wf))["prompt_id"])
    second = await wait_history(client, (await queue(client, wf))["prompt_id"])
    seeds = [e["prompt"][2]["1"]["inputs"]["seed"] for e in (first, second)]
    assert all(isinstance(s, int) for s in seeds) and seeds[0] != seeds[1]  # never silently the cached result
    assert [e["outputs"]["2"]["text"] for e in (first, second)] == [[f"{float(s)}"] for s in seeds]
    inc = {"1": {"class_type": "Seeded", "inputs": {"seed": 41}, "_meta": {"control_after_generate": "increment"}},
           "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}
    runs = [await wait_history(client, (await queue(client, inc, client_id="c"))["prompt_id"]) for _ in range(3)]
    assert [r["prompt"][2]["1"]["inputs"]["seed"] for r in runs] == [41, 42, 43]
    bad = {**inc, "1": {**inc["1"], "_meta": {"control_after_generate": "sideways"}}}
    resp = await client.post("/prompt", json={"prompt": bad})
    body = await resp.json()
    assert resp.status == 400 and body["node_errors"]["1"]["errors"][0]["type"] == "invalid_seed_control"


async def test_validation_runs_off_the_event_loop(client):
    wf = {"1": {"class_type": "Constant", "inputs": {"value": 2.0}},
          "2": {"class_type": "SlowCheck", "inputs": {"x": ["1", 0]}},
          "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}
    posting = asyncio.ensure_future(queue(client, wf))
    await wait_for(server_nodes.CHECK_ENTERED.is_set)
    # validation is waiting: the server still answers others
    assert (await (await client.get("/prompt")).json()) == {"exec_info": {"queue_remaining": 0}}
    assert not posting.done()
    server_nodes.CHECK_GATE.set()
    assert (await posting)["node_errors"] == {}
