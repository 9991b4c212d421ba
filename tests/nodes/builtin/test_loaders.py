"""Loader nodes on real tiny checkpoint files: CheckpointLoaderSimple, VAELoader, and their errors."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths
from nodes.sd import original_layout, tiny


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("loaders")))
    tiny.write_single_file("sd1", env.paths.models("checkpoints") / "tiny.safetensors", seed=0)
    vae = tiny.build_tiny("sd1", seed=7).vae  # a different VAE than the checkpoint's
    bare = original_layout.vae_to_original(vae.state_dict(), vae.config)
    bare = {k.removeprefix("first_stage_model."): v.contiguous() for k, v in bare.items()}
    save_file(bare, str(env.paths.models("vae") / "other.safetensors"))
    return env


def run(env, wf):
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    return Executor(env).execute(report, prompt_id="p")


def decode_with(vae_link):
    return {"4": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": "tiny.safetensors"}},
            "2": {"class_type": "VAELoader", "inputs": {"vae_name": "other.safetensors"}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": vae_link}},
            "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}}


def test_vae_loader_loads_a_standalone_vae(env):
    separate = run(env, decode_with(["2", 0]))
    assert separate.success, separate.error
    handle = separate.values["2"].outputs[0][0]
    expected = tiny.build_tiny("sd1", seed=7).vae.state_dict()
    assert all(torch.equal(handle.vae.state_dict()[k], v) for k, v in expected.items())
    own = run(env, decode_with(["4", 2])).values["8"].outputs[0][0]
    other = separate.values["8"].outputs[0][0]
    assert own.shape == other.shape and own.shape[-1] == 3 and not torch.equal(own, other)


def test_checkpoint_loader_outputs_and_lists(env):
    info = builtin_registry().object_info(env)
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == ["tiny.safetensors"]
    assert info["CheckpointLoaderSimple"]["output"] == ["MODEL", "CLIP", "VAE"]
    assert info["VAELoader"]["input"]["required"]["vae_name"][0] == ["other.safetensors", "pixel_space"]


def test_broken_checkpoint_fails_the_node_with_the_file_named(env):
    bad = env.paths.models("checkpoints") / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    wf = decode_with(["4", 2])
    wf["4"]["inputs"]["ckpt_name"] = "broken.safetensors"
    result = run(env, wf)
    assert result.status == "error" and result.error.node_id == "4"
    assert "broken.safetensors" in result.error.exception_message
    bad.unlink()


def test_a_replaced_checkpoint_is_reloaded(env, tmp_path):
    executor = Executor(env)
    wf = decode_with(["4", 2])
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert executor.execute(report, prompt_id="a").success
    assert executor.execute(report, prompt_id="b").executed == []
    tiny.write_single_file("sd1", env.paths.models("checkpoints") / "tiny.safetensors", seed=3)
    assert "4" in executor.execute(report, prompt_id="c").executed


def test_pickle_checkpoints_need_the_explicit_opt_in(env):
    state = tiny.original_state_dict(tiny.build_tiny("sd1", seed=0))
    torch.save({"state_dict": state}, env.paths.models("checkpoints") / "old.ckpt")
    wf = decode_with(["4", 2])
    wf["4"]["inputs"]["ckpt_name"] = "old.ckpt"
    refused = run(env, wf)
    assert refused.status == "error" and "old.ckpt" in refused.error.exception_message
    assert "allow_pickle" in refused.error.exception_message or "opt-in" in refused.error.exception_message
    trusting = Environment(env.paths, allow_pickle=True)
    report = validate(parse_workflow(wf), builtin_registry(), trusting)
    assert Executor(trusting).execute(report, prompt_id="p").success
    (env.paths.models("checkpoints") / "old.ckpt").unlink()
