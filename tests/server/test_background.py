"""`BackgroundServer`: a real server on a free port in a thread, started and stopped from synchronous code."""
from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest

from server.app import create_app
from server.background import BackgroundServer
from server.config import ServerConfig
from tests.server.conftest import chain, stub_registry


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.load(resp)


def test_serves_runs_prompts_and_cleans_up(tmp_path):
    app = create_app(ServerConfig(data_dir=tmp_path, port=0), stub_registry())
    with BackgroundServer(app) as server:
        assert server.port != 0 and server.url == f"http://127.0.0.1:{server.port}"
        prompt_id = post_json(server.url + "/prompt", {"prompt": chain(3.0)})["prompt_id"]
        for _ in range(500):
            with urllib.request.urlopen(f"{server.url}/history/{prompt_id}", timeout=10) as resp:
                history = json.load(resp)
            if history:
                break
            time.sleep(0.02)
        assert history[prompt_id]["status"]["status_str"] == "success"
    assert server.loop.is_closed()  # the app's clean-up ran to its end
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/system_stats", timeout=2)


def test_a_port_in_use_is_raised_in_the_caller(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = BackgroundServer(create_app(ServerConfig(data_dir=tmp_path, port=0), stub_registry()), port=port)
        with pytest.raises(OSError):
            server.start()
