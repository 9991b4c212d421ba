"""Server throughput: POST /prompt of a fully cached workflow, and progress fan-out to 100 websocket clients.

Each server runs in its own process (as in production; the client does not share its GIL) on 127.0.0.1:
- the latentloom app (data in a temporary folder, this file's two nodes as its registry);
- a reference in the same run: a bare aiohttp app with a JSON echo route and a websocket broadcast route — the
  floor any aiohttp server pays for the same traffic.

Figures printed:
1. POST /prompt, one request at a time: median and p95 latency; then `--concurrency` requests in flight:
   prompts per second accepted, and the time until the worker has run them all (they are all cache hits).
2. One prompt of `--steps` progress steps (`--delay` s apart) broadcast to `--clients` websockets: how long after
   the first socket the last one got each message (median and max over steps), and messages delivered per
   second; the reference broadcasts the same messages with a plain send loop.

    .venv/bin/python bench/server.py [--requests 500] [--concurrency 16] [--clients 100] [--steps 50]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import ClientSession, TCPConnector, web  # noqa: E402

from nodes.api import Context, Input, Node, node  # noqa: E402
from nodes.types import AnyType, socket  # noqa: E402

Number = socket("NUMBER")


@node(category="bench", version="1.0.0")
class Ticker(Node):
    """Report `steps` progress steps, `delay` seconds apart."""

    value: float = Input(0.0)
    steps: int = Input(10, ge=1, le=100_000)
    delay: float = Input(0.0, ge=0.0, le=10.0)

    def run(self, ctx: Context) -> Number:
        for i in range(self.steps):
            if self.delay:
                time.sleep(self.delay)
            ctx.progress(i + 1, self.steps)
        return self.value


@node(category="bench", version="1.0.0", output=True)
class Keep(Node):
    """Output node: shows its input."""

    value: AnyType = Input()

    def run(self, ctx: Context) -> None:
        ctx.show(text=[str(self.value)])


def workflow(steps: int = 1, delay: float = 0.0, value: float = 1.0) -> dict:
    return {"1": {"class_type": "Ticker", "inputs": {"value": value, "steps": steps, "delay": delay}},
            "2": {"class_type": "Keep", "inputs": {"value": ["1", 0]}}}


# --- the two servers (child processes) ---------------------------------------------------------------------------
def latentloom_app(data_dir: str) -> web.Application:
    from nodes.registry import Registry
    from server.app import create_app
    from server.config import ServerConfig

    registry = Registry()
    registry.add_module(sys.modules[__name__])
    return create_app(ServerConfig(data_dir=Path(data_dir)), registry)


def echo_app() -> web.Application:
    """The reference: JSON in, JSON out; and a broadcast to every connected websocket."""
    sockets: set[web.WebSocketResponse] = set()

    async def echo(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"prompt_id": "x", "number": 0, "node_errors": {}, "n": len(body)})

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        sockets.add(sock)
        await sock.send_str(json.dumps({"type": "status", "data": {}}))
        async for _ in sock:
            pass
        sockets.discard(sock)
        return sock

    async def broadcast(request: web.Request) -> web.Response:
        steps, delay = int(request.query["steps"]), float(request.query["delay"])

        async def run() -> None:
            for i in range(steps):
                await asyncio.sleep(delay)
                msg = json.dumps({"type": "progress", "data": {"value": i + 1, "max": steps, "prompt_id": "x",
                                                               "node": "1"}})
                for sock in list(sockets):
                    await sock.send_str(msg)

        asyncio.get_running_loop().create_task(run())
        return web.Response()

    app = web.Application()
    app.router.add_post("/prompt", echo)
    app.router.add_get("/ws", ws)
    app.router.add_post("/broadcast", broadcast)
    return app


async def serve_child(kind: str, data_dir: str) -> None:
    app = latentloom_app(data_dir) if kind == "latentloom" else echo_app()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print("PORT", site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await runner.cleanup()


def start_child(kind: str, data_dir: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, __file__, "--child", kind, data_dir], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("PORT"):
        proc.kill()
        raise RuntimeError(f"{kind} server did not start")
    return proc, f"http://127.0.0.1:{line.split()[1]}"


# --- measurements (this process) ---------------------------------------------------------------------------------
async def post_latency(session: ClientSession, url: str, n: int) -> list[float]:
    body = {"prompt": workflow()}
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with session.post(url + "/prompt", json=body) as resp:
            await resp.read()
            assert resp.status == 200, await resp.text()
        times.append(time.perf_counter() - t0)
    return times


async def post_throughput(session: ClientSession, url: str, n: int, concurrency: int) -> float:
    body = {"prompt": workflow()}
    remaining = iter(range(n))

    async def worker() -> None:
        for _ in remaining:
            async with session.post(url + "/prompt", json=body) as resp:
                await resp.read()
                assert resp.status == 200

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)


async def drain_time(session: ClientSession, url: str, since: float) -> float:
    while True:
        async with session.get(url + "/prompt") as resp:
            if (await resp.json())["exec_info"]["queue_remaining"] == 0:
                return time.perf_counter() - since
        await asyncio.sleep(0.01)


async def fan_out(session: ClientSession, url: str, clients: int, steps: int, delay: float,
                  reference: bool) -> tuple[list[float], float]:
    """Per-step spread (last arrival − first arrival) and messages delivered per second."""
    sockets = [await session.ws_connect(url + "/ws") for _ in range(clients)]
    for sock in sockets:
        await sock.receive()  # status
    arrivals: list[list[float]] = [[] for _ in range(steps)]

    async def read(sock) -> None:
        got = 0
        while got < steps:
            msg = json.loads((await sock.receive()).data)
            if msg["type"] == "progress":
                arrivals[msg["data"]["value"] - 1].append(time.perf_counter())
                got += 1

    readers = [asyncio.create_task(read(s)) for s in sockets]
    t0 = time.perf_counter()
    if reference:
        await session.post(url + f"/broadcast?steps={steps}&delay={delay}")
    else:
        async with session.post(url + "/prompt", json={"prompt": workflow(steps, delay, time.time())}) as resp:
            assert resp.status == 200, await resp.text()
    await asyncio.wait_for(asyncio.gather(*readers), 120)
    elapsed = max(max(a) for a in arrivals) - t0
    for sock in sockets:
        await sock.close()
    return [max(a) - min(a) for a in arrivals], clients * steps / elapsed


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


async def measure(args: argparse.Namespace, url: str, reference: bool) -> dict[str, float]:
    # no connection limit: 100 websockets must not starve the POSTs (aiohttp's default pool is 100)
    async with ClientSession(connector=TCPConnector(limit=0)) as session:
        await post_latency(session, url, 20)  # warm-up: the first prompt runs, the rest are cache hits
        latencies = sorted(await post_latency(session, url, args.requests))
        t0 = time.perf_counter()
        rate = await post_throughput(session, url, args.requests, args.concurrency)
        drained = 0.0 if reference else await drain_time(session, url, t0)
        if not reference:
            await drain_time(session, url, time.perf_counter())
        spreads, delivered = await fan_out(session, url, args.clients, args.steps, args.delay, reference)
    return {"median": statistics.median(latencies), "p95": latencies[int(0.95 * (len(latencies) - 1))],
            "rate": rate, "drained": drained, "spread_median": statistics.median(spreads),
            "spread_max": max(spreads), "delivered": delivered}


def report(name: str, r: dict[str, float], args: argparse.Namespace) -> None:
    print(f"{name}")
    print(f"  POST /prompt latency   median {ms(r['median'])}   p95 {ms(r['p95'])}")
    print(f"  POST /prompt rate      {r['rate']:8.0f} /s with {args.concurrency} in flight", end="")
    print(f"   (all {args.requests} run, cached, after {r['drained']:.2f} s)" if r["drained"] else "")
    print(f"  fan-out to {args.clients} sockets  spread median {ms(r['spread_median'])}   max {ms(r['spread_max'])}"
          f"   {r['delivered']:8.0f} msgs/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds between progress steps")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(serve_child(*args.child))
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as data:
        for kind in ("reference", "latentloom"):
            proc, url = start_child("echo" if kind == "reference" else "latentloom", data)
            try:
                results[kind] = asyncio.run(measure(args, url, kind == "reference"))
            finally:
                proc.stdin.close()
                proc.wait(30)
    report("reference: bare aiohttp (JSON echo route, plain websocket send loop)", results["reference"], args)
    report("latentloom (validation, seed resolution, SQLite queue, cached run, websocket hub)",
           results["latentloom"], args)
    ref, ours = results["reference"], results["latentloom"]
    print(f"ratio: latency ×{ours['median'] / ref['median']:.1f}, rate ×{ours['rate'] / ref['rate']:.2f}, "
          f"fan-out spread ×{ours['spread_median'] / max(ref['spread_median'], 1e-9):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
