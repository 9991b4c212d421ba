"""Samplers by ComfyUI name: one small function per k-diffusion algorithm, and the registry the nodes list.

Every sampler has the signature `fn(denoise_fn, x, sigmas, *, seed=None, callback=None) -> x` described in
`common.py`. `SAMPLERS` maps each implemented ComfyUI sampler name (in ComfyUI's order) to a `SamplerSpec`
that also carries the two per-name rules KSampler needs:

* `discard_penultimate`: dpm_2, dpm_2_ancestral, uni_pc, uni_pc_bh2 sample schedule(steps + 1) without its
  second-to-last sigma (§6.5).
* `inpaint_random_noise`: `ddim` is euler whose inpainting noise (the noise that re-noises the kept region) is a
  fresh CPU draw seeded with seed + 1 instead of the initial noise (§6.7).

Not implemented (validation rejects them): the *_cfg_pp variants, heunpp2, dpm_fast, dpm_adaptive, ddpm,
ipndm, ipndm_v, deis, res_multistep*, gradient_estimation*, er_sde, seeds_2/3, sa_solver*.

Public API: `SamplerSpec`, `SAMPLERS`, `SAMPLER_NAMES`, `get_sampler(name)`, and the `sample_*` functions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch

from .common import Callback, DenoiseFn
from .dpmpp import sample_dpmpp_2m, sample_dpmpp_2m_sde, sample_dpmpp_2s_ancestral, sample_dpmpp_3m_sde, sample_dpmpp_sde
from .euler import sample_dpm_2, sample_dpm_2_ancestral, sample_euler, sample_euler_ancestral, sample_heun
from .extra import sample_lcm
from .lms import sample_lms
from .unipc import sample_unipc, sample_unipc_bh2

SamplerFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class SamplerSpec:
    """A ComfyUI sampler name, its function and KSampler's per-name rules (see the module doc)."""

    name: str
    fn: SamplerFn
    discard_penultimate: bool = False
    inpaint_random_noise: bool = False


_p = functools.partial
_SPECS = [
    SamplerSpec("euler", sample_euler),
    SamplerSpec("euler_ancestral", sample_euler_ancestral),
    SamplerSpec("heun", sample_heun),
    SamplerSpec("dpm_2", sample_dpm_2, discard_penultimate=True),
    SamplerSpec("dpm_2_ancestral", sample_dpm_2_ancestral, discard_penultimate=True),
    SamplerSpec("lms", sample_lms),
    SamplerSpec("dpmpp_2s_ancestral", sample_dpmpp_2s_ancestral),
    SamplerSpec("dpmpp_sde", sample_dpmpp_sde),
    SamplerSpec("dpmpp_sde_gpu", _p(sample_dpmpp_sde, cpu_tree=False)),
    SamplerSpec("dpmpp_2m", sample_dpmpp_2m),
    SamplerSpec("dpmpp_2m_sde", sample_dpmpp_2m_sde),
    SamplerSpec("dpmpp_2m_sde_gpu", _p(sample_dpmpp_2m_sde, cpu_tree=False)),
    SamplerSpec("dpmpp_2m_sde_heun", _p(sample_dpmpp_2m_sde, solver_type="heun")),
    SamplerSpec("dpmpp_2m_sde_heun_gpu", _p(sample_dpmpp_2m_sde, solver_type="heun", cpu_tree=False)),
    SamplerSpec("dpmpp_3m_sde", sample_dpmpp_3m_sde),
    SamplerSpec("dpmpp_3m_sde_gpu", _p(sample_dpmpp_3m_sde, cpu_tree=False)),
    SamplerSpec("lcm", sample_lcm),
    SamplerSpec("ddim", sample_euler, inpaint_random_noise=True),
    SamplerSpec("uni_pc", sample_unipc, discard_penultimate=True),
    SamplerSpec("uni_pc_bh2", sample_unipc_bh2, discard_penultimate=True),
]

SAMPLERS: dict[str, SamplerSpec] = {spec.name: spec for spec in _SPECS}
SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLERS)


def get_sampler(name: str) -> SamplerSpec:
    """The spec of a ComfyUI sampler name; unknown names raise `ValueError` (ComfyUI silently uses euler)."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLER_NAMES)}") from None


__all__ = [
    "Callback", "DenoiseFn", "SAMPLERS", "SAMPLER_NAMES", "SamplerSpec", "get_sampler",
    "sample_dpm_2", "sample_dpm_2_ancestral", "sample_dpmpp_2m", "sample_dpmpp_2m_sde", "sample_dpmpp_2s_ancestral",
    "sample_dpmpp_3m_sde", "sample_dpmpp_sde", "sample_euler", "sample_euler_ancestral", "sample_heun",
    "sample_lcm", "sample_lms", "sample_unipc", "sample_unipc_bh2",
]
