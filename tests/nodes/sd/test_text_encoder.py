"""TextEncoder against the transformers models run directly, the reference's formulas, and diffusers' pipelines.

Equality is exact (`torch.equal`) wherever the same batch goes through the same modules: our encoder only picks
hidden states, applies the LayerNorm the model owns, and does the weighting arithmetic, so any difference is a
bug, not rounding.
"""

import math
from types import SimpleNamespace

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel
from tests.nodes.sd._text_helpers import G_PROJECTION, G_WIDTH, H_WIDTH, L_WIDTH, run_model, tiny_clip_h, tiny_clip_l

from nodes.sd.families import family_spec
from nodes.sd.denoiser import sdxl_time_ids
from nodes.sd.text_encoder import TextEncoder
from nodes.sd.tokenizer import PAD_WITH_END, PAD_WITH_ZERO, PromptTokenizer


def _ids(text: str, pad_id: int = PAD_WITH_END) -> list[list[int]]:
    return [list(chunk.ids) for chunk in PromptTokenizer(pad_id).tokenize(text)]


def _empty_ids(pad_id: int = PAD_WITH_END) -> list[int]:
    return list(PromptTokenizer(pad_id).empty_chunk().ids)


# --- SD1 -----------------------------------------------------------------------------------------------------


def test_sd1_unweighted_equals_the_model_run_directly(sd1, clip_l):
    cond, pooled = sd1.encode("a photo of a cat")
    reference = run_model(clip_l, _ids("a photo of a cat"))
    assert cond.shape == (1, 77, L_WIDTH) and cond.dtype == torch.float32
    assert torch.equal(cond, reference.last_hidden_state)
    # Pooled: the final output at the end token (position 6), unprojected; equals transformers' pooler output.
    assert pooled.shape == (1, L_WIDTH)
    assert torch.equal(pooled, reference.last_hidden_state[:, 6])
    assert torch.equal(pooled, reference.pooler_output)


def test_sd1_long_prompt_concatenates_chunks_and_pools_the_first(sd1, clip_l):
    text = "a photo of a cat " * 20  # 100 tokens: 2 chunks
    ids = _ids(text)
    assert len(ids) == 2
    cond, pooled = sd1.encode(text)
    reference = run_model(clip_l, ids)  # the two chunks as one batch, as the encoder runs them
    assert cond.shape == (1, 154, L_WIDTH)
    assert torch.equal(cond, reference.last_hidden_state.reshape(1, 154, L_WIDTH))
    assert torch.equal(pooled, reference.last_hidden_state[0:1, 76])  # first chunk is full: end at 76


def test_weighting_interpolates_from_the_empty_prompt(sd1, clip_l):
    text = "a (photo:1.3) of a ((cat)), [dog] (fur:0.5)"
    (chunk,) = PromptTokenizer(PAD_WITH_END).tokenize(text)
    cond, pooled = sd1.encode(text)

    reference = run_model(clip_l, [list(chunk.ids), _empty_ids()]).last_hidden_state.float()
    z, z_empty = reference[0].clone(), reference[1]
    weighted = [j for j, w in enumerate(chunk.weights) if w != 1.0]
    assert len(weighted) == 3
    for j in weighted:  # the reference formula, token by token, with the weight as a Python float
        z[j] = (z[j] - z_empty[j]) * chunk.weights[j] + z_empty[j]
    assert torch.equal(cond[0], z)
    # Unweighted positions keep the values of the same batch; weighted ones really moved.
    unweighted = [j for j in range(77) if j not in weighted]
    assert torch.equal(cond[0, unweighted], reference[0, unweighted])
    assert not torch.allclose(cond[0, weighted], reference[0, weighted])
    # The pooled vector ignores weights.
    assert torch.equal(pooled, run_model(clip_l, [list(chunk.ids), _empty_ids()]).pooler_output[0:1])


