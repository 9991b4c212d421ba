"""Regional conditioning in the denoiser (reference §6.14): area crops, feathered weights, masks, strength,
opposite areas, batching.

A stub UNet makes every prediction a simple function of its input crop and context, so each expected value is
written here by hand from the reference's formulas: x0 = x − σ·ε on the crop, each side = Σ x0·mult / (1e-37 +
Σ mult) per pixel, result = uncond + cfg·(cond − uncond). The weights (feather ramps, masks) are literal arrays.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from nodes.sd.denoiser import CFGDenoiser, ModelCond, UNetModel, match_opposite_areas, prepare_conditioning
from nodes.sd.regions import mask_bounds, resolve_area
from tests.nodes.sd._sampling_helpers import conditioning, tiny_unet

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIGMA = 2.0
HW = (16, 16)


class StubUNet(torch.nn.Module):
    """ε = 0.5·input + mean(context) + mean of the input over its own crop (so the crop's extent matters)."""

    config = SimpleNamespace(in_channels=4, addition_embed_type=None, cross_attention_dim=32)
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, sample, timestep, encoder_hidden_states, added_cond_kwargs=None, return_dict=False):
        self.inputs.append(sample.shape)
        context = encoder_hidden_states.mean(dim=(1, 2)).reshape(-1, 1, 1, 1)
        return (0.5 * sample + context + sample.mean(dim=(2, 3), keepdim=True),)


def x0(x, cond, box=None, sigma=SIGMA):
    """The hand-computed x0 of one entry on its crop `box` = (h, w, y, x) of x."""
    if box is not None:
        h, w, y, left = box
        x = x[:, :, y:y + h, left:left + w]
    xc = x / math.sqrt(sigma**2 + 1)
    eps = 0.5 * xc + cond[0][0].mean() + xc.mean(dim=(2, 3), keepdim=True)
    return x - sigma * eps


def placed(value, box):
    """`value` ([B, C, h, w] or [h, w]) at `box` in a zero latent."""
    h, w, y, left = box
    out = torch.zeros(1, 4, *HW)
    out[:, :, y:y + h, left:left + w] = value
    return out


def blend(parts):
    """Σ x0·mult / (1e-37 + Σ mult) over (x0 full-size, mult full-size) pairs."""
    total = sum(p * m for p, m in parts)
    count = 1e-37 + sum(m for _, m in parts)
    return total / count


def run(positive, negative, cfg, x, unet=None):
    unet = unet or StubUNet()
    prep = lambda c, neg: prepare_conditioning(c, unet.config, batch_size=x.shape[0], latent_hw=HW, negative=neg)
    denoiser = CFGDenoiser(UNetModel(unet), prep(positive, False), prep(negative, True), cfg)
    return denoiser(x, torch.tensor([SIGMA] * x.shape[0])), unet


def ones():
    return torch.ones(1, 4, *HW)


# Feather ramps written out: an 8-pixel side inside the latent has rr = min(8, 8 // 4) = 2 → 1/2, 1 at each edge.
RAMP_8_BOTH = torch.tensor([0.5, 1, 1, 1, 1, 1, 1, 0.5])
RAMP_8_TOP = torch.tensor([0.5, 1, 1, 1, 1, 1, 1, 1])


def test_area_entry_is_evaluated_on_its_crop_with_feathered_edges():
    a, b, n = conditioning(1), conditioning(2, area=(8, 8, 4, 4)), conditioning(3)
    x = torch.randn(1, 4, *HW)
    ours, unet = run(a + b, n, 3.0, x)
    box = (8, 8, 4, 4)
    m = placed(torch.outer(RAMP_8_BOTH, RAMP_8_BOTH), box)
    cond = blend([(x0(x, a), ones()), (placed(x0(x, b, box), box), m)])
    # the negative gets a copy of the area entry with its own text, on the same crop and weights
    uncond = blend([(x0(x, n), ones()), (placed(x0(x, n, box), box), m)])
    assert torch.allclose(ours, uncond + 3.0 * (cond - uncond), atol=1e-5)
    assert sorted(unet.inputs) == [(2, 4, 8, 8), (2, 4, 16, 16)]  # full frames batched, crops batched


