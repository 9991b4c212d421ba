"""StateDict.tensors(dtype=…): converting while reading, batch by batch, without keeping the file's pages resident."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from nodes.sd import statedict
from nodes.sd.statedict import open_state_dict

REPO = Path(__file__).resolve().parents[3]


def test_conversion_in_batches_gives_every_tensor_converted(tmp_path, monkeypatch):
    generator = torch.Generator().manual_seed(0)
    stored = {f"w{i}": torch.randn(64, 32, generator=generator).half() for i in range(10)}
    stored["position_ids"] = torch.arange(77)[None]
    save_file(stored, str(tmp_path / "m.safetensors"))
    monkeypatch.setattr(statedict, "_CONVERT_BATCH_ELEMENTS", 3 * 64 * 32)  # four batches
    state = open_state_dict(tmp_path / "m.safetensors")
    converted = state.tensors(dtype=torch.float32)
    assert set(converted) == set(stored)
    for key, tensor in stored.items():
        expected = tensor.float() if tensor.is_floating_point() else tensor
        assert converted[key].dtype == expected.dtype and torch.equal(converted[key], expected)
    assert state.tensors(["w3"])["w3"].dtype == torch.float16  # without dtype: as stored


# VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's RSS at fork (it survives exec).
_PEAK_CHILD = textwrap.dedent("""
    import json, sys
    import torch
    from nodes.sd import statedict
    from nodes.sd.statedict import open_state_dict

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    statedict._CONVERT_BATCH_ELEMENTS = 2 * 2**20
    state = open_state_dict(sys.argv[1])
    before = status("VmRSS")
    tensors = state.tensors(dtype=torch.float32)
    increase = status("VmHWM") - before
    print(json.dumps({"increase": increase, "converted": sum(t.nbytes for t in tensors.values())}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_converting_load_peaks_at_the_converted_size_not_plus_the_file(tmp_path):
    # 96 MiB of fp16 → 192 MiB of fp32. Converting the whole file through one mapping peaks at 288 MiB more
    # (the touched fp16 pages stay resident until the mapping goes); batch by batch at 192 MiB plus a batch.
    tensors = {f"w{i}": torch.ones(2**20 * 2, dtype=torch.float16) for i in range(24)}
    save_file(tensors, str(tmp_path / "big.safetensors"))
    done = subprocess.run([sys.executable, "-c", _PEAK_CHILD, str(tmp_path / "big.safetensors")], cwd=REPO,
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["converted"] == 192 * 2**20
    assert result["increase"] < 1.15 * result["converted"], result
