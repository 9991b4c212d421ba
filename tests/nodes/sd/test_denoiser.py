"""The UNet wrapper: model sampling formulas, what the UNet is fed, CFG batching, SDXL and inpainting inputs.

Each test compares against a direct call of the same diffusers UNet with the inputs the reference prescribes.
Batched and separate UNet calls agree to 1e-5 (float32 kernels may sum in another order for another batch size).
"""

import math

import pytest
import torch

from nodes.sd.denoiser import (
    BLANK_INPAINT_LATENT,
    CFGDenoiser,
    MaskedDenoiser,
    UNetModel,
    calculate_denoised,
    calculate_input,
    noise_scaling,
    prepare_conditioning,
    prepare_mask,
)
from nodes.sd.schedules import sd_schedule
from tests.nodes.sd._sampling_helpers import TINY_SDXL_EXTRA, conditioning, tiny_unet


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def unet():
    return tiny_unet(seed=1)


class CallLog:
    """Records the inputs of every UNet forward call."""

    def __init__(self, unet):
        self.calls = []
        self.handle = unet.register_forward_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs, output):
        self.calls.append((args, kwargs))

    def close(self):
        self.handle.remove()


def direct(unet, x, sigma: float, context, **kwargs):
    """The x0 prediction by hand: UNet(x/sqrt(σ²+1), integer timestep) then x − ε·σ."""
    t = int(sd_schedule().timestep(torch.tensor(sigma)))
    with torch.no_grad():
        eps = unet(x / math.sqrt(sigma**2 + 1), torch.tensor([float(t)] * x.shape[0]), encoder_hidden_states=context,
                   **kwargs).sample
    return x - eps * sigma


def prepared(conditioning_value, unet, batch=1, hw=(8, 8), **kwargs):
    return prepare_conditioning(conditioning_value, unet.config, batch_size=batch, latent_hw=hw, **kwargs)


def test_model_sampling_formulas():
    x = torch.randn(2, 4, 3, 3)
    out = torch.randn(2, 4, 3, 3)
    sigma = torch.tensor([2.0, 2.0])
    assert torch.allclose(calculate_input(sigma, x), x / math.sqrt(5))
    assert torch.allclose(calculate_denoised("eps", sigma, out, x), x - 2 * out)
    assert torch.allclose(calculate_denoised("v", sigma, out, x), x / 5 - out * 2 / math.sqrt(5))
    with pytest.raises(ValueError):
        calculate_denoised("flow", sigma, out, x)
    latent = torch.randn(2, 4, 3, 3)
    assert torch.allclose(noise_scaling(torch.tensor(2.0), out, latent), out * 2 + latent)
    assert torch.allclose(noise_scaling(torch.tensor(2.0), out, latent, max_denoise=True), out * math.sqrt(5) + latent)


def test_unet_gets_scaled_input_and_integer_timestep(unet):
    cond = conditioning(1)
    x = torch.randn(1, 4, 8, 8) * 3
    log = CallLog(unet)
    model = UNetModel(unet)
    ours = model.denoise(x, torch.tensor([1.0]), prepared(cond, unet))
    log.close()
    (sample, timestep), kwargs = log.calls[0][0][:2], log.calls[0][1]
    assert timestep.tolist() == [354.0] and timestep.dtype == torch.float32  # timestep(1.0) = 354
    assert torch.equal(sample, x / (1.0**2 + 1.0) ** 0.5)
    assert torch.equal(kwargs["encoder_hidden_states"], cond[0][0])
    assert torch.equal(ours, direct(unet, x, 1.0, cond[0][0]))


def test_cfg_on_denoised_predictions_in_one_batch_negative_first(unet):
    pos, neg = conditioning(1), conditioning(2)
    x = torch.randn(2, 4, 8, 8) * 5
    sigma = 4.0
    denoiser = CFGDenoiser(UNetModel(unet), prepared(pos, unet, batch=2), prepared(neg, unet, batch=2, negative=True), 7.5)
    log = CallLog(unet)
    ours = denoiser(x, torch.tensor([sigma, sigma]))
    log.close()
    assert len(log.calls) == 1
    context = log.calls[0][1]["encoder_hidden_states"]
    assert context.shape == (4, 77, 32)
    assert torch.equal(context[0], neg[0][0][0]) and torch.equal(context[3], pos[0][0][0])
    cond, uncond = direct(unet, x, sigma, pos[0][0].repeat(2, 1, 1)), direct(unet, x, sigma, neg[0][0].repeat(2, 1, 1))
    # ε agrees to 1e-5 between batch sizes; x0 = x − σ·ε and CFG scale that difference by σ·cfg = 30.
    assert torch.allclose(ours, uncond + (cond - uncond) * 7.5, atol=1e-5 * sigma * 7.5, rtol=1e-5)


