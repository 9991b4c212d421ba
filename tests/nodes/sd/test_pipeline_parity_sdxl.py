"""SD2 (v-prediction) and SDXL txt2img through our nodes and executor equal diffusers' pipelines on the same weights.

As in `test_pipeline_parity.py` (SD1): our side loads the tiny original-layout single file through
CheckpointLoaderSimple and runs CLIPTextEncode → KSampler (euler, normal) → VAEDecode; diffusers gets the modules
the file was written from (`build_tiny(arch)`), the same prompts, noise, steps and sigmas (custom `sigmas`), and a
scheduler that feeds the UNet ComfyUI's integer timestep.

What each family needs so that both sides compute the same thing (conventions, not bugs):
- SD2: ComfyUI encodes with ViT-H's penultimate layer + final LayerNorm and pads with 0 ("!"). diffusers'
  StableDiffusionPipeline reads the text encoder's last (LayerNormed) output, so it gets the encoder minus its
  last layer (diffusers' own SD2 folders store it that way) and a tokenizer padding with "!". v-prediction:
  the scheduler's `prediction_type="v_prediction"`.
- SDXL: CLIP-L and CLIP-G penultimate layers without LayerNorm, CLIP-G pooled and projected, L padded with the
  end token and G with 0 (tokenizer_2 pads with "!"). Our KSampler builds the size conditioning from the latent
  (plain CLIPTextEncode has no width/height): original size = target size = 8 × latent (height, width), crops
  (0, 0); the pipeline gets the same `original_size` / `target_size` / `crops_coords_top_left`, for the negative
  side too. The negative prompt is passed explicitly: with none, diffusers' `force_zeros_for_empty_prompt`
  would use zero embeddings where ComfyUI encodes the empty string. The image is not square (48 × 64), so a
  swapped height/width in the size conditioning would show. No watermarker.

Tolerance 1e-5 on images in 0..1: float32 rounding, since the two sides order a few float operations
differently (CFG on x0 vs. on the model output; the v-prediction formula). Measured: SDXL 7e-7, SD2-v 6e-6. The
SD2-v gap is what these random weights make of one-ulp differences: scaling diffusers' own initial noise by
(1 + 2⁻²³) moves its image by 6.3e-6 too. Each test also shows that it can fail (v read as ε; SDXL with height
and width swapped in the size conditioning): those differ by 1e-2 or more.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from nodes.api import Environment
from nodes.paths import DataPaths
from nodes.sd.ksampler import sampling_sigmas
from nodes.sd.tiny import without_last_layer
from nodes.sd.tokenizer import PAD_TOKEN_ZERO, load_clip_tokenizer

from .test_pipeline_parity import IntegerTimestepEuler, execute, scheduler

SEED, STEPS, CFG = 4321, 5, 7.0
POSITIVE, NEGATIVE = "a red bicycle leaning on a wall", "blurry, low quality"
TOLERANCE = 1e-5


def workflow(ckpt: str, width: int, height: int) -> dict:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": POSITIVE, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": SEED, "steps": STEPS, "cfg": CFG,
                                                    "sampler_name": "euler", "scheduler": "normal",
                                                    "positive": ["6", 0], "negative": ["7", 0],
                                                    "latent_image": ["5", 0], "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return Environment(DataPaths(tmp_path_factory.mktemp("parity_families")))


def run_ours(env, tiny_checkpoints, arch: str, width: int, height: int) -> np.ndarray:
    target = env.paths.models("checkpoints") / f"{arch}.safetensors"
    target.write_bytes(tiny_checkpoints.single_file(arch).read_bytes())
    return execute(env, workflow(target.name, width, height))


def initial_noise(width: int, height: int) -> torch.Tensor:
    torch.manual_seed(SEED)  # ComfyUI's initial noise: the CPU generator seeded with the seed
    return torch.randn(1, 4, height // 8, width // 8)


def test_sd2_v_prediction_matches_stable_diffusion_pipeline(env, tiny_checkpoints):
    width = height = 64
    ours = run_ours(env, tiny_checkpoints, "sd2-v", width, height)
    models = tiny_checkpoints.models("sd2-v")
    assert models.spec.family.prediction == "v"
    results = {}
    for prediction in ("v_prediction", "epsilon"):
        pipe = StableDiffusionPipeline(
            vae=models.vae, text_encoder=without_last_layer(models.text_encoders["h"]),
            tokenizer=load_clip_tokenizer(PAD_TOKEN_ZERO), unet=models.unet,
            scheduler=scheduler(IntegerTimestepEuler, prediction), safety_checker=None, feature_extractor=None,
            requires_safety_checker=False,
        )
        results[prediction] = pipe(POSITIVE, negative_prompt=NEGATIVE, height=height, width=width,
                                   sigmas=sampling_sigmas("euler", "normal", STEPS).tolist(), guidance_scale=CFG,
                                   latents=initial_noise(width, height), output_type="np").images[0]
    assert ours.shape == (1, height, width, 3)
    diff, as_eps = (np.abs(ours[0] - results[k]).max() for k in ("v_prediction", "epsilon"))
    print(f"sd2-v txt2img max abs diff: {diff:.2e} (v-prediction), {as_eps:.2e} (read as epsilon)")
    assert diff < TOLERANCE
    assert as_eps > 100 * TOLERANCE  # the prediction type shows in the image: the comparison can fail


def sdxl_pipeline(models) -> StableDiffusionXLPipeline:
    return StableDiffusionXLPipeline(
        vae=models.vae, text_encoder=models.text_encoders["l"], text_encoder_2=models.text_encoders["g"],
        tokenizer=load_clip_tokenizer(), tokenizer_2=load_clip_tokenizer(PAD_TOKEN_ZERO), unet=models.unet,
        scheduler=scheduler(IntegerTimestepEuler), add_watermarker=False,
    )


def test_sdxl_matches_stable_diffusion_xl_pipeline(env, tiny_checkpoints):
    width, height = 64, 48
    ours = run_ours(env, tiny_checkpoints, "sdxl", width, height)
    models = tiny_checkpoints.models("sdxl")
    size = (height, width)  # diffusers' sizes are (height, width); ours default to 8 × the latent
    theirs = sdxl_pipeline(models)(
        POSITIVE, negative_prompt=NEGATIVE, height=height, width=width,
        sigmas=sampling_sigmas("euler", "normal", STEPS).tolist(), guidance_scale=CFG,
        latents=initial_noise(width, height), original_size=size, target_size=size,
        crops_coords_top_left=(0, 0), negative_original_size=size, negative_target_size=size,
        negative_crops_coords_top_left=(0, 0), output_type="np",
    ).images[0]
    assert ours.shape == (1, height, width, 3)
    diff = np.abs(ours[0] - theirs).max()
    # The size conditioning matters on these weights: the pipeline told another original size differs.
    other = sdxl_pipeline(models)(
        POSITIVE, negative_prompt=NEGATIVE, height=height, width=width,
        sigmas=sampling_sigmas("euler", "normal", STEPS).tolist(), guidance_scale=CFG,
        latents=initial_noise(width, height), original_size=(width, height), target_size=size,
        negative_original_size=(width, height), negative_target_size=size, output_type="np",
    ).images[0]
    swapped = np.abs(ours[0] - other).max()
    print(f"sdxl txt2img max abs diff: {diff:.2e} (same sizes), {swapped:.2e} (height and width swapped)")
    assert diff < TOLERANCE
    assert swapped > 100 * TOLERANCE