def test_weights_apply_in_every_chunk(sd1, clip_l):
    text = "cat " * 74 + "(" + "dog " * 10 + ":2.0)"  # the weighted group is split: 1 token here, 9 there
    chunks = PromptTokenizer(PAD_WITH_END).tokenize(text)
    assert len(chunks) == 2
    cond, _ = sd1.encode(text)
    reference = run_model(clip_l, [list(c.ids) for c in chunks] + [_empty_ids()]).last_hidden_state
    z_empty = reference[2]
    expected = torch.cat([torch.where(torch.tensor(c.weights)[:, None] != 1.0, (reference[k] - z_empty) * 2.0 + z_empty,
                                      reference[k]) for k, c in enumerate(chunks)])
    assert torch.equal(cond[0], expected)


def test_clip_skip_selects_hidden_layer_with_final_norm(sd1, clip_l):
    reference = run_model(clip_l, _ids("a photo of a cat"))
    skip2 = sd1.with_last_layer(-2)
    cond, pooled = skip2.encode("a photo of a cat")
    with torch.no_grad():
        expected = clip_l.final_layer_norm(reference.hidden_states[-2])
    assert torch.equal(cond, expected)
    assert not torch.allclose(cond, reference.last_hidden_state)
    # CLIP skip changes the cond only: the pooled vector stays the final layer's.
    assert torch.equal(pooled, reference.pooler_output)
    # -1 is the default; -3 is the first of the three layers; a clone shares the weights and leaves the original.
    assert torch.equal(sd1.with_last_layer(-1).encode("a photo of a cat").cond, reference.last_hidden_state)
    with torch.no_grad():
        first_layer = clip_l.final_layer_norm(reference.hidden_states[1])
    assert torch.equal(sd1.with_last_layer(-3).encode("a photo of a cat").cond, first_layer)
    assert skip2.models["l"] is clip_l and sd1.layer is None and skip2.layer == -2


def test_clip_skip_deeper_than_the_model_falls_back_to_the_final_output(sd1, clip_l):
    reference = run_model(clip_l, _ids("a cat"))
    assert torch.equal(sd1.with_last_layer(-24).encode("a cat").cond, reference.last_hidden_state)


@pytest.mark.parametrize("layer", [0, -25, 1])
def test_clip_skip_range_is_checked(sd1, layer):
    with pytest.raises(ValueError):
        sd1.with_last_layer(layer)


def test_wrong_models_are_refused(clip_l, clip_g):
    with pytest.raises(TypeError):
        TextEncoder("sdxl", {"l": clip_l, "g": tiny_clip_l()})  # G needs the text projection
    with pytest.raises(TypeError):
        TextEncoder("sd1", {"g": clip_g})


# --- SD2 -----------------------------------------------------------------------------------------------------


def test_sd2_reads_the_penultimate_layer_with_final_norm_and_zero_padding():
    clip_h = tiny_clip_h()
    cond, pooled = TextEncoder("sd2", {"h": clip_h}).encode("a photo of a cat")
    ids = _ids("a photo of a cat", PAD_WITH_ZERO)
    assert ids[0][7:] == [0] * 70
    reference = run_model(clip_h, ids)
    with torch.no_grad():
        expected = clip_h.final_layer_norm(reference.hidden_states[-2])
    assert cond.shape == (1, 77, H_WIDTH) and torch.equal(cond, expected)
    assert torch.equal(pooled, reference.pooler_output)


def test_sd2_with_a_truncated_h_reads_the_same_layers():
    # SD2 diffusers folders hold ViT-H without its last layer; layers_missing keeps the layer numbering.
    full = tiny_clip_h(layers=4)
    truncated = CLIPTextModel(CLIPTextConfig.from_dict({**full.config.to_dict(), "num_hidden_layers": 3})).eval()
    state = {k: v for k, v in full.state_dict().items() if not k.startswith("encoder.layers.3.")}
    truncated.load_state_dict(state, strict=True)
    whole = TextEncoder("sd2", {"h": full})
    cut = TextEncoder(family_spec("sd2", truncated_h=True), {"h": truncated})
    assert torch.equal(cut.encode("a cat").cond, whole.encode("a cat").cond)
    assert torch.equal(cut.with_last_layer(-3).encode("a cat").cond, whole.with_last_layer(-3).encode("a cat").cond)
    # The missing last layer cannot be read: the deepest present one stands in.
    assert torch.equal(cut.with_last_layer(-1).encode("a cat").cond, whole.encode("a cat").cond)
    assert cut.with_last_layer(-2).encoders[0].layers_missing == 1


