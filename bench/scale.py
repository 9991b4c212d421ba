"""Scale-out throughput: prompts per minute of one local server against Ray with 1 and 2 workers, in one run.

    .venv/bin/python bench/scale.py [--prompts 8] [--steps 4] [--size 64] [--cpus 2]

Each set-up gets a fresh head data folder with the tiny SD1 checkpoint (and each Ray worker its own folder with
the same file), then runs one warm-up prompt (model load, first sampling) and `--prompts` txt2img prompts with
different seeds, queued at once; throughput is prompts / wall time from the first submission to the last history
entry. Dispatch overhead is the median round trip of a trivial prompt (PrimitiveInt → PreviewAny) through Ray
with one worker minus the same through the local server. Ray runs locally with `--cpus` CPUs; a CPU worker gets
an equal share of them (torch threads included), so the local server and one Ray worker use the same cores.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from server.app import create_app  # noqa: E402
from server.background import BackgroundServer  # noqa: E402
from server.config import ServerConfig  # noqa: E402

TXT2IMG = json.loads((ROOT / "workflows" / "txt2img.json").read_text())
TRIVIAL = {"1": {"class_type": "PrimitiveInt", "inputs": {"value": 1}},
           "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


def call(url: str, path: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as resp:
        return json.loads(resp.read() or b"null")


def run_all(url: str, prompts: list[dict]) -> float:
    start = time.perf_counter()
    ids = [call(url, "/prompt", {"prompt": p})["prompt_id"] for p in prompts]
    for pid in ids:
        while not call(url, f"/history/{pid}"):
            time.sleep(0.02)
    return time.perf_counter() - start


def txt2img(seed: int, steps: int, size: int) -> dict:
    prompt = json.loads(json.dumps(TXT2IMG))
    prompt["3"]["inputs"].update(seed=seed, steps=steps)
    prompt["5"]["inputs"].update(width=size, height=size)
    return prompt


def measure(config: ServerConfig, args) -> tuple[float, float]:
    """(prompts per minute, median seconds of a trivial prompt's round trip)."""
    server = BackgroundServer(create_app(config))
    server.start(timeout=900)  # Ray workers import torch and load their nodes first
    try:
        run_all(server.url, [txt2img(0, args.steps, args.size)])
        seconds = run_all(server.url, [txt2img(seed, args.steps, args.size) for seed in range(1, args.prompts + 1)])
        trips = []
        for i in range(10):
            trivial = json.loads(json.dumps(TRIVIAL))
            trivial["1"]["inputs"]["value"] = i + 1000 * int(time.time())  # never cached
            trips.append(run_all(server.url, [trivial]))
    finally:
        server.stop()
    return args.prompts * 60 / seconds, statistics.median(trips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    import ray

    from nodes.sd.tiny import write_single_file

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        write_single_file("sd1", base / "tiny.safetensors", seed=0)
        ckpt = TXT2IMG["4"]["inputs"]["ckpt_name"]
        for name in ("local", "head1", "head2", "w0", "w1"):
            target = base / name / "models" / "checkpoints" / ckpt
            target.parent.mkdir(parents=True)
            target.write_bytes((base / "tiny.safetensors").read_bytes())
        rows = [("local server", measure(ServerConfig(data_dir=base / "local"), args))]
        ray.init(num_cpus=args.cpus, include_dashboard=False, configure_logging=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
        try:
            for workers in (1, 2):
                config = ServerConfig(data_dir=base / f"head{workers}", ray_address="local", ray_workers=workers,
                                      ray_worker_data_dir=str(base / "{worker}"))
                rows.append((f"Ray, {workers} worker{'s' * (workers > 1)}", measure(config, args)))
        finally:
            ray.shutdown()
    local_rate, local_trip = rows[0][1]
    print(f"txt2img {args.size}x{args.size}, {args.steps} steps, {args.prompts} prompts, {args.cpus} CPUs")
    print(f"{'set-up':<18} {'prompts/min':>12} {'vs local':>9} {'trivial round trip':>19}")
    for label, (rate, trip) in rows:
        print(f"{label:<18} {rate:12.1f} {rate / local_rate:8.2f}x {trip * 1000:16.0f} ms")
    print(f"dispatch overhead per prompt (Ray 1 worker − local, trivial prompt): "
          f"{(rows[1][1][1] - local_trip) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
