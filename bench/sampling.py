"""Checkpoint loading and sampling speed on a full-size SD1.5 architecture: ours against diffusers.

No real weights exist here, so the script writes a random-weight checkpoint with SD1.5's exact architecture
(`bench/random_checkpoint.py`), cached under --cache-dir with a diffusers config folder, so reruns skip that.

Measured, each load in a fresh subprocess so that its peak RSS (VmHWM) is its own:
- load: `nodes.sd.checkpoint.load_checkpoint(path)` (CPU policy: fp32) against diffusers'
  `StableDiffusionPipeline.from_single_file(path, config=<local folder>, local_files_only=True,
  torch_dtype=float32)` (the local config folder keeps diffusers off the hub), and against the floor of any
  fp32 loader (read every tensor, convert it to fp32, nothing else); wall and CPU seconds and peak RSS, the
  best of --repeat alternating runs. Goals: ≥ 2× faster than diffusers, peak RSS ≤ 1.3× the fp32 model size.
- sampling: seconds per step (cfg 7, euler) at each --sizes and in each --precisions (fp32, bf16: every module in
  that dtype), `nodes.sd.ksampler.sample` on the UNet we loaded with our conditioning, against `StableDiffusionPipeline` built from the same modules; one subprocess, runs
  alternating, the fastest step-to-step interval of all runs (the first step, which pays warm-up, is not
  counted; contention from other users only ever lengthens a step).
  Goal: no slower than diffusers.

Machines are shared: the ratios mean more than the absolute numbers.

    .venv/bin/python bench/sampling.py [--cache-dir DIR] [--repeat 2] [--steps 5] [--sizes 64 256]
                                  [--precisions fp32 bf16] [--tiny]

--tiny runs the whole script on the tiny test architecture in seconds (a smoke test of the script itself).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.random_checkpoint import GIB, prepare, sd_scheduler  # noqa: E402 (after the path insert)

PROMPT, NEGATIVE = "a watercolor painting of a lighthouse at dawn", "blurry, low quality"
SEED, CFG = 42, 7.0


# ------------------------------------------------------------------------------------------ measured children

def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def rss_bytes() -> int:
    """This process's resident set now."""
    return _status_bytes("VmRSS")


def peak_rss_bytes() -> int:
    """This process's peak resident set. VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's RSS
    at fork time (it survives exec), so a big parent would inflate every child's figure."""
    return _status_bytes("VmHWM")


def module_bytes(modules) -> int:
    return sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])


def child_load(which: str, path: Path, config: Path) -> dict:
    """One load in this (fresh) process ("ours", "diffusers" or "floor"): wall and CPU seconds, RSS before,
    peak RSS, loaded bytes and dtypes."""
    import torch
    from diffusers import StableDiffusionPipeline

    from nodes.sd.checkpoint import load_checkpoint

    before = rss_bytes()
    start, cpu_start = time.perf_counter(), time.process_time()
    if which == "ours":
        loaded = load_checkpoint(path)
        modules = [loaded.unet, loaded.vae, *loaded.text_encoders.values()]
    elif which == "floor":
        modules = [conversion_floor(path)]
    else:
        pipe = StableDiffusionPipeline.from_single_file(
            str(path), config=str(config), local_files_only=True, torch_dtype=torch.float32,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
        modules = [pipe.unet, pipe.vae, pipe.text_encoder]
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    dtypes = sorted({str(t.dtype) for m in modules for t in [*m.parameters(), *m.buffers()] if t.is_floating_point()})
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "rss_before": before, "peak_rss": peak_rss_bytes(),
            "model_bytes": module_bytes(modules), "dtypes": dtypes}


def conversion_floor(path: Path):
    """The least any loader producing fp32 modules from this file does: read every tensor and convert it to
    fp32 (batch by batch, each mapping released, as our loader does), with no renaming and no modules."""
    import torch

    from nodes.sd.statedict import open_state_dict

    module = torch.nn.Module()
    for index, tensor in enumerate(open_state_dict(path).tensors(dtype=torch.float32).values()):
        module.register_buffer(f"t{index}", tensor)
    return module