# --- SDXL ----------------------------------------------------------------------------------------------------


def test_sdxl_concatenates_penultimate_l_and_g_and_pools_projected_g(sdxl, clip_l, clip_g):
    cond, pooled = sdxl.encode("a photo of a cat")
    ref_l = run_model(clip_l, _ids("a photo of a cat", PAD_WITH_END))
    ref_g = run_model(clip_g, _ids("a photo of a cat", PAD_WITH_ZERO))
    assert cond.shape == (1, 77, L_WIDTH + G_WIDTH) and pooled.shape == (1, G_PROJECTION)
    assert torch.equal(cond[..., :L_WIDTH], ref_l.hidden_states[-2])  # no final LayerNorm
    assert torch.equal(cond[..., L_WIDTH:], ref_g.hidden_states[-2])
    assert torch.equal(pooled, ref_g.text_embeds)


def test_sdxl_last_layer_minus_one_is_the_unnormed_last_layer(sdxl, clip_l, clip_g):
    cond, _ = sdxl.with_last_layer(-1).encode("a cat")
    ref_l = run_model(clip_l, _ids("a cat", PAD_WITH_END))
    ref_g = run_model(clip_g, _ids("a cat", PAD_WITH_ZERO))
    assert torch.equal(cond, torch.cat([ref_l.hidden_states[-1], ref_g.hidden_states[-1]], dim=-1))


def test_sdxl_separate_texts_pad_the_shorter_with_empty_chunks(sdxl, clip_l, clip_g):
    long_l = "a photo of a cat " * 20  # 2 chunks
    cond, pooled = sdxl.encode_sdxl(text_g="a dog", text_l=long_l)
    assert cond.shape == (1, 154, L_WIDTH + G_WIDTH)
    ref_l = run_model(clip_l, _ids(long_l, PAD_WITH_END))
    ref_g = run_model(clip_g, _ids("a dog", PAD_WITH_ZERO) + [_empty_ids(PAD_WITH_ZERO)])
    assert torch.equal(cond[..., :L_WIDTH], ref_l.hidden_states[-2].reshape(1, 154, L_WIDTH))
    assert torch.equal(cond[..., L_WIDTH:], ref_g.hidden_states[-2].reshape(1, 154, G_WIDTH))
    assert torch.equal(pooled, ref_g.text_embeds[0:1])


def test_family_table():
    sdxl = family_spec("sdxl").text_encoders
    assert [spec.key for spec in sdxl] == ["l", "g"] and [spec.projected_pooled for spec in sdxl] == [False, True]
    assert [spec.pad_token_id for spec in sdxl] == [49407, 0]


def time_ids_config(count: int):
    """A UNet config with `count` 256-dim size embeddings beside a 1280-dim pooled vector."""
    return SimpleNamespace(projection_class_embeddings_input_dim=1280 + count * 256, addition_time_embed_dim=256)


def test_sdxl_time_ids():
    base, refiner = time_ids_config(6), time_ids_config(5)
    assert sdxl_time_ids(base, {}, 1280, (96, 128), False) == [768, 1024, 0, 0, 768, 1024]  # 8 × the latent size
    sized = {"width": 832, "height": 1216, "crop_w": 16, "crop_h": 32, "target_width": 1024, "target_height": 1024}
    assert sdxl_time_ids(base, sized, 1280, (96, 128), False) == [1216, 832, 32, 16, 1024, 1024]
    assert sdxl_time_ids(refiner, {}, 1280, (96, 128), False) == [768, 1024, 0, 0, 6.0]
    assert sdxl_time_ids(refiner, {}, 1280, (96, 128), True) == [768, 1024, 0, 0, 2.5]
    with pytest.raises(ValueError, match="SDXL base from refiner"):
        sdxl_time_ids(time_ids_config(4), {}, 1280, (96, 128), False)


# --- parity with diffusers -----------------------------------------------------------------------------------


