"""GPU throughput of SD1.5 txt2img: ours against diffusers on the same GPU, in the same run.

What runs: the random-weight SD1.5 checkpoint of `bench/random_checkpoint.py` (written on the machine, ~2 GB),
loaded by our loader in the compute device's default precision (`--precision auto`: fp16 UNet and CLIP, bf16
VAE on a GPU with bf16). Both engines run on the same module objects, so only the pipelines differ: ours is
CLIPTextEncode's encoding, `ksampler.sample` (euler, normal) and our VAE decode; diffusers' is
`StableDiffusionPipeline` (Euler) built from those modules. diffusers assumes one dtype for all modules, so its
VAE gets the latent cast to the VAE's dtype (a forward pre-hook), as ours does.

Measured (512×512, 20 steps, cfg 7, batch 1 and 8, engines alternating --repeat times; best run kept, since
other work only slows a run down):
- it/s: sampling steps per second (step-to-step intervals; the first step's warm-up is not counted);
- images/s: batch / (encode + sample + decode) wall time;
- UNet MFU: the UNet FLOPs of one step (both CFG halves, counted by `torch.utils.flop_counter.FlopCounterMode`)
  × it/s, over a bf16 matmul peak measured in the same run (8192³ `torch.matmul`);
- peak VRAM: `torch.cuda.max_memory_allocated` during the run;
- time to first image: a fresh Python process from its start to the first decoded image (imports, load, encode,
  sample, decode); diffusers' loads the same file with `from_single_file` (local config folder, offline);
- ours with `--compile` too (a second copy of the modules through `nodes.sd.compile`, inductor), its compilation
  in the warm-up run of each batch size (not in the time to first image).
Writes --out (JSON) and prints a table.

    python bench/gpu.py [--out gpu-bench.json] [--repeat 2] [--cache-dir DIR]
    python bench/gpu.py --dry-run    # the whole script on the CPU with the tiny model in seconds (a smoke test)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.random_checkpoint import prepare, sd_scheduler  # noqa: E402 (after the path insert)

PROMPT, NEGATIVE = "a watercolor painting of a lighthouse at dawn", "blurry, low quality"
SEED, CFG = 42, 7.0
FULL = {"size": 512, "steps": 20, "batches": [1, 8], "matmul": 8192}
DRY = {"size": 64, "steps": 3, "batches": [1, 2], "matmul": 256}


def device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device, n: int) -> float:
    """Best bf16 matmul FLOP/s of n×n by n×n on `device`."""
    import torch

    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    best = float("inf")
    for _ in range(10):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(5):
            torch.matmul(a, b)
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / 5)
    return 2 * n**3 / best


def load(path: Path, device):
    """Our loader in the device's default precision, the modules moved to `device`."""
    from nodes.precision import Precision
    from nodes.sd.checkpoint import load_checkpoint

    loaded = load_checkpoint(path, dtype=Precision().policy(device))
    for module in (loaded.unet, loaded.vae, *loaded.text_encoders.values()):
        module.to(device)
    return loaded


def cast_vae_input(pipe) -> None:
    """diffusers hands the VAE the UNet's dtype; give it the VAE's own (ours casts the same way)."""
    dtype = pipe.vae.dtype
    pipe.vae.post_quant_conv.register_forward_pre_hook(lambda _, args: (args[0].to(dtype),))


