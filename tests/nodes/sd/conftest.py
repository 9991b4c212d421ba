"""Fixtures for the Stable Diffusion machinery: tiny real-architecture model files, written once per session.

`tiny_checkpoints` hands out, per tiny architecture ("sd1", "sd1-inpaint", "sd2", "sd2-v", "sdxl"), the seeded
modules (`.models(arch)`), an original-layout single file (`.single_file(arch, dtype=torch.float32)`) and a
diffusers folder (`.folder(arch)`), each built on first use and cached for the session.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nodes.sd import tiny
from nodes.sd.text_encoder import TextEncoder
from tests.nodes.sd._text_helpers import tiny_clip_g, tiny_clip_l


class TinyCheckpoints:
    """Lazily written tiny model files under one session directory."""

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[tuple, object] = {}

    def models(self, arch: str) -> tiny.TinyModels:
        return self._once(("models", arch), lambda: tiny.build_tiny(arch))

    def single_file(self, arch: str, dtype: torch.dtype = torch.float32) -> Path:
        name = f"{arch}-{str(dtype).removeprefix('torch.')}.safetensors"
        return self._once(("file", arch, dtype), lambda: tiny.write_single_file(arch, self.root / name, dtype=dtype))

    def folder(self, arch: str) -> Path:
        return self._once(("folder", arch), lambda: tiny.write_diffusers_folder(arch, self.root / arch))

    def _once(self, key: tuple, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> TinyCheckpoints:
    return TinyCheckpoints(tmp_path_factory.mktemp("tiny_sd"))


# Tiny CLIP text models and the TextEncoders over them (text encoding and embedding tests).
@pytest.fixture(scope="module")
def clip_l():
    return tiny_clip_l()


@pytest.fixture(scope="module")
def clip_g():
    return tiny_clip_g()


@pytest.fixture(scope="module")
def sd1(clip_l):
    return TextEncoder("sd1", {"l": clip_l})


@pytest.fixture(scope="module")
def sdxl(clip_l, clip_g):
    return TextEncoder("sdxl", {"l": clip_l, "g": clip_g})