def _tiny_unet(cross_attention_dim: int, sdxl: bool):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    extra = {}
    if sdxl:  # SDXL's size conditioning at the real embedding width (256 per value)
        extra = dict(addition_embed_type="text_time", addition_time_embed_dim=256,
                     projection_class_embeddings_input_dim=6 * 256 + G_PROJECTION, use_linear_projection=True)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=4, norm_num_groups=8, **extra,
    )


def _tiny_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                         up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=8)


@pytest.fixture(scope="module")
def sd1_pipeline(clip_l):
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from nodes.sd.tokenizer import load_clip_tokenizer

    return StableDiffusionPipeline(
        vae=_tiny_vae(), text_encoder=clip_l, tokenizer=load_clip_tokenizer(), unet=_tiny_unet(L_WIDTH, sdxl=False),
        scheduler=EulerDiscreteScheduler(steps_offset=1), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


def test_sd1_matches_diffusers_encode_prompt(sd1, sd1_pipeline):
    theirs, _ = sd1_pipeline.encode_prompt("a red photo of a cat", "cpu", 1, do_classifier_free_guidance=False)
    assert theirs.shape == (1, 77, L_WIDTH)
    assert torch.equal(sd1.encode("a red photo of a cat").cond, theirs)
    # "(red)" weighs 1.1 in our syntax; diffusers has no weighting, so the results must differ.
    assert not torch.equal(sd1.encode("a (red) photo of a cat").cond, theirs)


def test_sd1_clip_skip_matches_diffusers(sd1, sd1_pipeline):
    # diffusers' clip_skip=1 skips one layer: CLIPSetLastLayer(-2).
    try:
        theirs, _ = sd1_pipeline.encode_prompt("a red photo of a cat", "cpu", 1, False, clip_skip=1)
    except AttributeError as error:  # diffusers 0.42 reads text_encoder.text_model, gone in transformers 5
        if "text_model" not in str(error):
            raise
        pytest.skip(f"diffusers' clip_skip path does not run with this transformers: {error}")
    assert torch.equal(sd1.with_last_layer(-2).encode("a red photo of a cat").cond, theirs)


def test_sdxl_matches_diffusers_encode_prompt_and_time_ids(sdxl, clip_l, clip_g):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    from nodes.sd.tokenizer import PAD_TOKEN_END, PAD_TOKEN_ZERO, load_clip_tokenizer

    unet = _tiny_unet(L_WIDTH + G_WIDTH, sdxl=True)
    pipe = StableDiffusionXLPipeline(
        vae=_tiny_vae(), text_encoder=clip_l, text_encoder_2=clip_g, tokenizer=load_clip_tokenizer(PAD_TOKEN_END),
        tokenizer_2=load_clip_tokenizer(PAD_TOKEN_ZERO), unet=unet, scheduler=EulerDiscreteScheduler(steps_offset=1),
    )
    embeds, _, pooled, _ = pipe.encode_prompt("a photo of a cat", device="cpu", do_classifier_free_guidance=False)
    ours = sdxl.encode("a photo of a cat")
    assert torch.equal(ours.cond, embeds) and torch.equal(ours.pooled, pooled)

    theirs = pipe._get_add_time_ids((1216, 832), (32, 16), (1024, 1024), torch.float32, G_PROJECTION)
    sized = {"width": 832, "height": 1216, "crop_w": 16, "crop_h": 32, "target_width": 1024, "target_height": 1024}
    ours = sdxl_time_ids(unet.config, sized, G_PROJECTION, (8, 8), False)
    assert torch.equal(torch.tensor([ours], dtype=torch.float32), theirs)
    # The UNet turns each of the six values into the reference's 256-dim [cos(t·f), sin(t·f)],
    # f_i = exp(−ln(10000)·i/128) (§6.3), so passing time ids is all the size conditioning needs.
    t = theirs.flatten().double()
    freqs = torch.exp(-math.log(10000) * torch.arange(128, dtype=torch.float64) / 128)
    expected = torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], dim=-1)
    assert torch.allclose(unet.add_time_proj(theirs.flatten()).double(), expected, atol=2e-4, rtol=0)