def test_cfg_one_skips_the_negative(unet):
    pos, neg = conditioning(1), conditioning(2)
    x = torch.randn(1, 4, 8, 8)
    denoiser = CFGDenoiser(UNetModel(unet), prepared(pos, unet), prepared(neg, unet, negative=True), 1.0)
    log = CallLog(unet)
    ours = denoiser(x, torch.tensor([2.0]))
    log.close()
    assert len(log.calls) == 1 and log.calls[0][0][0].shape[0] == 1
    assert torch.equal(ours, direct(unet, x, 2.0, pos[0][0]))


def test_token_lengths_repeat_to_lcm_up_to_four_times(unet):
    pos, neg = conditioning(1, tokens=154), conditioning(2, tokens=77)
    x = torch.randn(1, 4, 8, 8)
    log = CallLog(unet)
    CFGDenoiser(UNetModel(unet), prepared(pos, unet), prepared(neg, unet), 5.0)(x, torch.tensor([2.0]))
    assert len(log.calls) == 1
    context = log.calls[0][1]["encoder_hidden_states"]
    assert context.shape == (2, 154, 32) and torch.equal(context[0], neg[0][0][0].repeat(2, 1))
    # 77 vs 385 is a factor 5: no padding, two calls.
    log.calls.clear()
    long = conditioning(3, tokens=385)
    CFGDenoiser(UNetModel(unet), prepared(long, unet), prepared(neg, unet), 5.0)(x, torch.tensor([2.0]))
    log.close()
    assert [c[1]["encoder_hidden_states"].shape[1] for c in log.calls] == [385, 77]


def test_several_entries_average_by_strength_and_respect_timestep_range(unet):
    a, b = conditioning(1), conditioning(2, strength=3.0)
    x = torch.randn(1, 4, 8, 8)
    sigma = 3.0
    denoiser = CFGDenoiser(UNetModel(unet), prepared(a + b, unet), prepared(conditioning(4), unet), 1.0)
    expected = (direct(unet, x, sigma, a[0][0]) + 3 * direct(unet, x, sigma, b[0][0])) / 4
    assert torch.allclose(denoiser(x, torch.tensor([sigma])), expected, atol=1e-5, rtol=1e-5)
    # An entry limited to the first half of sampling is skipped at low noise.
    late = conditioning(5, start_percent=0.0, end_percent=0.5)
    denoiser = CFGDenoiser(UNetModel(unet), prepared(a + late, unet), [], 1.0)
    low = 0.1  # below percent_to_sigma(0.5) ≈ 1.5
    assert torch.allclose(denoiser(x, torch.tensor([low])), direct(unet, x, low, a[0][0]), atol=1e-5, rtol=1e-5)


def test_refuses_unsupported_conditioning_options(unet):
    with pytest.raises(NotImplementedError, match="gligen"):
        prepared(conditioning(1, gligen=("position", None, [])), unet)


