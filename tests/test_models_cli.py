"""`main.py models pull|list` and `reproduce --pull`, as a user calls them, against a local file server."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nodes.images import read_png_texts
from nodes.sd.tiny import write_single_file
from tests.http_files import FileServer

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, data_dir, env=None):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=180, env={**os.environ, **(env or {})})


@pytest.fixture
def server():
    with FileServer() as srv:
        srv.files["lora.safetensors"] = b"0123456789" * 1000
        yield srv


def test_pull_a_url_and_list_it(server, tmp_path):
    data = tmp_path / "data"
    done = cli("models", "pull", f"{server.url}/files/lora.safetensors", "--kind", "loras", "--name", "mine.safetensors",
               data_dir=data)
    sha = hashlib.sha256(server.files["lora.safetensors"]).hexdigest()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"pulled: loras/mine.safetensors sha256 {sha}"
    listed = cli("models", "list", "--kind", "loras", data_dir=data)
    assert listed.stdout.splitlines() == [f"loras\tmine.safetensors\t10000\t{sha}"]
    refused = cli("models", "pull", "http://example.com/x.safetensors", data_dir=data)
    assert refused.returncode == 1 and "only https" in refused.stderr and "Traceback" not in refused.stderr


def test_pull_from_hugging_face_settings(server, tmp_path):
    hub = {"HF_ENDPOINT": server.url, "HF_HUB_OFFLINE": "0"}
    done = cli("models", "pull", "org/repo", "--file", "lora.safetensors", "--kind", "loras", data_dir=tmp_path,
               env=hub)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "models" / "loras" / "lora.safetensors").read_bytes() == server.files["lora.safetensors"]
    offline = cli("models", "pull", "org/repo/lora.safetensors", data_dir=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 1 and "HF_HUB_OFFLINE" in offline.stderr


def test_pull_for_a_ui_workflow_fetches_what_is_missing_and_names_what_it_cannot(server, tmp_path):
    url = f"{server.url}/files/lora.safetensors"
    workflow = {"nodes": [
        {"id": 1, "type": "LoraLoader", "properties": {"models": [
            {"name": "style.safetensors", "url": url, "directory": "loras"}]}},
        {"id": 2, "type": "CheckpointLoaderSimple", "properties": {"models": [
            {"name": "unknown.safetensors", "directory": "checkpoints"}]}}],
        "links": [], "models": [{"name": "style.safetensors", "directory": "loras",
                                 "hash": hashlib.sha256(server.files["lora.safetensors"]).hexdigest(),
                                 "hash_type": "SHA256"}]}
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(workflow))
    done = cli("models", "pull", "--for", str(path), data_dir=tmp_path / "data")
    assert done.returncode == 1
    assert "pulled: loras/style.safetensors" in done.stdout
    assert "checkpoints/unknown.safetensors: the file says nowhere where to get it" in done.stderr
    assert (tmp_path / "data" / "models" / "loras" / "style.safetensors").exists()
    # the hash in the file's models list was checked: a server sending other bytes is refused
    server.files["lora.safetensors"] = b"tampered"
    (tmp_path / "data" / "models" / "loras" / "style.safetensors").unlink()
    again = cli("models", "pull", "--for", str(path), data_dir=tmp_path / "data")
    assert "loras/style.safetensors" in again.stderr and "is not the expected" in again.stderr


def test_a_saved_image_records_where_its_model_came_from_and_reproduce_pull_fetches_it(server, tmp_path):
    write_single_file("sd1", tmp_path / "tiny.safetensors", seed=0)
    server.files["tiny.safetensors"] = (tmp_path / "tiny.safetensors").read_bytes()
    data = tmp_path / "data"
    url = f"{server.url}/files/tiny.safetensors"
    assert cli("models", "pull", url, data_dir=data).returncode == 0
    workflow = json.loads((ROOT / "workflows" / "txt2img.json").read_text())
    loader = next(n for n in workflow.values() if n["class_type"] == "CheckpointLoaderSimple")
    loader["inputs"]["ckpt_name"] = "tiny.safetensors"
    (tmp_path / "wf.json").write_text(json.dumps(workflow))
    run = cli("run", str(tmp_path / "wf.json"), data_dir=data)
    assert run.returncode == 0, run.stderr
    image = Path(run.stdout.split()[0])
    record = json.loads(read_png_texts(image)["latentloom"])
    assert [m["source"] for m in record["models"] if m["name"] == "tiny.safetensors"] == [url]
    (data / "models" / "checkpoints" / "tiny.safetensors").unlink()
    without = cli("reproduce", str(image), data_dir=data)
    assert without.returncode == 1
    requests_before = len(server.requests)
    done = cli("reproduce", str(image), "--pull", data_dir=data)
    assert done.returncode == 0, done.stderr
    assert "pulled: checkpoints/tiny.safetensors" in done.stdout and done.stdout.splitlines()[-1].startswith("match")
    assert len(server.requests) == requests_before + 1
