"""The disk tier: what it writes and reads back, its byte budget, damaged files, and runs across restarts."""
from __future__ import annotations

import os

import pytest
import torch

from executor.cache import CacheEntry, MemoryCache
from executor.disk_cache import DiskCache, TieredCache, decode, encode, output_cache
from executor.run import Executor
from tests.executor import stub_nodes
from tests.executor.test_run import diamond

KEY_A, KEY_B, KEY_C = ("a" * 64), ("b" * 64), ("c" * 64)


def entry(outputs, ui=None) -> CacheEntry:
    return CacheEntry(outputs, ui, 0)


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_sd_values_round_trip_exactly(tmp_path):
    conditioning = [[torch.randn(1, 77, 8), {"pooled_output": torch.randn(1, 8), "width": 512, "note": None}]]
    latent = {"samples": torch.randn(1, 4, 8, 8, dtype=torch.float16), "batch_index": [0]}
    image = torch.rand(1, 16, 16, 3)
    outputs = [[conditioning], [latent], [image, image[:, :8]], [("a", 1.5, True)]]
    disk = DiskCache(tmp_path, 10**8)
    assert disk.put(KEY_A, entry(outputs, {"text": ["hi"]}))
    back = DiskCache(tmp_path, 10**8).get(KEY_A)  # a new instance: as after a restart
    assert back is not None and same(back.outputs, outputs) and back.ui == {"text": ["hi"]}
    assert back.nbytes > image.nelement() * 4


def test_objects_are_not_written(tmp_path):
    disk = DiskCache(tmp_path, 10**8)
    assert not disk.put(KEY_A, entry([[object()]]))
    assert not disk.put(KEY_B, entry([[{1: torch.zeros(1)}]]))  # non-string dict keys
    assert len(disk) == 0 and list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError):
        encode(stub_nodes, {})


def test_encoding_keeps_structure_unambiguous():
    tensors = {}
    value = [{"$t": "0"}, ("x",), [], {}]
    assert decode(encode(value, tensors), tensors) == value


def test_budget_evicts_least_recently_used(tmp_path):
    disk = DiskCache(tmp_path, 3 * 4096 + 2000)
    for n, key in enumerate((KEY_A, KEY_B)):
        disk.put(key, entry([[torch.zeros(1024)]]))
        os.utime(tmp_path / f"{key}.safetensors", (1000 + n, 1000 + n))
    assert disk.get(KEY_A) is not None  # A is now the most recently used
    disk.put(KEY_C, entry([[torch.zeros(1024)]]))
    disk.put("d" * 64, entry([[torch.zeros(1024)]]))
    assert KEY_B not in disk and KEY_A in disk and disk.total_bytes <= disk.max_bytes
    assert not (tmp_path / f"{KEY_B}.safetensors").exists()
    assert not disk.put("e" * 64, entry([[torch.zeros(10**5)]]))  # bigger than the whole budget


def test_damaged_file_is_a_miss_and_is_removed(tmp_path):
    disk = DiskCache(tmp_path, 10**8)
    disk.put(KEY_A, entry([[torch.ones(64)]]))
    path = tmp_path / f"{KEY_A}.safetensors"
    path.write_bytes(path.read_bytes()[:40])
    assert disk.get(KEY_A) is None and not path.exists() and KEY_A not in disk


def test_only_cache_keys_name_files(tmp_path):
    disk = DiskCache(tmp_path, 10**8)
    with pytest.raises(ValueError):
        disk.put("../escape", entry([[1]]))
    (tmp_path / "notes.safetensors").write_bytes(b"x")
    assert len(DiskCache(tmp_path, 10**8)) == 0  # files that are not entries are ignored


def test_outputs_survive_a_restart(registry, env, tmp_path):
    from executor.validate import validate
    from executor.workflow import parse_workflow

    def run(cache):
        stub_nodes.RUNS.clear()
        executor = Executor(env, cache)
        return executor.execute(validate(parse_workflow(diamond()), registry, env), prompt_id="p")

    first = run(output_cache(10**8, tmp_path / "outputs", 10**8))
    assert first.success and [name for name, _ in stub_nodes.RUNS] != []
    # a new process: empty memory, same folder
    second = run(output_cache(10**8, tmp_path / "outputs", 10**8))
    assert stub_nodes.RUNS == [] and second.outputs == first.outputs
    assert set(second.cached) == {"1", "2", "3", "4", "5"}
    # memory only: everything runs again
    assert isinstance(output_cache(10**8, tmp_path / "outputs", 0), MemoryCache)
    run(output_cache(10**8, tmp_path / "outputs", 0))
    assert len(stub_nodes.RUNS) == 5


def test_a_vanished_entry_runs_its_node_and_what_it_needs(registry, env, tmp_path):
    from executor.validate import validate
    from executor.workflow import parse_workflow

    cache = TieredCache(MemoryCache(10**8), DiskCache(tmp_path, 10**8))
    executor = Executor(env, cache)
    report = validate(parse_workflow(diamond()), registry, env)
    executor.execute(report, prompt_id="p")
    cache.clear()  # memory gone (POST /free); the disk tier stays
    for path in tmp_path.glob("*.safetensors"):  # ...but now the output node's entry is damaged
        if cache.disk.get(path.name.removesuffix(".safetensors")).ui is not None:
            path.write_bytes(b"garbage")
    stub_nodes.RUNS.clear()
    result = executor.execute(report, prompt_id="q")
    assert result.success and [name for name, _ in stub_nodes.RUNS] == ["Show"]
    assert result.outputs["5"] == {"text": ["16.0"]}