def test_latent_border_is_not_feathered_and_areas_are_clamped():
    # (12, 20, 8, 0) reaches past a 16 × 16 latent: seen as (8, 16, 8, 0); its top edge is inside (feathered),
    # bottom, left and right are the latent's border (not feathered).
    big, n = conditioning(1, area=(12, 20, 8, 0), strength=2.0), conditioning(3)
    x = torch.randn(1, 4, *HW)
    ours, unet = run(big, n, 1.0, x)  # cfg 1: the positive alone
    box = (8, 16, 8, 0)
    m = placed(2.0 * RAMP_8_TOP[:, None].expand(8, 16), box)
    expected = blend([(placed(x0(x, big, box), box), m)])
    assert torch.allclose(ours, expected, atol=1e-5)
    assert ours[:, :, :8].abs().max() == 0  # no entry covers the top half: 0 / 1e-37
    assert unet.inputs == [(1, 4, 8, 16)]


def test_small_areas_feather_over_a_quarter_of_their_side():
    # 12 × 4 at (2, 6): rows rr = min(8, 12 // 4) = 3 → 1/3, 2/3, 1; columns rr = 1 → factor 1.
    small = conditioning(1, area=(12, 4, 2, 6))
    x = torch.randn(1, 4, *HW)
    ours, _ = run(small + conditioning(2), conditioning(3), 1.0, x)
    rows = torch.tensor([1 / 3, 2 / 3, 1, 1, 1, 1, 1, 1, 1, 1, 2 / 3, 1 / 3])
    box = (12, 4, 2, 6)
    expected = blend([(placed(x0(x, small, box), box), placed(rows[:, None].expand(12, 4), box)),
                      (x0(x, conditioning(2)), ones())])
    assert torch.allclose(ours, expected, atol=1e-5)


def test_mask_weights_pixels_without_feathering_and_is_resized():
    # a 32 × 32 mask constant on 2 × 2 blocks: bilinear halving gives the block values exactly
    blocks = torch.zeros(16, 16)
    blocks[2:10, 3:7] = 1.0
    blocks[10:14, 3:7] = 0.25
    mask = blocks.repeat_interleave(2, 0).repeat_interleave(2, 1)
    masked = conditioning(1, mask=mask[None], mask_strength=0.5, strength=2.0)
    base = conditioning(2)
    x = torch.randn(1, 4, *HW)
    ours, unet = run(base + masked, conditioning(3), 4.0, x)
    cond = blend([(x0(x, base), ones()), (x0(x, masked), (blocks * 0.5 * 2.0).expand(1, 4, *HW))])
    uncond = x0(x, conditioning(3))  # a mask without area gets no opposite copy
    assert torch.allclose(ours, uncond + 4.0 * (cond - uncond), atol=1e-5)
    assert unet.inputs == [(3, 4, 16, 16)]


def test_mask_bounds_crop_to_the_masks_bounding_box():
    mask = torch.zeros(2, 16, 16)
    mask[0, 3:6, 2:5] = 1.0
    mask[1, 4, 9:13] = -0.5  # bounds take |mask| over the batch
    assert mask_bounds(mask) == (8, 11, 3, 2)  # 3 rows → at least 8
    assert mask_bounds(torch.zeros(1, 16, 16)) == (8, 8, 0, 0)
    entry = conditioning(1, mask=mask, mask_strength=1.0, set_area_to_bounds=True)
    x = torch.randn(2, 4, *HW)
    ours, unet = run(entry, conditioning(3), 2.0, x)
    box = (8, 11, 3, 2)
    m = torch.zeros(2, 4, *HW)
    m[:, :, 3:11, 2:13] = mask[:, None, 3:11, 2:13]  # the mask on the box, no feathering
    part = torch.zeros(2, 4, *HW)
    part[:, :, 3:11, 2:13] = x0(x, entry, box)
    cond = blend([(part, m)])
    part_n = torch.zeros(2, 4, *HW)
    part_n[:, :, 3:11, 2:13] = x0(x, conditioning(3), box)
    uncond = blend([(x0(x, conditioning(3)), torch.ones(2, 4, *HW)), (part_n, m)])
    assert torch.allclose(ours, uncond + 2.0 * (cond - uncond), atol=1e-5)
    assert sorted(unet.inputs) == [(2, 4, 16, 16), (4, 4, 8, 11)]


