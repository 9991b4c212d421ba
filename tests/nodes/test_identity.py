"""Model identity: hashes remembered by (path, size, mtime, inode), the latentloom chunk, models found by hash."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.builtin.loaders import file_fingerprint
from nodes.identity import ModelHashes, known_hashes, model_hashes, model_uses, resolve_models
from nodes.images import read_png_texts
from nodes.paths import DataPaths
from nodes.sd.tiny import write_single_file


@pytest.fixture
def env(tmp_path):
    return Environment(DataPaths(tmp_path / "data"))


def test_hash_is_computed_once_and_remembered_by_path_size_mtime(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"A" * 5000)
    cache = tmp_path / "cache.json"
    hashes = ModelHashes(cache)
    first = hashes.sha256(path)
    assert first == hashlib.sha256(b"A" * 5000).hexdigest()
    stat = path.stat()
    # same size and mtime, other bytes: the remembered hash is returned (the file is not read again) ...
    path.write_bytes(b"B" * 5000)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert hashes.sha256(path) == first
    assert ModelHashes(cache).sha256(path) == first  # ... also by a new process reading the cache file
    assert json.loads(cache.read_text())["files"][str(path.resolve())]["sha256"] == first
    # a newer mtime means a changed file
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert hashes.sha256(path) == hashlib.sha256(b"B" * 5000).hexdigest()


def test_a_file_swapped_in_with_the_same_size_and_mtime_is_hashed_again(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"A" * 5000)
    hashes = ModelHashes(tmp_path / "cache.json")
    assert hashes.sha256(path) == hashlib.sha256(b"A" * 5000).hexdigest()
    stat = path.stat()
    swapped = tmp_path / "new.safetensors"
    swapped.write_bytes(b"B" * 5000)
    os.utime(swapped, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as `cp -p` or a sync tool leaves it
    os.replace(swapped, path)
    assert hashes.sha256(path) == hashlib.sha256(b"B" * 5000).hexdigest()  # another inode


def test_diffusers_folder_fingerprint_covers_its_weight_files(env):
    folder = env.paths.models("checkpoints") / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"A" * 100)
    before = file_fingerprint(env, "checkpoints", "pipe")
    stat = weights.stat()
    replacement = folder / "unet" / ".incoming"
    replacement.write_bytes(b"B" * 100)
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, weights)  # model_index.json untouched, same size and mtime
    assert file_fingerprint(env, "checkpoints", "pipe") != before
    assert file_fingerprint(env, "checkpoints", "pipe") == file_fingerprint(env, "checkpoints", "pipe")


def test_folder_hash_covers_names_and_contents(tmp_path):
    folder = tmp_path / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "w.bin").write_bytes(b"123")
    hashes = ModelHashes(tmp_path / "c.json")
    lines = (f"model_index.json {hashlib.sha256(b'{}').hexdigest()}\n"
             f"unet/w.bin {hashlib.sha256(b'123').hexdigest()}\n")
    assert hashes.sha256(folder) == hashlib.sha256(lines.encode()).hexdigest()
    (folder / "unet" / "w.bin").rename(folder / "unet" / "v.bin")
    assert hashes.sha256(folder) != hashlib.sha256(lines.encode()).hexdigest()


def test_model_uses_follow_links_upstream_of_a_node():
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
              "2": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "lora_name": "l.safetensors"}},
              "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
              "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "other.safetensors"}}}
    assert [(u.node, u.kind, u.name) for u in model_uses(prompt, ["3"])] == [
        ("1", "checkpoints", "a.safetensors"), ("2", "loras", "l.safetensors")]
    assert len(model_uses(prompt)) == 3


def test_model_uses_know_loaders_whose_input_names_mean_another_folder():
    prompt = {"1": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "vit.safetensors"}},
              "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "t5.safetensors"}},
              "3": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x.pth"}},
              "4": {"class_type": "SomethingElse", "inputs": {"model_name": "not a file"}}}
    assert [(u.node, u.kind, u.name) for u in model_uses(prompt)] == [
        ("1", "clip_vision", "vit.safetensors"), ("2", "text_encoders", "t5.safetensors"),
        ("3", "upscale_models", "4x.pth")]


DECODE = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}},
          "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 2}},
          "8": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["4", 2]}},
          "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "id"}}}


def test_saved_png_records_engine_device_and_model_hashes_then_resolves_by_hash_after_rename(env):
    checkpoint = write_single_file("sd1", env.paths.models("checkpoints") / "tiny.safetensors", seed=0)
    expected = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    registry = builtin_registry()
    report = validate(parse_workflow(DECODE), registry, env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p", prompt=DECODE)
    assert result.success, result.error
    files = [env.paths.output / i["filename"] for i in result.outputs["9"]["images"]]
    records = [json.loads(read_png_texts(f)["latentloom"]) for f in files]
    assert [r["image"] for r in records] == [{"node": "9", "batch_index": 0}, {"node": "9", "batch_index": 1}]
    record = records[0]
    assert record["models"] == [{"node": "4", "input": "ckpt_name", "kind": "checkpoints",
                                 "name": "tiny.safetensors", "sha256": expected}]
    assert record["engine"] == "latentloom" and record["device"]["type"] == "cpu"
    assert record["dtypes"] == {"unet": "float32", "text_encoder": "float32", "vae": "float32"}
    import diffusers, torch, transformers
    assert (record["torch"], record["diffusers"], record["transformers"]) == (
        torch.__version__, diffusers.__version__, transformers.__version__)
    assert list(read_png_texts(files[0])) == ["prompt", "latentloom"]

    checkpoint.rename(checkpoint.with_name("renamed.safetensors"))
    assert validate(parse_workflow(DECODE), registry, env).errors["4"][0].type == "value_not_in_list"
    resolution = resolve_models(DECODE, env, known_hashes(record))
    assert resolution.prompt["4"]["inputs"]["ckpt_name"] == "renamed.safetensors"
    assert DECODE["4"]["inputs"]["ckpt_name"] == "tiny.safetensors"  # the caller's dict is left alone
    assert resolution.messages() == [
        "node 4 ckpt_name: models/checkpoints/tiny.safetensors is not there; using renamed.safetensors, "
        f"which has the recorded sha256 {expected}"]
    again = Executor(env).execute(validate(parse_workflow(resolution.prompt), registry, env), prompt_id="q",
                                  prompt=resolution.prompt)
    assert again.success


def test_hash_in_meta_and_error_naming_name_and_hash(env):
    write_single_file("sd1", env.paths.models("checkpoints") / "present.safetensors", seed=0)
    sha = model_hashes(env).sha256(env.paths.models("checkpoints") / "present.safetensors")
    wf = json.loads(json.dumps(DECODE))
    wf["4"]["_meta"] = {"model_sha256": {"ckpt_name": sha}}
    assert resolve_models(wf, env).prompt["4"]["inputs"]["ckpt_name"] == "present.safetensors"
    wf["4"]["_meta"] = {"model_sha256": {"ckpt_name": "0" * 64}}
    resolution = resolve_models(wf, env)
    assert resolution.prompt == wf
    assert resolution.messages() == ["model 'tiny.safetensors' is not in models/checkpoints, and no file there "
                                     f"has sha256 {'0' * 64}"]
    errors = resolution.annotate(validate(parse_workflow(resolution.prompt), builtin_registry(), env).node_errors())
    (error,) = errors["4"]["errors"]
    assert error["type"] == "value_not_in_list" and error["message"] == "Model not found"
    assert error["details"] == f"ckpt_name: model 'tiny.safetensors' is not in models/checkpoints, and no file " \
                               f"there has sha256 {'0' * 64}"


def test_same_name_with_other_bytes_prefers_the_recorded_hash(env):
    folder = env.paths.models("checkpoints")
    (folder / "model.safetensors").write_bytes(b"retrained")
    (folder / "backup.safetensors").write_bytes(b"original")
    wf = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "model.safetensors"},
                "_meta": {"model_sha256": {"ckpt_name": hashlib.sha256(b"original").hexdigest()}}}}
    resolution = resolve_models(wf, env)
    assert resolution.prompt["1"]["inputs"]["ckpt_name"] == "backup.safetensors"
    assert "holds other bytes; using backup.safetensors" in resolution.messages()[0]
    (folder / "backup.safetensors").unlink()
    resolution = resolve_models(wf, env)
    assert resolution.prompt == wf and "running with it anyway" in resolution.messages()[0]


def test_a_swapped_diffusers_weight_file_reruns_the_loader_after_a_restart_with_disk_cache(env, tmp_path):
    from executor.disk_cache import output_cache
    from nodes.sd.tiny import write_diffusers_folder

    pipe = write_diffusers_folder("sd1", env.paths.models("checkpoints") / "pipe", seed=0)
    other = write_diffusers_folder("sd1", tmp_path / "other", seed=1)
    wf = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "pipe"}},
          "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
          "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}
    registry = builtin_registry()

    def run():  # a fresh process each time: empty memory, the same disk cache folder
        executor = Executor(Environment(env.paths), output_cache(10**8, tmp_path / "outputs", 10**8))
        report = validate(parse_workflow(wf), registry, executor.env)
        assert report.clean, report.to_comfy()
        return executor.execute(report, prompt_id="p")

    first = run()
    assert first.success and set(first.cached) == set()
    assert set(run().cached) >= {"2"}  # the conditioning came from disk
    weights = next((other / "text_encoder").glob("*.safetensors"))
    os.replace(weights, pipe / "text_encoder" / weights.name)  # model_index.json and the names unchanged
    third = run()
    assert third.success and "2" not in third.cached  # new weights: the loader and the encoder ran again
