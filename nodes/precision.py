"""The precision the models run in, as the command line asks for it (reference §6.12).

`--precision auto|fp32|fp16|bf16` sets every component; `auto` is the device's policy (`devices.dtype_policy`:
fp16 UNet and text encoders and a bf16 VAE — fp32 where the GPU lacks bf16 — on CUDA, fp32 on the CPU, which
gives ComfyUI's pixels). Per-component flags in ComfyUI's spirit (`--fp16-unet`, `--bf16-vae`,
`--fp32-text-enc`, …) override the global choice for one component. Sampling maths stays float32 whatever the
model dtype: the denoiser casts the UNet's output to float32.

This module imports torch only when a policy is resolved, so the environment can carry a `Precision` without
loading torch. On a CPU with bf16 matrix instructions (AMX or AVX512-BF16), `bf16_hint` says once that
`--precision bf16` is faster than the fp32 default.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

    from nodes.sd.devices import DtypePolicy

Choice = Literal["auto", "fp32", "fp16", "bf16"]
CHOICES: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")
DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
# command-line spelling of each component (ComfyUI's: --fp16-unet, --bf16-vae, --fp32-text-enc)
COMPONENT_FLAGS = {"unet": "unet", "vae": "vae", "text_encoder": "text-enc"}
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Precision:
    """The requested precision: one global choice and optional per-component overrides (None: the global)."""

    default: Choice = "auto"
    unet: Choice | None = None
    text_encoder: Choice | None = None
    vae: Choice | None = None

    def policy(self, device: torch.device | str | None = None) -> DtypePolicy:
        """The dtypes each component is loaded and run in on `device` (the compute device when None)."""
        import torch

        from nodes.sd.devices import DtypePolicy, dtype_policy

        auto = dtype_policy(device)

        def pick(component: str) -> torch.dtype:
            choice = getattr(self, component) or self.default
            return getattr(auto, component) if choice == "auto" else getattr(torch, DTYPE_NAMES[choice])

        return DtypePolicy(unet=pick("unet"), text_encoder=pick("text_encoder"), vae=pick("vae"))

    def describe(self) -> str:
        """The request as flags would spell it: `auto`, `bf16`, `auto, bf16-unet`, …"""
        overrides = [f"{getattr(self, c)}-{flag}" for c, flag in COMPONENT_FLAGS.items() if getattr(self, c)]
        return ", ".join([self.default, *overrides])

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Precision:
        return cls(default=getattr(args, "precision", "auto"),
                   **{c: getattr(args, f"{c}_precision", None) for c in COMPONENT_FLAGS})


def add_precision_arguments(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """`--precision` and the per-component flags (`--fp16-unet`, …: one of each component's group). `suppress`:
    for the copy of the global options after a command's name, which must not reset what came before it."""
    parser.add_argument("--precision", choices=CHOICES, default=argparse.SUPPRESS if suppress else "auto",
                        help="dtype of every model: auto (fp16 UNet/CLIP and bf16 VAE on CUDA, fp32 on the CPU), "
                             "fp32, fp16 or bf16 (default auto)")
    for component, flag in COMPONENT_FLAGS.items():
        group = parser.add_mutually_exclusive_group()
        for choice in DTYPE_NAMES:
            group.add_argument(f"--{choice}-{flag}", dest=f"{component}_precision", action="store_const",
                               const=choice, default=argparse.SUPPRESS if suppress else None,
                               help=f"run the {component.replace('_', ' ')} in {choice}")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is missing)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def bf16_hint(precision: Precision, device_type: str, flags: set[str]) -> str | None:
    """A note when the UNet would run in fp32 on a CPU that has bf16 matrix instructions."""
    if device_type != "cpu" or (precision.unet or precision.default) not in ("auto", "fp32"):
        return None
    found = [flag for flag in BF16_CPU_FLAGS if flag in flags]
    if not found:
        return None
    return (f"this CPU has bf16 matrix instructions ({', '.join(found)}): --precision bf16 is faster than fp32 "
            "(images then differ slightly from ComfyUI's fp32 CPU pixels)")
