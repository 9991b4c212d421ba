"""bench/gpu.py --dry-run: the whole GPU benchmark on the CPU with the tiny model, so it cannot rot unseen."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_measures_both_engines_and_writes_json(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--dry-run", "--repeat", "1",
                           "--out", str(out), "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["device"].startswith("cpu") and result["matmul_peak"] > 0
    for batch, row in result["throughput"].items():
        assert row["unet_step_flops"] > 0
        for engine in ("ours", "diffusers", "ours --compile"):
            # a whole batch of 64×64 RGB images (ours channels-last, diffusers' "pt" output channels-first)
            assert row[engine]["it_s"] > 0 and row[engine]["images"][0] == int(batch)
            assert sorted(row[engine]["images"][1:]) == [3, 64, 64]
    assert set(result["first_image_s"]) == {"ours", "diffusers"}
    assert "ours / diffusers it/s" in done.stdout and result["compile_backend"] == "aot_eager"
