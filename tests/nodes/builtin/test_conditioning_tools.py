"""Conditioning edits and latent batch nodes, through the real executor and sampler on the tiny checkpoint."""
from __future__ import annotations

import pytest
import torch

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.builtin.latent import LatentFromBatch, RepeatLatentBatch
from nodes.paths import DataPaths
from nodes.sd import tiny


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("conditioning-tools")))
    tiny.write_single_file("sd1", env.paths.models("checkpoints") / "sd1.safetensors")
    return env


def run(env, extra, positive, negative=("7", 0), latent=("5", 0), batch=1):
    wf = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.safetensors"}},
          "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": batch}},
          "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red boat", "clip": ["4", 1]}},
          "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
          "8": {"class_type": "CLIPTextEncode", "inputs": {"text": "a green field", "clip": ["4", 1]}},
          "3": {"class_type": "KSampler", "inputs": {
              "model": ["4", 0], "seed": 11, "steps": 3, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
              "positive": list(positive), "negative": list(negative), "latent_image": list(latent), "denoise": 1.0}},
          "9": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
          **extra}
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p", prompt=wf)
    assert result.success, result.error
    return result.values


def samples(values):
    return values["3"].outputs[0][0]["samples"]


def close(a, b):
    """Equal up to float32 rounding, relative to the magnitude (random tiny weights give latents ~100)."""
    return (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_combine_concatenates_and_averages(env):
    plain = run(env, {}, ("6", 0))
    same = run(env, {"10": {"class_type": "ConditioningCombine",
                            "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["6", 0]}}}, ("10", 0))
    combined = same["10"].outputs[0][0]
    assert len(combined) == 2 and combined[0] is same["6"].outputs[0][0][0]
    # two equal entries average to the one: the same image up to float rounding of the batched UNet call
    assert close(samples(same), samples(plain))
    mixed = run(env, {"10": {"class_type": "ConditioningCombine",
                             "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["8", 0]}}}, ("10", 0))
    assert (samples(mixed) - samples(plain)).abs().max() > 1e-3


def test_timestep_range(env):
    def ranged(start, end):
        return {"class_type": "ConditioningSetTimestepRange",
                "inputs": {"conditioning": ["6", 0], "start": start, "end": end}}

    plain = run(env, {}, ("6", 0))
    whole = run(env, {"10": ranged(0.0, 1.0)}, ("10", 0))
    (cond, extras), = whole["10"].outputs[0][0]
    assert (extras["start_percent"], extras["end_percent"]) == (0.0, 1.0)
    assert "start_percent" not in whole["6"].outputs[0][0][0][1]  # the cached input is not changed
    assert torch.equal(samples(whole), samples(plain))
    # the boat for the first half of the schedule, the field for the rest: neither of them alone
    split = run(env, {"10": ranged(0.0, 0.5),
                      "11": {"class_type": "ConditioningSetTimestepRange",
                             "inputs": {"conditioning": ["8", 0], "start": 0.5, "end": 1.0}},
                      "12": {"class_type": "ConditioningCombine",
                             "inputs": {"conditioning_1": ["10", 0], "conditioning_2": ["11", 0]}}}, ("12", 0))
    field = run(env, {}, ("8", 0))
    assert min((samples(split) - samples(plain)).abs().max(), (samples(split) - samples(field)).abs().max()) > 1e-3


def test_zero_out(env):
    values = run(env, {"10": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["7", 0]}}},
                 ("6", 0), negative=("10", 0))
    (cond, extras), = values["10"].outputs[0][0]
    (given, given_extras), = values["7"].outputs[0][0]
    assert cond.shape == given.shape and not cond.any() and not extras["pooled_output"].any()
    assert given.abs().sum() > 0 and given_extras["pooled_output"].abs().sum() > 0  # inputs untouched
    assert (samples(values) - samples(run(env, {}, ("6", 0)))).abs().max() > 1e-3


def test_latent_from_batch_samples_like_the_whole_batch(env):
    whole = samples(run(env, {}, ("6", 0), batch=3))
    one = run(env, {"10": {"class_type": "LatentFromBatch", "inputs": {"samples": ["5", 0], "batch_index": 1,
                                                                        "length": 1}}},
              ("6", 0), latent=("10", 0), batch=3)
    assert one["10"].outputs[0][0]["batch_index"] == [1]
    assert close(samples(one)[0], whole[1])  # item 1 got draw 1 of the seed's noise, as in the batch


def test_repeat_and_take_keep_noise_bookkeeping():
    latent = {"samples": torch.arange(2 * 4.0).reshape(2, 4, 1, 1), "batch_index": [2, 3],
              "noise_mask": torch.tensor([0.0, 1.0]).reshape(2, 1, 1, 1)}
    out = RepeatLatentBatch(samples=latent, amount=3).run(None)
    assert out["samples"].shape == (6, 4, 1, 1) and torch.equal(out["samples"][4:], latent["samples"])
    assert out["batch_index"] == [2, 3, 4, 5, 6, 7]
    assert out["noise_mask"].flatten().tolist() == [0, 1, 0, 1, 0, 1]
    taken = LatentFromBatch(samples=out, batch_index=3, length=10).run(None)  # clamped to what is there
    assert taken["batch_index"] == [5, 6, 7] and taken["noise_mask"].flatten().tolist() == [1, 0, 1]
    last = LatentFromBatch(samples=latent, batch_index=9, length=1).run(None)
    assert last["batch_index"] == [3] and torch.equal(last["samples"], latent["samples"][1:])
    plain = LatentFromBatch(samples={"samples": torch.zeros(3, 4, 1, 1)}, batch_index=1, length=2).run(None)
    assert plain["batch_index"] == [1, 2] and "noise_mask" not in plain
