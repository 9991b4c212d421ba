"""`embedding:NAME` through the real executor on a tiny SD1 checkpoint: CLIPTextEncode's result, the cache
noticing a replaced embedding file, refusals as node errors, and the embedding hashes a saved image records."""
from __future__ import annotations

import hashlib
import logging
import os

import pytest
import torch
from safetensors.torch import save_file

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Context, Environment
from nodes.builtin import builtin_registry
from nodes.identity import run_record
from nodes.paths import DataPaths
from nodes.sd import tiny
from tests.nodes.sd._text_helpers import run_model
from tests.nodes.sd.test_embeddings import _chunk, _rows, _with_rows

WIDTH = 32  # the tiny checkpoints' CLIP width
A, PHOTO = 320, 1125


def _vectors(count: int, seed: int) -> torch.Tensor:
    return torch.randn(count, WIDTH, generator=torch.Generator().manual_seed(seed)) * 0.4


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("emb_nodes")))
    tiny.write_single_file("sd1", env.paths.models("checkpoints") / "sd1.safetensors")
    return env


def workflow(text: str) -> dict:
    return {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.safetensors"}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}},
            "9": {"class_type": "PreviewAny", "inputs": {"source": ["6", 0]}}}


def run(executor: Executor, text: str):
    report = validate(parse_workflow(workflow(text)), builtin_registry(), executor.env)
    assert report.clean, report.to_comfy()
    return executor.execute(report, prompt_id="p")


def cond_of(result) -> torch.Tensor:
    assert result.success, result.error
    return result.values["6"].outputs[0][0][0][0]


def reference(result, vectors: torch.Tensor) -> torch.Tensor:
    """The loaded checkpoint's CLIP-L with the vectors as extra token rows, run on "a <rows> photo"."""
    clip = result.values["4"].outputs[1][0]
    model = _with_rows(clip.encoder.models["l"], vectors)
    return run_model(model, [_chunk([A, *_rows(len(vectors)), PHOTO])]).last_hidden_state


def test_clip_text_encode_inserts_the_embedding_and_a_replaced_file_re_runs(env):
    path = env.paths.models("embeddings") / "style.safetensors"
    first = _vectors(3, seed=1)
    save_file({"emb_params": first}, path)
    executor = Executor(env)
    plain = cond_of(run(executor, "a photo"))
    result = run(executor, "a embedding:style photo")
    cond = cond_of(result)
    assert not torch.equal(cond, plain)
    assert torch.equal(cond, reference(result, first))

    again = run(executor, "a embedding:style photo")
    assert again.success and {"4", "6", "9"} <= set(again.cached)

    # Same size, new bytes and a new mtime: only the fingerprint's mtime tells the cache.
    second = _vectors(3, seed=2)
    stamp = path.stat().st_mtime_ns
    save_file({"emb_params": second}, path)
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    replaced = run(executor, "a embedding:style photo")
    assert "6" not in replaced.cached and "4" in replaced.cached
    assert torch.equal(cond_of(replaced), reference(replaced, second))


def test_missing_embedding_warns_and_encodes_the_text_without_it(env, caplog):
    executor = Executor(env)
    plain = cond_of(run(executor, "a photo"))
    with caplog.at_level(logging.WARNING, logger="nodes.sd.embeddings"):
        missing = cond_of(run(executor, "a embedding:not_there photo"))
    assert "embedding:not_there does not exist" in caplog.text
    assert torch.equal(missing, plain)
    # Adding the file later is noticed: the fingerprint recorded the name as missing.
    save_file({"emb_params": _vectors(2, seed=3)}, env.paths.models("embeddings") / "not_there.safetensors")
    added = run(executor, "a embedding:not_there photo")
    assert "6" not in added.cached and not torch.equal(cond_of(added), plain)


def test_refusals_fail_the_node_with_the_reason(env):
    torch.save({"string_to_param": {"*": _vectors(2, seed=4)}}, env.paths.models("embeddings") / "old.pt")
    executor = Executor(env)
    refused = run(executor, "a embedding:old photo")
    assert not refused.success and refused.error.node_id == "6"
    assert "pickle format" in refused.error.exception_message and "--allow-pickle" in refused.error.exception_message
    outside = run(executor, "a embedding:../checkpoints/sd1 photo")
    assert not outside.success and "unsafe path" in outside.error.exception_message
    env.allow_pickle = True
    try:
        allowed = run(executor, "a embedding:old photo")
        assert torch.equal(cond_of(allowed), reference(allowed, _vectors(2, seed=4)))
    finally:
        env.allow_pickle = False


def test_linked_text_fingerprints_the_whole_folder(env):
    from nodes.builtin.conditioning import CLIPTextEncode

    assert CLIPTextEncode.fingerprint({"text": "a photo"}, env) is None
    before = CLIPTextEncode.fingerprint({}, env)  # text comes from a link: any embedding may be named
    save_file({"emb_params": _vectors(1, seed=5)}, env.paths.models("embeddings") / "new.safetensors")
    assert CLIPTextEncode.fingerprint({}, env) != before


def test_saved_image_records_the_embedding_files_its_prompts_named(env):
    path = env.paths.models("embeddings") / "recorded.safetensors"
    save_file({"emb_params": _vectors(2, seed=6)}, path)
    prompt = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.safetensors"}},
              "6": {"class_type": "CLIPTextEncode",
                    "inputs": {"text": "a (embedding:recorded:1.2), embedding:absent", "clip": ["4", 1]}},
              "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "embedding:recorded.safetensors",
                                                               "clip": ["4", 1]}},
              "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "positive": ["6", 0],
                                                          "negative": ["7", 0]}},
              "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0]}}}
    ctx = Context(node_id="9", prompt_id="p", prompt=prompt, extra_data={}, env=env)
    models = run_record(ctx)["models"]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert [m for m in models if m["kind"] == "embeddings"] == [
        {"node": "6", "input": "text", "kind": "embeddings", "name": "recorded.safetensors", "sha256": sha},
        {"node": "7", "input": "text", "kind": "embeddings", "name": "recorded.safetensors", "sha256": sha},
    ]
