"""--precision and the per-model dtype flags: parsed into a `Precision`, resolved to dtypes, recorded."""
from __future__ import annotations

import pytest
import torch

from main import build_parser
from nodes.precision import Precision, bf16_hint, cpu_flags
from nodes.sd.devices import DtypePolicy


def precision_of(*argv: str) -> Precision:
    return Precision.from_args(build_parser().parse_args([*argv, "run", "wf.json"]))


def test_global_choice_and_per_model_overrides_resolve_to_dtypes_on_the_cpu():
    assert precision_of().policy("cpu") == DtypePolicy.uniform(torch.float32)  # auto: ComfyUI's CPU pixels
    assert precision_of("--precision", "bf16").policy("cpu") == DtypePolicy.uniform(torch.bfloat16)
    mixed = precision_of("--precision", "bf16", "--fp32-vae", "--fp16-text-enc")
    assert mixed == Precision("bf16", unet=None, text_encoder="fp16", vae="fp32")
    assert mixed.policy("cpu") == DtypePolicy(torch.bfloat16, torch.float16, torch.float32)
    assert precision_of("--bf16-unet").policy("cpu") == DtypePolicy(torch.bfloat16, torch.float32, torch.float32)
    assert mixed.describe() == "bf16, fp32-vae, fp16-text-enc"
    assert Precision().describe() == "auto"


def test_two_dtypes_for_one_model_are_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--fp16-unet", "--bf16-unet", "run", "wf.json"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_bf16_hint_only_for_an_fp32_unet_on_a_cpu_with_bf16_matrix_instructions(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n\nprocessor\t: 1\n")
    flags = cpu_flags(cpuinfo)
    assert {"amx_bf16", "avx512f"} <= flags and cpu_flags(tmp_path / "missing") == set()
    assert "--precision bf16 is faster" in bf16_hint(Precision(), "cpu", flags)
    assert bf16_hint(Precision("fp32"), "cpu", {"avx512_bf16"}) is not None
    assert bf16_hint(Precision("bf16"), "cpu", flags) is None
    assert bf16_hint(Precision(unet="bf16"), "cpu", flags) is None
    assert bf16_hint(Precision(), "cuda", flags) is None
    assert bf16_hint(Precision(), "cpu", {"avx2"}) is None
