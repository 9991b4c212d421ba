"""Device choice, dtype policy and the model manager's least-recently-used bookkeeping (nodes/sd/devices.py).

Only the CPU path runs here: the manager's eviction order is checked with an explicit budget on the CPU device,
where moving a module is a no-op.
"""

from __future__ import annotations

import pytest
import torch

from nodes.sd.devices import DtypePolicy, ModelManager, compute_device, dtype_policy, module_bytes


def test_cpu_policy_is_float32_everywhere():
    assert dtype_policy("cpu") == DtypePolicy(torch.float32, torch.float32, torch.float32)


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="an accelerator is present")
def test_compute_device_falls_back_to_cpu():
    assert compute_device() == torch.device("cpu")
    assert dtype_policy() == DtypePolicy.uniform(torch.float32)


def _linear(width: int) -> torch.nn.Module:
    return torch.nn.Linear(width, width, bias=False)


def test_module_bytes_counts_parameters_and_buffers():
    module = torch.nn.BatchNorm1d(8)  # weight, bias, running mean/var (float32) and a step counter (int64)
    assert module_bytes(module) == 4 * 8 * 4 + 8


def test_manager_evicts_least_recently_used_past_the_budget():
    a, b, c = _linear(16), _linear(16), _linear(16)
    manager = ModelManager("cpu", vram_budget=2 * module_bytes(a))
    pointer = a.weight.data_ptr()
    with manager.use(a) as used:
        assert used is a
    with manager.use(b):
        pass
    with manager.use(c):
        pass
    assert manager.resident() == [b, c]
    with manager.use(b):
        pass
    assert manager.resident() == [c, b]
    with manager.use(a):
        pass
    assert manager.resident() == [b, a]
    assert a.weight.data_ptr() == pointer  # on the CPU nothing is copied
    manager.offload_all()
    assert manager.resident() == []


def test_manager_runs_a_model_larger_than_the_budget_alone():
    small, big = _linear(4), _linear(64)
    manager = ModelManager("cpu", vram_budget=module_bytes(small) * 2)
    with manager.use(small):
        pass
    with manager.use(big):
        pass
    assert manager.resident() == [big]


def test_manager_never_evicts_a_module_in_use():
    a, b = _linear(16), _linear(16)
    manager = ModelManager("cpu", vram_budget=module_bytes(a))
    with manager.use(a):
        with manager.use(b):
            assert manager.resident() == [a, b]
            manager.offload_all()
            assert manager.resident() == [a, b]
    with manager.use(b):
        pass
    assert manager.resident() == [b]