def test_sdxl_added_conditioning(unet):
    sdxl = tiny_unet(seed=2, **TINY_SDXL_EXTRA)
    pos = conditioning(1, pooled_dim=32)
    x = torch.randn(1, 4, 8, 8)
    cond = prepared(pos, sdxl, hw=(8, 6))[0]
    assert cond.time_ids.tolist() == [[64.0, 48.0, 0.0, 0.0, 64.0, 48.0]]  # h, w = 8 × latent, crops 0, target = size
    assert torch.equal(cond.text_embeds, pos[0][1]["pooled_output"])
    explicit = prepared(conditioning(1, pooled_dim=32, width=1024, height=768, crop_w=8, target_width=512), sdxl)[0]
    assert explicit.time_ids.tolist() == [[768.0, 1024.0, 0.0, 8.0, 768.0, 512.0]]
    added = {"text_embeds": cond.text_embeds, "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])}
    ours = UNetModel(sdxl).denoise(x, torch.tensor([2.0]), prepared(pos, sdxl))
    assert torch.equal(ours, direct(sdxl, x, 2.0, pos[0][0], added_cond_kwargs=added))
    with pytest.raises(ValueError, match="pooled_output"):
        prepared(conditioning(1), sdxl)


def test_sdxl_refiner_aesthetic_score():
    refiner = dict(TINY_SDXL_EXTRA, projection_class_embeddings_input_dim=32 + 5 * 8)
    config = tiny_unet(seed=3, **refiner).config
    pos = prepare_conditioning(conditioning(1, pooled_dim=32), config, batch_size=1, latent_hw=(8, 8))[0]
    neg = prepare_conditioning(conditioning(2, pooled_dim=32), config, batch_size=1, latent_hw=(8, 8), negative=True)[0]
    assert pos.time_ids.tolist() == [[64.0, 64.0, 0.0, 0.0, 6.0]] and neg.time_ids.tolist() == [[64.0, 64.0, 0.0, 0.0, 2.5]]


def test_inpainting_unet_concat_channels():
    inpaint = tiny_unet(seed=4, in_channels=9)
    latent = torch.randn(1, 4, 8, 8)
    # No mask: mask channel 1, masked image = the blank latent.
    blank = prepared(conditioning(1), inpaint, latent_image=latent)[0].concat
    assert torch.equal(blank[:, :1], torch.ones(1, 1, 8, 8))
    assert blank[0, 1:, 0, 0].tolist() == pytest.approx(list(BLANK_INPAINT_LATENT))
    # With the noise mask: the rounded mask and the sampled (scaled) latent.
    mask = prepare_mask(torch.linspace(0, 1, 64).reshape(1, 8, 8), (1, 4, 8, 8))
    concat = prepared(conditioning(1), inpaint, latent_image=latent, noise_mask=mask)[0].concat
    assert torch.equal(concat[:, :1], mask[:, :1].round()) and torch.equal(concat[:, 1:], latent)
    # concat_latent_image from the conditioning (unscaled) takes precedence and is scaled.
    own = torch.randn(1, 4, 8, 8)
    concat = prepared(conditioning(1, concat_latent_image=own), inpaint, latent_image=latent, noise_mask=mask)[0].concat
    assert torch.allclose(concat[:, 1:], own * 0.18215)
    x = torch.randn(1, 4, 8, 8)
    ours = UNetModel(inpaint).denoise(x, torch.tensor([2.0]), prepared(conditioning(1), inpaint, latent_image=latent))
    t = float(sd_schedule().timestep(torch.tensor(2.0)))
    with torch.no_grad():
        eps = inpaint(torch.cat([x / math.sqrt(5), blank], 1), torch.tensor([t]), encoder_hidden_states=conditioning(1)[0][0]).sample
    assert torch.equal(ours, x - eps * 2.0)


def test_prepare_mask_resizes_and_repeats():
    mask = torch.zeros(1, 16, 16)
    mask[:, :, 8:] = 1
    out = prepare_mask(mask, (3, 4, 8, 8))
    assert out.shape == (3, 4, 8, 8)
    assert float(out[..., :4].max()) == 0.0 and float(out[..., 4:].min()) == 1.0
    assert prepare_mask(torch.ones(8, 8), (2, 4, 8, 8)).shape == (2, 4, 8, 8)


def test_masked_denoiser_pins_the_kept_region():
    latent = torch.randn(1, 4, 8, 8)
    noise = torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 4, 8, 8)
    mask[..., :4] = 1
    seen = []

    def inner(x, sigma):
        seen.append(x)
        return torch.full_like(x, 7.0)

    out = MaskedDenoiser(inner, mask, latent, noise)(torch.zeros(1, 4, 8, 8), torch.tensor([2.0]))
    assert torch.equal(seen[0][..., 4:], (noise * 2.0 + latent)[..., 4:]) and float(seen[0][..., :4].abs().max()) == 0
    assert torch.equal(out[..., 4:], latent[..., 4:]) and float(out[..., :4].min()) == 7.0