def engines(loaded, device):
    """{"ours": run(size, steps, batch, on_step), "diffusers": …}, each returning the decoded images."""
    import torch
    from diffusers import StableDiffusionPipeline

    from nodes.sd import vae as vae_ops
    from nodes.sd.ksampler import sample
    from nodes.sd.text_encoder import TextEncoder
    from nodes.sd.tokenizer import load_clip_tokenizer

    encoder = TextEncoder("sd1", loaded.text_encoders)
    pipe = StableDiffusionPipeline(vae=loaded.vae, text_encoder=loaded.text_encoders["l"],
                                   tokenizer=load_clip_tokenizer(), unet=loaded.unet, scheduler=sd_scheduler(),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    cast_vae_input(pipe)

    @torch.inference_mode()
    def ours(size: int, steps: int, batch: int, on_step):
        positive, negative = ([[e.cond, {"pooled_output": e.pooled}]]
                              for e in (encoder.encode(PROMPT), encoder.encode(NEGATIVE)))
        latent = sample(loaded.unet, latent=torch.zeros(batch, 4, size // 8, size // 8), seed=SEED, steps=steps,
                        cfg=CFG, sampler_name="euler", scheduler="normal", positive=positive, negative=negative,
                        callback=lambda info: on_step())
        return vae_ops.decode(loaded.vae, latent)

    def theirs(size: int, steps: int, batch: int, on_step):
        def callback(pipeline, i, t, kwargs):
            on_step()
            return kwargs

        return pipe(PROMPT, negative_prompt=NEGATIVE, height=size, width=size, num_inference_steps=steps,
                    guidance_scale=CFG, num_images_per_prompt=batch, output_type="pt",
                    generator=torch.Generator().manual_seed(SEED), callback_on_step_end=callback).images

    return {"ours": ours, "diffusers": theirs}


def unet_step_flops(loaded, device, size: int, batch: int) -> int:
    """FLOPs of one sampling step: one UNet call on both CFG halves of `batch` images."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    unet = loaded.unet
    x = torch.zeros(2 * batch, 4, size // 8, size // 8, device=device, dtype=unet.dtype)
    context = torch.zeros(2 * batch, 77, unet.config.cross_attention_dim, device=device, dtype=unet.dtype)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        unet(x, torch.full((2 * batch,), 500.0, device=device), encoder_hidden_states=context)
    return counter.get_total_flops()


def measure_run(run, device, size: int, steps: int, batch: int) -> dict:
    import torch

    stamps: list[float] = []

    def on_step():
        synchronize(device)
        stamps.append(time.perf_counter())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    images = run(size, steps, batch, on_step)
    synchronize(device)
    seconds = time.perf_counter() - start
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"seconds": seconds, "it_s": 1.0 / statistics.median(intervals), "images_s": batch / seconds,
            "peak_vram": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
            "images": list(images.shape)}


def throughput(path: Path, device, shape: dict, repeat: int, compile_backend: str | None) -> dict:
    from nodes.sd.compile import compile_model

    loaded = load(path, device)
    runs = engines(loaded, device)
    if compile_backend is not None:  # a second copy of the modules, compiled as `--compile` does
        compiled = load(path, device)
        compile_model(compiled.unet, backend=compile_backend)
        compile_model(compiled.vae, "decode", backend=compile_backend)
        runs["ours --compile"] = engines(compiled, device)["ours"]
    results = {}
    for batch in shape["batches"]:
        for run in runs.values():  # warm-up at this batch: kernels, allocator, autotuning, compilation
            run(shape["size"], 2, batch, lambda: None)
        flops = unet_step_flops(loaded, device, shape["size"], batch)
        best: dict[str, dict] = {}
        for _ in range(repeat):  # alternating, so that other work on the machine falls on both
            for name, run in runs.items():
                result = measure_run(run, device, shape["size"], shape["steps"], batch)
                if name not in best or result["seconds"] < best[name]["seconds"]:
                    best[name] = result
        results[str(batch)] = {"unet_step_flops": flops, **best}
    return results


def first_image(which: str, path: Path, device, shape: dict) -> float:
    """Seconds from a fresh interpreter's start to its first decoded image."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    start = time.time()
    done = subprocess.run([sys.executable, __file__, "--child", which, str(path), str(device), json.dumps(shape),
                           repr(start)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"first-image child {which} failed:\n{done.stderr[-4000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def child_first_image(which: str, path: Path, device_text: str, shape: dict, start: float) -> float:
    import torch
    from diffusers import StableDiffusionPipeline

    device = torch.device(device_text)
    if which == "ours":
        loaded = load(path, device)
        engines(loaded, device)["ours"](shape["size"], shape["steps"], 1, lambda: None)
    else:
        from nodes.precision import Precision

        policy = Precision().policy(device)
        pipe = StableDiffusionPipeline.from_single_file(
            str(path), config=str(path.with_name(path.stem + "-diffusers-config")), local_files_only=True,
            torch_dtype=policy.unet, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        ).to(device)
        pipe.vae.to(policy.vae)
        cast_vae_input(pipe)
        pipe.set_progress_bar_config(disable=True)
        pipe(PROMPT, negative_prompt=NEGATIVE, height=shape["size"], width=shape["size"],
             num_inference_steps=shape["steps"], guidance_scale=CFG, output_type="pt")
    synchronize(device)
    return time.time() - start


def report(result: dict) -> None:
    shape = result["shape"]
    print(f"\n{result['device']}: SD1.5 {shape['size']}x{shape['size']}, {shape['steps']} steps, cfg {CFG}, "
          f"dtypes {result['dtypes']}; bf16 matmul peak {result['matmul_peak'] / 1e12:.3g} TFLOP/s")
    print(f"{'batch':>5} {'engine':<15}{'it/s':>8}{'images/s':>10}{'UNet MFU':>10}{'peak VRAM GiB':>15}")
    for batch, row in result["throughput"].items():
        for name in [key for key in row if key != "unet_step_flops"]:
            r = row[name]
            mfu = row["unet_step_flops"] * r["it_s"] / result["matmul_peak"]
            vram = f"{r['peak_vram'] / 2**30:.2f}" if r["peak_vram"] is not None else "-"
            print(f"{batch:>5} {name:<15}{r['it_s']:8.2f}{r['images_s']:10.3f}{mfu:10.1%}{vram:>15}")
        print(f"{'':>5} ours / diffusers it/s: {row['ours']['it_s'] / row['diffusers']['it_s']:.2f}"
              + (f", with --compile {row['ours --compile']['it_s'] / row['diffusers']['it_s']:.2f}"
                 if "ours --compile" in row else ""))
    ttfi = result["first_image_s"]
    print(f"time to first image (fresh process): ours {ttfi['ours']:.1f} s, diffusers {ttfi['diffusers']:.1f} s")


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-bench.json"))
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs per measurement")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "latentloom-bench")
    parser.add_argument("--dry-run", action="store_true", help="tiny model on the CPU (a smoke test)")
    parser.add_argument("--no-compile", action="store_true", help="skip the `--compile` variant of ours")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device (use --dry-run for the CPU smoke test)")
    device = torch.device("cpu") if args.dry_run else torch.device("cuda", 0)
    shape = DRY if args.dry_run else FULL
    path, _ = prepare(args.cache_dir, tiny=args.dry_run)
    # inductor on a GPU; the dry run only checks the wiring, with dynamo's capture and no code generation (inductor
    # takes minutes to compile even the tiny UNet on a CPU)
    backend = None if args.no_compile else "aot_eager" if args.dry_run else "inductor"
    from nodes.identity import dtype_names
    from nodes.precision import Precision

    result = {"device": device_name(device), "shape": shape, "torch": torch.__version__,
              "dtypes": dtype_names(Precision().policy(device)), "matmul_peak": matmul_peak(device, shape["matmul"]),
              "compile_backend": backend, "throughput": throughput(path, device, shape, args.repeat, backend),
              "first_image_s": {which: first_image(which, path, device, shape) for which in ("ours", "diffusers")}}
    args.out.write_text(json.dumps(result, indent=2))
    report(result)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        which, path, device, shape, start = sys.argv[2:7]
        print(child_first_image(which, Path(path), device, json.loads(shape), float(start)))
    else:
        main()