def stamp() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def step_intervals(stamps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Wall and CPU time between consecutive step ends (the first step, with its warm-up, is not an interval)."""
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(stamps, stamps[1:])]


def child_sample(path: Path, sizes: list[int], steps: int, repeat: int, precision: str) -> dict:
    """Seconds per step at each size: our KSampler and diffusers' pipeline on the same loaded modules, every
    module in `precision` ("fp32" or "bf16": `--precision`'s names)."""
    import torch
    from diffusers import StableDiffusionPipeline

    from nodes.precision import DTYPE_NAMES
    from nodes.sd.checkpoint import load_checkpoint
    from nodes.sd.ksampler import sample
    from nodes.sd.text_encoder import TextEncoder
    from nodes.sd.tokenizer import load_clip_tokenizer

    loaded = load_checkpoint(path, dtype=getattr(torch, DTYPE_NAMES[precision]))
    encoder = TextEncoder("sd1", loaded.text_encoders)
    positive, negative = ([[encoding.cond, {"pooled_output": encoding.pooled}]]
                          for encoding in (encoder.encode(PROMPT), encoder.encode(NEGATIVE)))
    pipe = StableDiffusionPipeline(vae=loaded.vae, text_encoder=loaded.text_encoders["l"],
                                   tokenizer=load_clip_tokenizer(), unet=loaded.unet, scheduler=sd_scheduler(),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def ours(size: int) -> list[tuple[float, float]]:
        stamps: list[tuple[float, float]] = []
        sample(loaded.unet, latent=torch.zeros(1, 4, size // 8, size // 8), seed=SEED, steps=steps, cfg=CFG,
               sampler_name="euler", scheduler="normal", positive=positive, negative=negative,
               callback=lambda info: stamps.append(stamp()))
        return stamps

    def theirs(size: int) -> list[tuple[float, float]]:
        stamps: list[tuple[float, float]] = []

        def on_step(pipeline, i, t, kwargs):
            stamps.append(stamp())
            return kwargs

        pipe(PROMPT, negative_prompt=NEGATIVE, height=size, width=size, num_inference_steps=steps,
             guidance_scale=CFG, generator=torch.Generator().manual_seed(SEED), output_type="latent",
             callback_on_step_end=on_step)
        return stamps

    results = {}
    for size in sizes:
        runs = {"ours": [], "diffusers": []}
        for _ in range(repeat):  # alternate, so that load from other users of the CPU falls on both
            runs["ours"] += step_intervals(ours(size))
            runs["diffusers"] += step_intervals(theirs(size))
        # The fastest step of all runs: other users of the CPU only ever slow a step down.
        results[str(size)] = {name: [min(v[0] for v in values), min(v[1] for v in values)]
                              for name, values in runs.items()}
    return {"steps": results, "threads": torch.get_num_threads()}


def run_child(*args: str) -> dict:
    """Run this script in a child mode in a fresh interpreter; its last stdout line is the JSON result."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"child {args[:2]} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------- the report

def measure_loads(path: Path, config: Path, repeat: int) -> dict[str, dict]:
    runs: dict[str, list[dict]] = {"ours": [], "diffusers": [], "floor": []}
    for _ in range(repeat):
        for which in runs:
            runs[which].append(run_child("--child", "load", which, str(path), str(config)))
    # The best of the runs for each figure: other users of the machine only ever add to them.
    return {which: {**results[0], **{key: min(r[key] for r in results)
                                     for key in ("seconds", "cpu_seconds", "peak_rss", "rss_before")}}
            for which, results in runs.items()}


def report_loads(loads: dict[str, dict]) -> None:
    ours, theirs = loads["ours"], loads["diffusers"]
    fp32 = ours["model_bytes"] * 4 // _bytes_per_value(ours)
    print(f"\nload (fresh process each; model {ours['model_bytes'] / GIB:.2f} GiB as loaded {ours['dtypes']}, "
          f"fp32 size {fp32 / GIB:.2f} GiB)")
    print(f"{'':11}{'wall s':>8}{'CPU s':>8}{'peak RSS GiB':>14}{'RSS before':>12}{'peak-before':>13}"
          f"{'peak/fp32':>11}{'(peak-before)/fp32':>20}")
    for name, r in loads.items():
        print(f"{name:11}{r['seconds']:8.2f}{r['cpu_seconds']:8.2f}{r['peak_rss'] / GIB:14.2f}"
              f"{r['rss_before'] / GIB:12.2f}{(r['peak_rss'] - r['rss_before']) / GIB:13.2f}"
              f"{r['peak_rss'] / fp32:11.2f}{(r['peak_rss'] - r['rss_before']) / fp32:20.2f}")
    print(f"diffusers / ours: wall {theirs['seconds'] / ours['seconds']:.2f}x, CPU "
          f"{theirs['cpu_seconds'] / ours['cpu_seconds']:.2f}x (goal >= 2); our peak RSS / fp32 size "
          f"{ours['peak_rss'] / fp32:.2f} (goal <= 1.3)")
    floor = loads["floor"]
    print(f"floor = reading and converting every tensor to fp32, nothing else; above it: ours "
          f"{ours['cpu_seconds'] - floor['cpu_seconds']:+.2f} CPU s, diffusers "
          f"{theirs['cpu_seconds'] - floor['cpu_seconds']:+.2f} CPU s")


def _bytes_per_value(result: dict) -> int:
    return 2 if result["dtypes"] in (["torch.float16"], ["torch.bfloat16"]) else 4


def report_sampling(sampling: dict, steps: int, precision: str) -> None:
    print(f"\nsampling in {precision}, seconds per step (euler, cfg {CFG}, {steps} steps, batch 1, "
          f"{sampling['threads']} threads; fastest step of the runs; CPU = all threads)")
    print(f"{'size':>10}{'ours':>9}{'diffusers':>11}{'ratio':>7}{'ours CPU':>11}{'diff. CPU':>11}{'ratio':>7}")
    for size, r in sampling["steps"].items():
        (ours, ours_cpu), (theirs, theirs_cpu) = r["ours"], r["diffusers"]
        print(f"{size + 'x' + size:>10}{ours:9.3f}{theirs:11.3f}{ours / theirs:7.2f}"
              f"{ours_cpu:11.3f}{theirs_cpu:11.3f}{ours_cpu / theirs_cpu:7.2f}")
    print("goal: ratio (ours / diffusers) <= 1; other users of the CPU add noise of several per cent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "latentloom-bench")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs per measurement")
    parser.add_argument("--steps", type=int, default=5, help="sampling steps per run")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="image sizes in pixels")
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"],
                        help="model dtypes to sample in (each in its own process)")
    parser.add_argument("--tiny", action="store_true", help="the tiny test architecture (smoke test)")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-sampling", action="store_true")
    args = parser.parse_args()
    path, config = prepare(args.cache_dir, args.tiny)
    print(f"checkpoint {path} ({path.stat().st_size / GIB:.2f} GiB)")
    if not args.skip_load:
        report_loads(measure_loads(path, config, args.repeat))
    if not args.skip_sampling:
        sizes = [str(s) for s in args.sizes]
        for precision in args.precisions:
            report_sampling(run_child("--child", "sample", str(path), str(args.steps), str(args.repeat), precision,
                                      *sizes), args.steps, precision)


def child_main(argv: list[str]) -> None:
    mode, rest = argv[0], argv[1:]
    if mode == "load":
        result = child_load(rest[0], Path(rest[1]), Path(rest[2]))
    else:
        result = child_sample(Path(rest[0]), [int(s) for s in rest[4:]], int(rest[1]), int(rest[2]), rest[3])
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child_main(sys.argv[2:])
    else:
        main()
