"""main.py: run, validate and nodes, as a user calls them (a subprocess, real files)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, data_dir):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


GOOD = {"1": {"class_type": "PrimitiveInt", "inputs": {"value": 41}, "_meta": {"title": "n"}},
        "2": {"class_type": "PrimitiveString", "inputs": {"value": "hello"}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}


def test_run_prints_outputs(tmp_path):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(GOOD))
    done = cli("run", str(path), data_dir=tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["41", "hello"]


def test_run_target_limits_outputs(tmp_path):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(GOOD))
    done = cli("run", str(path), "--target", "4", data_dir=tmp_path / "data")
    assert done.returncode == 0 and done.stdout.split() == ["hello"]


def test_validate_reports_every_error_and_exits_nonzero(tmp_path):
    bad = json.loads(json.dumps(GOOD))
    bad["1"]["inputs"]["value"] = "many"
    bad["4"]["inputs"] = {}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    done = cli("validate", str(path), data_dir=tmp_path / "data")
    assert done.returncode == 1
    assert "node 1 (PrimitiveInt): invalid_input_type" in done.stdout
    assert "node 4 (PreviewAny): required_input_missing" in done.stdout
    run = cli("run", str(path), data_dir=tmp_path / "data")
    assert run.returncode == 1 and "invalid_input_type" in run.stderr and "Traceback" not in run.stderr


def test_clean_validate(tmp_path):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(GOOD))
    done = cli("validate", str(path), data_dir=tmp_path / "data")
    assert done.returncode == 0 and done.stdout.strip() == "ok: outputs 3, 4"


def test_malformed_and_missing_files_get_clear_errors(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"1": {"class_type": "PrimitiveInt",')
    done = cli("run", str(path), data_dir=tmp_path / "data")
    assert done.returncode == 1 and "Invalid JSON" in done.stderr and "Traceback" not in done.stderr
    done = cli("validate", str(tmp_path / "nope.json"), data_dir=tmp_path / "data")
    assert done.returncode == 1 and "cannot read" in done.stderr
    path.write_text('{"1": {"class_type": "NoSuchNode", "inputs": {}}}')
    done = cli("validate", str(path), data_dir=tmp_path / "data")
    assert done.returncode == 1 and "NoSuchNode" in done.stdout


def test_nodes_lists_inputs_and_outputs(tmp_path):
    done = cli("nodes", data_dir=tmp_path / "data")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    at = lines.index("PrimitiveInt [utils/primitive] v1.0.0")
    assert lines[at + 1].split() == ["in", "value:", "INT"] and lines[at + 2].split() == ["out", "INT:", "INT"]


def test_run_resolves_random_seeds_like_the_server(tmp_path):
    wf = {"1": {"class_type": "PrimitiveInt", "inputs": {"value": "random"}},
          "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
          "3": {"class_type": "PrimitiveInt", "inputs": {"value": 7}, "_meta": {"control_after_generate": "increment"}},
          "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}}
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(wf))
    runs = [cli("run", str(path), data_dir=tmp_path / "data") for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    (a, inc_a), (b, inc_b) = (r.stdout.split() for r in runs)
    assert 0 <= int(a) <= 2**50 and a != b  # a fresh value each run (2**-50 chance of a false failure)
    assert inc_a == inc_b == "7"  # a one-off run starts an increment stream at the submitted value


def test_global_options_work_after_the_command_too(tmp_path):
    data = tmp_path / "after"
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "demo-checkpoint", "--data-dir", str(data),
                           "--disable-plugins"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (data / "models" / "checkpoints" / "latentloom-demo-tiny.safetensors").is_file()


def test_extra_model_paths_lists_models_and_refuses_a_bad_file(tmp_path):
    shared = tmp_path / "ComfyUI" / "models" / "checkpoints"
    shared.mkdir(parents=True)
    (shared / "shared.safetensors").write_bytes(b"x")
    yaml_file = tmp_path / "extra_model_paths.yaml"
    yaml_file.write_text("comfyui:\n  base_path: ComfyUI\n  checkpoints: models/checkpoints\n")
    wf = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "shared.safetensors"}},
          "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(wf))
    done = cli("validate", str(path), "--extra-model-paths", str(yaml_file), data_dir=tmp_path / "data")
    assert "value_not_in_list" not in done.stdout, done.stdout  # the name is one of the listed checkpoints
    yaml_file.write_text("comfyui: [1, 2]\n")
    done = cli("validate", str(path), "--extra-model-paths", str(yaml_file), data_dir=tmp_path / "data")
    assert done.returncode == 1 and "error: --extra-model-paths" in done.stderr and "Traceback" not in done.stderr