def test_several_overlapping_areas_with_strengths_and_percentages():
    left = conditioning(1, area=("percentage", 1.0, 0.5, 0.0, 0.0), strength=1.5)  # → (16, 8, 0, 0)
    right = conditioning(2, area=(16, 8, 0, 8), strength=0.5)
    middle = conditioning(4, area=(8, 8, 4, 4))
    n = conditioning(3)
    x = torch.randn(1, 4, *HW)
    ours, unet = run(left + right + middle, n, 6.0, x)
    boxes = [(16, 8, 0, 0), (16, 8, 0, 8), (8, 8, 4, 4)]
    cols_right_edge = torch.tensor([1, 1, 1, 1, 1, 1, 1, 0.5])  # rr = 2, only the edge inside the latent
    weights = [placed(1.5 * cols_right_edge.expand(16, 8), boxes[0]),
               placed(0.5 * cols_right_edge.flip(0).expand(16, 8), boxes[1]),
               placed(torch.outer(RAMP_8_BOTH, RAMP_8_BOTH), boxes[2])]
    entries = [left, right, middle]
    cond = blend([(placed(x0(x, e, b), b), w) for e, b, w in zip(entries, boxes, weights)])
    uncond = blend([(x0(x, n), ones())] + [(placed(x0(x, n, b), b), w) for b, w in zip(boxes, weights)])
    assert torch.allclose(ours, uncond + 6.0 * (cond - uncond), atol=1e-5)
    assert sorted(unet.inputs) == [(1, 4, 16, 16), (2, 4, 8, 8), (4, 4, 16, 8)]


def test_timestep_range_combines_with_areas():
    late = conditioning(1, area=(8, 8, 4, 4), start_percent=0.0, end_percent=0.5)  # off below σ ≈ 1.5
    base = conditioning(2)
    x = torch.randn(1, 4, *HW)
    unet = StubUNet()
    pos = prepare_conditioning(late + base, unet.config, batch_size=1, latent_hw=HW)
    denoiser = CFGDenoiser(UNetModel(unet), pos, [], 1.0)
    assert torch.allclose(denoiser(x, torch.tensor([0.1])), x0(x, base, sigma=0.1), atol=1e-5)
    box = (8, 8, 4, 4)
    both = blend([(placed(x0(x, late, box), box), placed(torch.outer(RAMP_8_BOTH, RAMP_8_BOTH), box)),
                  (x0(x, base), ones())])
    assert torch.allclose(denoiser(x, torch.tensor([SIGMA])), both, atol=1e-5)


def test_batched_areas_equal_separate_unet_calls_on_the_tiny_unet():
    unet = tiny_unet(seed=1)
    a, b = conditioning(1, area=(8, 8, 0, 0)), conditioning(2, area=(8, 8, 8, 8), strength=2.0)
    n = conditioning(3)
    x = torch.randn(1, 4, *HW)
    prep = lambda c: prepare_conditioning(c, unet.config, batch_size=1, latent_hw=HW)
    ours = CFGDenoiser(UNetModel(unet), prep(a + b), prep(n), 5.0)(x, torch.tensor([SIGMA]))
    t = torch.tensor([float(UNetModel(unet).schedule.timestep(torch.tensor(SIGMA)))])

    def direct(context, box=None):
        h, w, y, left = box or (16, 16, 0, 0)
        crop = x[:, :, y:y + h, left:left + w]
        with torch.no_grad():
            eps = unet(crop / math.sqrt(SIGMA**2 + 1), t, encoder_hidden_states=context).sample
        return crop - eps * SIGMA

    ramp_a = torch.outer(torch.tensor([1, 1, 1, 1, 1, 1, 1, 0.5]), torch.tensor([1, 1, 1, 1, 1, 1, 1, 0.5]))
    ramp_b = ramp_a.flip(0).flip(1)
    wa, wb = placed(ramp_a, (8, 8, 0, 0)), placed(2.0 * ramp_b, (8, 8, 8, 8))
    cond = blend([(placed(direct(a[0][0], (8, 8, 0, 0)), (8, 8, 0, 0)), wa),
                  (placed(direct(b[0][0], (8, 8, 8, 8)), (8, 8, 8, 8)), wb)])
    uncond = blend([(direct(n[0][0]), ones()), (placed(direct(n[0][0], (8, 8, 0, 0)), (8, 8, 0, 0)), wa),
                    (placed(direct(n[0][0], (8, 8, 8, 8)), (8, 8, 8, 8)), wb)])
    assert torch.allclose(ours, uncond + 5.0 * (cond - uncond), atol=1e-4, rtol=1e-4)


