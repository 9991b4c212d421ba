"""VAEDecodeTiled and VAEEncodeTiled: their /object_info entries as ComfyUI 0.3.64 reports them, and a run on the
tiny checkpoint through the executor with one progress event per tile (the counts follow from the tile rules
written out in the comments: `nodes.sd.tiling`), ComfyUI's overlap clamp, and a clear error for an overlap that
no tile can hold. How close tiles come to the whole is tested in tests/nodes/sd/test_tiling.py."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from executor.events import Progress
from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths
from nodes.sd import tiny


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("latent")))
    tiny.write_single_file("sd1", env.paths.models("checkpoints") / "sd1.safetensors")
    pixels = np.random.default_rng(1).integers(0, 256, size=(32, 64, 3), dtype=np.uint8)
    PILImage.fromarray(pixels, "RGB").save(env.paths.input / "wide.png")
    return env


def test_object_info_matches_comfyui(env):
    info = builtin_registry().object_info(env)
    for name, first, kind, tile_step, verb, display in (
            ("VAEDecodeTiled", "samples", "LATENT", 32, "decode", "VAE Decode (Tiled)"),
            ("VAEEncodeTiled", "pixels", "IMAGE", 64, "encode", "VAE Encode (Tiled)")):
        entry = info[name]
        assert entry["input_order"]["required"] == [first, "vae", "tile_size", "overlap", "temporal_size",
                                                    "temporal_overlap"]
        required = entry["input"]["required"]
        assert required[first] == [kind] and required["vae"] == ["VAE"]
        assert required["tile_size"] == ["INT", {"default": 512, "min": 64, "max": 4096, "step": tile_step}]
        assert required["overlap"] == ["INT", {"default": 64, "min": 0, "max": 4096, "step": 32}]
        assert required["temporal_size"] == ["INT", {
            "default": 64, "min": 8, "max": 4096, "step": 4,
            "tooltip": f"Only used for video VAEs: Amount of frames to {verb} at a time."}]
        assert required["temporal_overlap"] == ["INT", {
            "default": 8, "min": 4, "max": 4096, "step": 4,
            "tooltip": "Only used for video VAEs: Amount of frames to overlap."}]
        assert (entry["category"], entry["display_name"], entry["python_module"], entry["output"]) == (
            "_for_testing", display, "nodes", ["IMAGE" if kind == "LATENT" else "LATENT"])


def tiled_workflow(encode_overlap):
    tiled = {"tile_size": 64, "temporal_size": 64, "temporal_overlap": 8}
    return {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd1.safetensors"}},
            "1": {"class_type": "LoadImage", "inputs": {"image": "wide.png"}},
            "2": {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": ["4", 2]}},
            "3": {"class_type": "VAEEncodeTiled",
                  "inputs": {"pixels": ["1", 0], "vae": ["4", 2], "overlap": encode_overlap, **tiled}},
            "5": {"class_type": "VAEDecodeTiled", "inputs": {"samples": ["2", 0], "vae": ["4", 2], "overlap": 64,
                                                              **tiled}},
            "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
            "7": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}}


def execute(env, wf):
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    executor = Executor(env)
    events = []
    executor.subscribe(events.append)
    return executor.execute(report, prompt_id="p", prompt=wf), events


def test_tiled_nodes_through_the_executor_report_each_tile(env):
    result, events = execute(env, tiled_workflow(0))
    assert result.success, result.error
    progress = {node: [(e.value, e.max) for e in events if isinstance(e, Progress) and e.node == node]
                for node in ("3", "5")}
    # Encode, 32×64 px, tile 64, overlap 0: 128×32 tiles → 2 across; 32×128 and 64×64 hold the image → 4 tiles.
    assert progress["3"] == [(n, 4) for n in range(1, 5)]
    # Decode, 4×8 cells: the overlap 64 is clamped to tile_size // 4 = 16 px = 2 cells (8 would not fit the 4-cell
    # tiles); 16×4 tiles → ⌈(8 − 2)/(4 − 2)⌉ = 3 across; 4×16 and 8×8 hold the latent → 5 tiles.
    assert progress["5"] == [(n, 5) for n in range(1, 6)]
    encoded = result.values["2"].outputs[0][0]["samples"]
    assert result.values["3"].outputs[0][0]["samples"].shape == encoded.shape == (1, 4, 4, 8)
    decoded = result.values["5"].outputs[0][0]
    assert decoded.shape == (1, 32, 64, 3) and 0 <= decoded.min() and decoded.max() <= 1


def test_an_overlap_no_tile_can_hold_is_a_clear_error(env):
    # 32 px of overlap on the 32-px-wide tiles that encoding also tries (ComfyUI fails there obscurely)
    result, _ = execute(env, tiled_workflow(32))
    assert result.status == "error" and result.error.node_id == "3"
    assert "overlap of 32 needs tiles larger than that" in result.error.exception_message
