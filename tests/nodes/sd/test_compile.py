"""--compile: a compiled run equals the eager one, a second prompt reuses the compiled model, failures fall back.

The tests compile with the `aot_eager` backend (TorchDynamo's graph capture and AOTAutograd, run without code
generation): the same capture, guards and reuse as `inductor`, in a second instead of minutes. With `inductor`
the tiny UNet took 176 s to compile on this shared 2-core CPU and matched eager within 2e-6 (float32 reordering
in the generated kernels); `aot_eager` runs the same operators, so the images agree to 1e-6. (On this torch, `aot_eager`'s capture of the VAE
decoder fails — a GroupNorm input-contiguity check — and the decoder falls back to eager with its one warning;
that is the fallback working, and the UNet, which does compile, is what the equality checks.)
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Services
from nodes.builtin import builtin_registry
from nodes.sd.compile import is_compiled

from .test_pipeline_parity import run_ours
from .test_pipeline_parity import setup  # noqa: F401 (fixture: the tiny SD1 file in a data folder, its modules)

LATENT = {"5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}}


def execute(executor, env, wf, prompt_id="p"):
    report = validate(parse_workflow(wf), builtin_registry(), env)
    result = executor.execute(report, prompt_id=prompt_id)
    assert result.success, result.error
    return result.values["8"].outputs[0][0].numpy(), result.values["4"].outputs[0][0]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compiled_run_equals_eager_and_a_second_prompt_reuses_the_compiled_model(setup):
    env, _ = setup
    wf = run_ours(env, LATENT, ["5", 0])
    eager, _ = execute(Executor(env), env, wf)
    counter = CompileCounterWithBackend("aot_eager")
    compiled_env = dataclasses.replace(env, compile=counter, services=Services())
    executor = Executor(compiled_env)
    first, model = execute(executor, compiled_env, wf)
    assert is_compiled(model.unet) and counter.frame_count >= 1
    assert np.abs(first - eager).max() < 1e-6
    graphs = counter.frame_count
    second_wf = {**wf, "3": {**wf["3"], "inputs": {**wf["3"]["inputs"], "seed": 99}},
                 "6": {**wf["6"], "inputs": {**wf["6"]["inputs"], "text": "a different prompt"}}}
    second, again = execute(executor, compiled_env, second_wf, "q")
    assert again.unet is model.unet  # the cached loader output: the same compiled module
    assert counter.frame_count == graphs  # same model, dtype and shapes: nothing compiled again
    assert np.abs(second - first).max() > 1e-3  # it did run the new prompt


def test_a_failing_compiler_falls_back_to_eager_and_says_so_once(setup, caplog):
    env, _ = setup
    wf = run_ours(env, LATENT, ["5", 0])
    eager, _ = execute(Executor(env), env, wf)

    def broken(graph, example_inputs):
        raise RuntimeError("no C++ compiler here")

    failing_env = dataclasses.replace(env, compile=broken, services=Services())
    with caplog.at_level(logging.WARNING, logger="nodes.sd.compile"):
        image, _ = execute(Executor(failing_env), failing_env, wf)
    assert np.array_equal(image, eager)
    warnings = [r.getMessage() for r in caplog.records if r.name == "nodes.sd.compile"]
    assert len(warnings) == 2  # once for the UNet (not once per step), once for the VAE decoder
    assert warnings[0].startswith("torch.compile failed for UNet2DConditionModel.forward, running it eagerly")
    assert "no C++ compiler here" in warnings[0]
