"""Soak: many prompts from concurrent clients while websockets connect and drop; nothing may be lost, memory
must stay flat.

The real server (`main.py serve`, built-in nodes, plugins off) runs in its own process on a temporary data
folder. `--clients` HTTP clients submit `--prompts` prompts between them (each prompt a fresh random seed, so
every one really runs: PrimitiveInt → PreviewAny), each client listening on its own websocket, while a churn
task keeps opening websockets (under the submitters' ids and new ones) and dropping them after a few messages —
half closed politely, half cut. The run is split into `--phases` equal phases; after each the server's resident
memory is read from /proc once the executor's output cache is dropped (`POST /free`): every prompt is new work,
so that cache grows by design (bounded by its byte budget); what remains must stay flat. The run polls `/queue`,
not `/history`, whose JSON grows with the run (and with it the server's peak memory).

Figures printed: prompts accepted and finished (and any lost: accepted but missing from /history or not a
success), wall time and prompts per second, websocket connections opened and messages read, and the server's
RSS after each phase; "flat" compares the last phase with the second (the first includes warm-up).

    .venv/bin/python bench/soak.py [--prompts 200] [--clients 8] [--phases 4]
"""
from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, WSMsgType

ROOT = Path(__file__).resolve().parents[1]


def workflow() -> dict:
    return {"1": {"class_type": "PrimitiveInt", "inputs": {"value": "random"}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


def start_server(data_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--data-dir", data_dir, "--disable-plugins",
                             "serve", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT)
    for line in proc.stdout:
        if "serving on" in line:
            return proc, f"http://127.0.0.1:{port}"
    raise RuntimeError("the server did not start")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Soak:
    def __init__(self, url: str, session: ClientSession) -> None:
        self.url, self.session = url, session
        self.accepted: list[str] = []
        self.refused = 0
        self.sockets = 0
        self.messages = 0
        self.ws_errors: list[str] = []

    async def client(self, client_id: str, count: int) -> None:
        """Submit `count` prompts one after another, listening on a websocket meanwhile."""
        async with self.session.ws_connect(f"{self.url}/ws?clientId={client_id}") as ws:
            self.sockets += 1
            for _ in range(count):
                async with self.session.post(f"{self.url}/prompt",
                                             json={"prompt": workflow(), "client_id": client_id}) as resp:
                    body = await resp.json()
                if resp.status == 200:
                    self.accepted.append(body["prompt_id"])
                else:
                    self.refused += 1
                await self._drain(ws, 0.005)

    async def churn(self, client_ids: list[str], stop: asyncio.Event) -> None:
        """Open websockets and drop them, until `stop`."""
        while not stop.is_set():
            sid = random.choice(client_ids + [uuid.uuid4().hex])
            try:
                ws = await self.session.ws_connect(f"{self.url}/ws?clientId={sid}-churn")
                self.sockets += 1
                await self._drain(ws, random.uniform(0.0, 0.05))
                connection = ws._response.connection
                if random.random() < 0.5 or connection is None or connection.transport is None:
                    await ws.close()
                else:
                    connection.transport.abort()  # cut, no close frame
            except Exception as exc:  # noqa: BLE001 - counted: a refused or broken socket is a figure, not a crash
                self.ws_errors.append(type(exc).__name__)

    async def _drain(self, ws, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await ws.receive(timeout=left)
            except asyncio.TimeoutError:
                return
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            self.messages += 1


async def wait_idle(session: ClientSession, url: str, timeout: float = 300) -> None:
    """Until nothing is queued or running (polling `/queue`: the history grows with the run, its JSON too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with session.get(f"{url}/queue") as resp:
            queue = await resp.json()
        if not queue["queue_pending"] and not queue["queue_running"]:
            return
        await asyncio.sleep(0.2)


async def free_cache(session: ClientSession, url: str) -> None:
    """`POST /free {"free_memory": true}`, and wait until the (idle) worker has applied it."""
    async with session.post(f"{url}/free", json={"free_memory": True}):
        pass
    await asyncio.sleep(0.5)


async def soak(url: str, pid: int, prompts: int, clients: int, phases: int) -> None:
    async with ClientSession(timeout=ClientTimeout(total=120)) as session:
        soak = Soak(url, session)
        ids = [f"soak{i}" for i in range(clients)]
        rss = [rss_mib(pid)]
        started = time.perf_counter()
        per_phase = prompts // phases
        for _ in range(phases):
            stop = asyncio.Event()
            churn = [asyncio.create_task(soak.churn(ids, stop)) for _ in range(2)]
            counts = [per_phase // clients + (1 if i < per_phase % clients else 0) for i in range(clients)]
            await asyncio.gather(*(soak.client(cid, n) for cid, n in zip(ids, counts)))
            await wait_idle(session, url)
            stop.set()
            await asyncio.gather(*churn)
            await free_cache(session, url)
            rss.append(rss_mib(pid))
        wall = time.perf_counter() - started
        async with session.get(f"{url}/history") as resp:
            history = await resp.json()
    lost = [p for p in soak.accepted if p not in history or history[p]["status"]["status_str"] != "success"]
    print(f"prompts: {len(soak.accepted)} accepted, {soak.refused} refused, "
          f"{len(soak.accepted) - len(lost)} finished, {len(lost)} lost")
    print(f"wall: {wall:.1f} s, {len(soak.accepted) / wall:.1f} prompts/s from {clients} clients")
    print(f"websockets: {soak.sockets} opened, {soak.messages} messages read, {len(soak.ws_errors)} failed "
          f"({', '.join(sorted(set(soak.ws_errors))) or 'none'})")
    print(f"server RSS (MiB): start {rss[0]:.1f}; after each phase, output cache dropped: "
          + ", ".join(f"{r:.1f}" for r in rss[1:]))
    if len(rss) > 3:
        print(f"flat: {rss[-1] - rss[2]:+.1f} MiB from the second phase to the last")
    if lost:
        sys.exit(f"lost prompts: {lost[:10]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--phases", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ll-soak-") as data_dir:
        proc, url = start_server(data_dir)
        try:
            asyncio.run(soak(url, proc.pid, args.prompts, args.clients, args.phases))
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
