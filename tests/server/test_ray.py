"""Scale-out on a real local Ray instance: a head server and two CPU worker actors, each with its own data folder
(nothing shared but what travels), the built-in nodes and the engine-test node pack installed as a plugin.

Covered: two prompts run at once; affinity sends a prompt to the worker that holds its checkpoint; a worker killed
mid-prompt → the prompt completes on another; interrupt reaches the remote run; a ComfyUI client round trip
(comfy-api-simplified) gets SaveImage's PNG through the head; /workers and /system_stats list the workers; a model
the workers lack fails with the validation error naming it.
"""
from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from server.app import create_app  # noqa: E402
from server.background import BackgroundServer  # noqa: E402
from server.config import ServerConfig  # noqa: E402
from server.state import WORKER  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STUB_PACK = REPO / "tests" / "executor" / "stub_nodes.py"
TXT2IMG = json.loads((REPO / "workflows" / "txt2img.json").read_text())
CKPT = TXT2IMG["4"]["inputs"]["ckpt_name"]
pytestmark = pytest.mark.timeout(900)


def install(data: Path, checkpoint: Path) -> None:
    (data / "custom_nodes").mkdir(parents=True)
    shutil.copy(STUB_PACK, data / "custom_nodes" / "stub_nodes.py")
    (data / "models" / "checkpoints").mkdir(parents=True)
    shutil.copy(checkpoint, data / "models" / "checkpoints" / CKPT)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from nodes.sd.tiny import write_single_file

    root = tmp_path_factory.mktemp("ray")
    write_single_file("sd1", root / "tiny.safetensors", seed=0)
    for name in ("head", "w0", "w1"):
        install(root / name, root / "tiny.safetensors")
    (root / "head" / "models" / "checkpoints" / "only-on-head.safetensors").write_bytes(
        (root / "tiny.safetensors").read_bytes() + b"\0")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    config = ServerConfig(data_dir=root / "head", ray_address="local", ray_workers=2, shutdown_grace=0.5,
                          ray_worker_data_dir=str(root / "{worker}"))
    server = BackgroundServer(create_app(config))
    try:
        server.start(timeout=600)  # two actors import torch and load their nodes
        server.root = root
        yield server
    finally:
        server.stop()
        ray.shutdown()


def call(server, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def queue(server, prompt):
    return call(server, "/prompt", {"prompt": prompt})["prompt_id"]


def history(server, prompt_id, timeout=180.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        entry = call(server, f"/history/{prompt_id}")
        if entry:
            return entry[prompt_id]
        time.sleep(0.1)
    raise AssertionError(f"prompt {prompt_id} did not finish")


def workers(server):
    return {w["id"]: w for w in call(server, "/workers")}


def wait(predicate, timeout=120.0):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def slow(steps, delay=0.1, value=1.0):
    return {"1": {"class_type": "Constant", "inputs": {"value": value}},
            "2": {"class_type": "Slow", "inputs": {"x": ["1", 0], "steps": steps, "delay": delay}},
            "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}}}


def txt2img(seed):
    prompt = json.loads(json.dumps(TXT2IMG))
    prompt["3"]["inputs"].update(seed=seed, steps=2)
    return prompt


def span(entry):
    times = {kind: data["timestamp"] for kind, data in entry["status"]["messages"]}
    return times["execution_start"], times["execution_success"]


def test_workers_are_listed_with_their_devices(cluster):
    found = workers(cluster)
    assert sorted(found) == ["w0", "w1"] and all(w["state"] == "idle" for w in found.values())
    devices = call(cluster, "/system_stats")["devices"]
    assert [d["name"].split(":")[0] for d in devices if d["type"] == "ray"] == ["w0", "w1"]


def test_two_prompts_run_at_the_same_time_on_two_workers(cluster):
    before = workers(cluster)
    first, second = queue(cluster, slow(15, value=1.0)), queue(cluster, slow(15, value=2.0))
    a, b = history(cluster, first), history(cluster, second)
    assert a["outputs"]["3"] == {"text": ["1.0"]} and b["outputs"]["3"] == {"text": ["2.0"]}
    (start_a, end_a), (start_b, end_b) = span(a), span(b)
    assert start_b < end_a and start_a < end_b          # they overlapped
    after = workers(cluster)
    assert [after[w]["prompts_run"] - before[w]["prompts_run"] for w in ("w0", "w1")] == [1, 1]


def test_a_prompt_goes_to_the_worker_holding_its_checkpoint(cluster):
    first = history(cluster, queue(cluster, txt2img(1)))
    assert first["status"]["completed"]
    holder = next(w for w, info in workers(cluster).items() if f"checkpoints/{CKPT}" in info["models"])
    runs = workers(cluster)[holder]["prompts_run"]
    # a prompt without models goes to the least loaded worker, the other one
    history(cluster, queue(cluster, slow(1)))
    assert workers(cluster)[holder]["prompts_run"] == runs
    for seed in (2, 3):
        assert history(cluster, queue(cluster, txt2img(seed)))["status"]["completed"]
    assert workers(cluster)[holder]["prompts_run"] == runs + 2


def test_a_comfyui_client_gets_the_image_through_the_head(cluster):
    from comfy_api_simplified import ComfyApiWrapper, ComfyWorkflowWrapper

    api = ComfyApiWrapper(cluster.url)
    wf = ComfyWorkflowWrapper(txt2img(7))
    images = api.queue_and_wait_images(wf, "Save Image")
    (name, data), = images.items()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (cluster.root / "head" / "output" / name).read_bytes() == data        # written by the head
    assert any((cluster.root / w / "output" / name).exists() for w in ("w0", "w1"))  # made on a worker


def test_interrupt_reaches_the_remote_run(cluster):
    prompt_id = queue(cluster, slow(200, delay=0.05))
    wait(lambda: any(w["state"] == "busy" for w in workers(cluster).values()))
    time.sleep(0.5)
    call(cluster, "/interrupt", {"prompt_id": prompt_id})
    entry = history(cluster, prompt_id, timeout=30)
    assert [kind for kind, _ in entry["status"]["messages"]][-1] == "execution_interrupted"


def test_a_model_the_workers_lack_is_refused_by_name(cluster):
    prompt = txt2img(1)
    prompt["4"]["inputs"]["ckpt_name"] = "only-on-head.safetensors"
    entry = history(cluster, queue(cluster, prompt))
    kind, data = entry["status"]["messages"][-1]
    assert kind == "execution_error" and "only-on-head.safetensors" in data["exception_message"]


def test_a_worker_killed_mid_prompt_is_replaced_and_the_prompt_completes(cluster):
    prompt_id = queue(cluster, slow(40, delay=0.1, value=3.0))
    dispatcher = cluster.app[WORKER]
    wait(lambda: any(s.prompt_id == prompt_id for s in dispatcher.slots))
    time.sleep(1.0)
    victim = next(s for s in dispatcher.slots if s.prompt_id == prompt_id)
    ray.kill(victim.handle, no_restart=False)
    entry = history(cluster, prompt_id)
    assert entry["status"]["completed"] and entry["outputs"]["3"] == {"text": ["3.0"]}
    wait(lambda: all(w["state"] == "idle" for w in workers(cluster).values()))


def test_free_reaches_every_worker(cluster):
    history(cluster, queue(cluster, txt2img(11)))
    assert any(w["models"] for w in workers(cluster).values())
    call(cluster, "/free", {"unload_models": True})
    wait(lambda: all(not w["models"] for w in workers(cluster).values()), timeout=60)
