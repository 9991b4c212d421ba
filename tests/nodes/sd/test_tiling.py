"""Tiled VAE encode and decode (`nodes.sd.tiling`, `nodes.sd.vae`).

The tiling itself is checked exactly: a cell-wise function gives the same result tiled or whole, and tiles of
constant value blend to the weighted means written out by hand from the feather rule. On the tiny VAE, an input
that fits in every tile shape gives the untiled result; a really tiled one can only be close, not equal: each
tile's GroupNorm statistics and mid-block attention see the tile alone, which moves a random-weight VAE a lot
(the mean |Δ| is about half the output's spread). So the tolerance is relative: the tiled result must be closer
to the untiled one than diffusers' own tiled VAE (`tiled_decode` / `tiled_encode`) gets with tiles of the same
size, and clearly correlated with it.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nodes.sd import vae as vae_ops
from nodes.sd.tiling import feather_mask, tile_count, tile_starts, tiled_apply


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def corr(a, b):
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float(a @ b / (a.norm() * b.norm()))


@pytest.fixture(scope="module")
def vae(tiny_checkpoints):
    return tiny_checkpoints.models("sd1").vae


def test_tile_starts_and_counts():
    assert tile_starts(12, 8, 2) == [0, 6] and tile_count(12, 8, 2) == 2
    assert tile_starts(12, 4, 2) == [0, 2, 4, 6, 8] and tile_count(12, 4, 2) == 5  # ⌈(12 − 2)/(4 − 2)⌉
    assert tile_starts(8, 8, 2) == [0] and tile_count(8, 8, 2) == 1
    assert tile_count(1000, 64, 8) == len(tile_starts(1000, 64, 8)) == 18
    # the three tilings ComfyUI averages: 2t × t/2, t/2 × 2t, t × t (height × width)
    assert vae_ops.tiled_steps(2, 12, 20, 8, 2) == 2 * (1 * 9 + 5 * 2 + 2 * 3)


def test_cellwise_functions_tile_exactly():
    x = rand(2, 3, 11, 14)
    up = lambda t: F.interpolate(t * 2 + 1, scale_factor=8, mode="nearest")  # noqa: E731
    calls = []
    out = tiled_apply(x, up, (5, 4), 2, 8, 3, on_tile=lambda: calls.append(1))
    assert torch.allclose(out, up(x), rtol=0, atol=1e-6)
    assert len(calls) == 2 * tile_count(11, 5, 2) * tile_count(14, 4, 2)
    pool = lambda t: F.avg_pool2d(t, 4)  # noqa: E731  tile starts are multiples of 4 here: (8 − 4) steps
    assert torch.allclose(tiled_apply(rand(1, 2, 20, 28), pool, (8, 8), 4, 1 / 4, 2),
                          pool(rand(1, 2, 20, 28)), rtol=0, atol=1e-6)


def ramp_by_hand(size, feather):
    w = np.ones(size)
    if feather < size:
        for t in range(feather):
            w[t] *= (t + 1) / feather
            w[size - 1 - t] *= (t + 1) / feather
    return w


def test_seams_are_feathered_weighted_means():
    height, width, tile, overlap = 7, 10, (4, 5), 2
    x = torch.arange(height * width, dtype=torch.float32).reshape(1, 1, height, width)
    # each tile outputs one constant: the index of its top-left cell
    out = tiled_apply(x, lambda t: torch.full_like(t, float(t[0, 0, 0, 0])), tile, overlap, 1, 1)[0, 0]
    num, den = np.zeros((height, width)), np.zeros((height, width))
    for top in (0, 2, 4):  # range(0, 7 − 2, 4 − 2)
        for left in (0, 3, 6):  # range(0, 10 − 2, 5 − 2)
            h, w = min(4, height - top), min(5, width - left)
            weight = np.outer(ramp_by_hand(h, 2), ramp_by_hand(w, 2))
            num[top:top + h, left:left + w] += weight * (top * width + left)
            den[top:top + h, left:left + w] += weight
    assert np.allclose(out.numpy(), num / den, rtol=0, atol=1e-5)
    assert feather_mask(3, 4, 2).tolist() == [[0.25, 0.5, 0.5, 0.25], [0.5, 1, 1, 0.5], [0.25, 0.5, 0.5, 0.25]]
    with pytest.raises(ValueError, match="overlap of 4"):
        tiled_apply(x, lambda t: t, (4, 4), 4, 1, 1)


def test_tiny_vae_input_within_every_tile_shape_is_the_untiled_result(vae):
    latent = rand(2, 4, 4, 4)
    calls = []
    tiled = vae_ops.decode_tiled(vae, latent, 8, 2, on_tile=lambda: calls.append(1))  # tiles 16×4, 4×16, 8×8
    assert len(calls) == vae_ops.tiled_steps(2, 4, 4, 8, 2) == 6
    # tiles go through one batch item at a time: the convolutions round a little differently than for two
    assert torch.allclose(tiled, vae_ops.decode(vae, latent), rtol=0, atol=1e-5)
    pixels = torch.rand(1, 35, 37, 4, generator=torch.Generator().manual_seed(1))  # cropped to 32×32, RGB
    tiled = vae_ops.encode_tiled(vae, pixels, 64, 16)
    assert tiled.shape == (1, 4, 4, 4)
    assert torch.allclose(tiled, vae_ops.encode(vae, pixels), rtol=0, atol=1e-5)


def test_tiny_vae_tiled_decode_is_close_to_untiled(vae):
    latent = rand(1, 4, 12, 12, seed=2)
    full = vae_ops.decode(vae, latent)
    tiled = vae_ops.decode_tiled(vae, latent, 8, 2)  # 64-px tiles, 16-px overlap
    assert tiled.shape == full.shape == (1, 96, 96, 3)
    vae.enable_tiling()
    vae.tile_latent_min_size, vae.tile_sample_min_size = 8, 64
    try:
        with torch.inference_mode():
            theirs = vae_ops._to_image(vae.tiled_decode(latent).sample.float())
    finally:
        vae.disable_tiling()
    ours_error, their_error = (tiled - full).abs().mean(), (theirs - full).abs().mean()
    assert ours_error < their_error and ours_error < 0.6 * full.std()
    assert corr(tiled, full) > 0.6


@pytest.mark.filterwarnings("ignore:The tiled_encode implementation")  # diffusers' own deprecation notice
def test_tiny_vae_tiled_encode_is_close_to_untiled(vae):
    rows, cols = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 96), indexing="ij")
    pixels = torch.stack([cols, rows, rows * cols], dim=-1)[None]  # a smooth picture
    full = vae_ops.encode(vae, pixels)
    tiled = vae_ops.encode_tiled(vae, pixels, 64, 16)
    vae.enable_tiling()
    vae.tile_latent_min_size, vae.tile_sample_min_size = 8, 64
    try:
        with torch.inference_mode():
            theirs = vae.tiled_encode(pixels.movedim(-1, 1) * 2 - 1).latent_dist.mode()
    finally:
        vae.disable_tiling()
    ours_error, their_error = (tiled - full).abs().mean(), (theirs - full).abs().mean()
    assert ours_error < their_error and ours_error < 0.8 * full.std()
    assert corr(tiled, full) > 0.5