def entry(area=None, seed=0):
    return ModelCond(torch.full((1, 1, 1), float(seed)), area=area)


def test_opposite_areas_copy_the_smallest_containing_entry():
    big, small = entry((12, 12, 0, 0), 1), entry((8, 8, 2, 2), 2)
    region = entry((4, 4, 4, 4), 9)
    positive, negative = match_opposite_areas([[region], [entry(None, 5), big, small]])
    # the smallest of the entries containing (4, 4, 4, 4) lends its text; the copy keeps the area
    assert [(e.area, float(e.context)) for e in negative[3:]] == [((4, 4, 4, 4), 2.0)]
    assert len(negative) == 4 and negative[3].mult is region.mult
    assert len(positive) == 1  # nothing on the positive side contains the negative's areas
    positive, _ = match_opposite_areas([[region, entry(None, 7)], [big, small]])
    assert [(e.area, float(e.context)) for e in positive[2:]] == [((12, 12, 0, 0), 7.0), ((8, 8, 2, 2), 7.0)]
    # an entry that already has exactly the area gets no copy
    assert len(match_opposite_areas([[region], [entry((4, 4, 4, 4), 3)]])[1]) == 1


def test_bad_areas_are_refused():
    with pytest.raises(ValueError, match="outside"):
        run(conditioning(1, area=(8, 8, 16, 0)), [], 1.0, torch.randn(1, 4, *HW))
    with pytest.raises(ValueError, match="height, width, y, x"):
        resolve_area((8, 8, 0), HW)
    with pytest.raises(ValueError, match="mask"):
        run(conditioning(1, mask=torch.ones(1, 1, 1, 16, 16)), [], 1.0, torch.randn(1, 4, *HW))
    assert resolve_area(("percentage", 0.5, 0.25, 0.5, 0.03), (16, 16)) == (8, 4, 8, 0)  # round half to even
    assert resolve_area(("percentage", 0.0, 0.0, 0.0, 0.0), (16, 16)) == (1, 1, 0, 0)


def test_inpainting_concat_channels_are_cropped_with_the_area():
    inpaint = tiny_unet(seed=4, in_channels=9)
    latent = torch.randn(1, 4, *HW)
    noise_mask = torch.zeros(1, 4, *HW)
    noise_mask[..., 6:, :] = 1.0
    seen = []
    handle = inpaint.register_forward_hook(lambda module, args, output: seen.append(args[0]))
    pos = prepare_conditioning(conditioning(1, area=(8, 8, 4, 4)), inpaint.config, batch_size=1, latent_hw=HW,
                               latent_image=latent, noise_mask=noise_mask)
    CFGDenoiser(UNetModel(inpaint), pos, [], 1.0)(torch.randn(1, 4, *HW), torch.tensor([SIGMA]))
    handle.remove()
    (sample,) = seen
    assert sample.shape == (1, 9, 8, 8)
    assert torch.equal(sample[:, 4:5], noise_mask[:, :1, 4:12, 4:12])
    assert torch.equal(sample[:, 5:], latent[..., 4:12, 4:12])
