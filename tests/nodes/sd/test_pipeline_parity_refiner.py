"""The SDXL refiner through our nodes equals diffusers' refiner pipeline on the same weights, alone and after the
base model (ComfyUI's two-KSamplerAdvanced hand-off).

Our side loads the tiny original-layout single files (`sdxl`, `sdxl-refiner`) through CheckpointLoaderSimple and
encodes the refiner's prompts with CLIPTextEncodeSDXLRefiner (ascore 6 positive, 2.5 negative, as ComfyUI's
refiner workflows set them). diffusers gets the modules the files were written from, in
`StableDiffusionXLImg2ImgPipeline(requires_aesthetics_score=True)` with CLIP-G alone (tokenizer padding with 0,
as ComfyUI pads OpenCLIP), the same noise (the CPU generator seeded with the seed), the same sigmas (custom
`sigmas`) and a scheduler feeding the UNet ComfyUI's integer timestep. The refiner's time ids are
(original height, width, crop top, left, aesthetic score): the node's height/width go to `original_size`.

1. img2img: a seeded latent (LoadLatent) refined by KSampler at denoise 0.6 = the pipeline given that latent
   (scaled, as latents are inside diffusers) with strength 1.0 and KSampler's truncated sigmas.
2. Hand-off: base KSamplerAdvanced (add_noise enable, steps 0 → k, return_with_leftover_noise enable), then
   refiner KSamplerAdvanced (add_noise disable, steps k → end) = diffusers' "ensemble of expert denoisers":
   the base pipeline with `denoising_end` and `output_type="latent"`, its latents into the refiner pipeline with
   `denoising_start`, both given the full sigma list, the fraction chosen so that the split falls after step k.

Tolerance 1e-5 on images in 0..1 (float32 rounding, as in the other parity tests; the hand-off also divides
and re-multiplies the latent by the scale between the stages). Each test shows that it can fail: the
aesthetic scores swapped, or the refiner started at another step, move the image by 1e-2 or more.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline
from safetensors.torch import save_file

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths
from nodes.sd.ksampler import sampling_sigmas
from nodes.sd.tokenizer import PAD_TOKEN_ZERO, load_clip_tokenizer

from .test_pipeline_parity import IntegerTimestepEuler, execute, scheduler
from .test_pipeline_parity_sdxl import NEGATIVE, POSITIVE, initial_noise, sdxl_pipeline

SEED, STEPS, CFG = 4321, 6, 7.0
WIDTH, HEIGHT = 64, 48  # pixels; the size conditioning below differs from it on purpose
SIZE_W, SIZE_H = 1024, 768
LATENT_SCALE = 0.13025
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def env(tiny_checkpoints, tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("parity_refiner")))
    for arch in ("sdxl", "sdxl-refiner"):
        target = env.paths.models("checkpoints") / f"{arch}.safetensors"
        target.write_bytes(tiny_checkpoints.single_file(arch).read_bytes())
    return env


def refiner_prompts(clip, positive_ascore=6.0, negative_ascore=2.5) -> dict:
    def encode(text, ascore):
        return {"class_type": "CLIPTextEncodeSDXLRefiner",
                "inputs": {"ascore": ascore, "width": SIZE_W, "height": SIZE_H, "text": text, "clip": clip}}
    return {"16": encode(POSITIVE, positive_ascore), "17": encode(NEGATIVE, negative_ascore)}


def decode(samples) -> dict:
    return {"8": {"class_type": "VAEDecode", "inputs": {"samples": samples, "vae": ["14", 2]}},
            "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}}


def refiner_pipeline(models) -> StableDiffusionXLImg2ImgPipeline:
    return StableDiffusionXLImg2ImgPipeline(
        vae=models.vae, text_encoder=None, text_encoder_2=models.text_encoders["g"], tokenizer=None,
        tokenizer_2=load_clip_tokenizer(PAD_TOKEN_ZERO), unet=models.unet, scheduler=scheduler(IntegerTimestepEuler),
        requires_aesthetics_score=True, add_watermarker=False,
    )


def refine(models, image, ascores=(6.0, 2.5), **kwargs) -> np.ndarray:
    size = (SIZE_H, SIZE_W)
    return refiner_pipeline(models)(
        POSITIVE, negative_prompt=NEGATIVE, image=image, guidance_scale=CFG, aesthetic_score=ascores[0],
        negative_aesthetic_score=ascores[1], original_size=size, negative_original_size=size,
        crops_coords_top_left=(0, 0), negative_crops_coords_top_left=(0, 0), output_type="np", **kwargs,
    ).images[0]


def test_refiner_img2img_matches_the_refiner_pipeline(env, tiny_checkpoints):
    models = tiny_checkpoints.models("sdxl-refiner")
    assert models.spec.family.name == "sdxl_refiner"
    latent = torch.randn(1, 4, HEIGHT // 8, WIDTH // 8, generator=torch.Generator().manual_seed(7))
    save_file({"latent_tensor": latent, "latent_format_version_0": torch.tensor([])},
              str(env.paths.input / "start.latent"))
    wf = {
        "14": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl-refiner.safetensors"}},
        "5": {"class_type": "LoadLatent", "inputs": {"latent": "start.latent"}},
        **refiner_prompts(["14", 1]),
        "3": {"class_type": "KSampler", "inputs": {"model": ["14", 0], "seed": SEED, "steps": STEPS, "cfg": CFG,
                                                    "sampler_name": "euler", "scheduler": "normal",
                                                    "positive": ["16", 0], "negative": ["17", 0],
                                                    "latent_image": ["5", 0], "denoise": 0.6}},
        **decode(["3", 0]),
    }
    ours = execute(env, wf)
    sigmas = sampling_sigmas("euler", "normal", STEPS, denoise=0.6).tolist()
    assert len(sigmas) == STEPS + 1 and sigmas[0] < 14.6  # img2img: starts below σ_max
    common = dict(image=latent * LATENT_SCALE, strength=1.0, sigmas=sigmas,
                  generator=torch.Generator().manual_seed(SEED))
    theirs = refine(models, **common)
    common["generator"] = torch.Generator().manual_seed(SEED)
    swapped = refine(models, ascores=(2.5, 6.0), **common)
    assert ours.shape == (1, HEIGHT, WIDTH, 3)
    diff, other = np.abs(ours[0] - theirs).max(), np.abs(ours[0] - swapped).max()
    print(f"sdxl refiner img2img max abs diff: {diff:.2e} (same), {other:.2e} (aesthetic scores swapped)")
    assert diff < TOLERANCE
    assert other > 100 * TOLERANCE


def advanced(model, positive, negative, latent, *, add_noise, start, end, leftover) -> dict:
    return {"class_type": "KSamplerAdvanced", "inputs": {
        "model": model, "add_noise": add_noise, "noise_seed": SEED, "steps": STEPS, "cfg": CFG,
        "sampler_name": "euler", "scheduler": "normal", "positive": positive, "negative": negative,
        "latent_image": latent, "start_at_step": start, "end_at_step": end, "return_with_leftover_noise": leftover}}


def hand_off(handover: int) -> dict:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
        "14": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl-refiner.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": WIDTH, "height": HEIGHT, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": POSITIVE, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["4", 1]}},
        **refiner_prompts(["14", 1]),
        "10": advanced(["4", 0], ["6", 0], ["7", 0], ["5", 0], add_noise="enable", start=0, end=handover,
                       leftover="enable"),
        "11": advanced(["14", 0], ["16", 0], ["17", 0], ["10", 0], add_noise="disable", start=handover,
                       end=10_000, leftover="disable"),
        **decode(["11", 0]),
    }


def test_base_to_refiner_hand_off_matches_the_ensemble_of_expert_denoisers(env, tiny_checkpoints):
    handover = 4
    ours = execute(env, hand_off(handover))
    sigmas = sampling_sigmas("euler", "normal", STEPS).tolist()
    sched = scheduler(IntegerTimestepEuler)
    sched.set_timesteps(sigmas=sigmas)
    # The base keeps the timesteps ≥ the cutoff, the refiner those below: cut just after step `handover`.
    fraction = 1.0 - float(sched.timesteps[handover - 1]) / 1000
    size = (HEIGHT, WIDTH)
    base = sdxl_pipeline(tiny_checkpoints.models("sdxl"))
    refiner = tiny_checkpoints.models("sdxl-refiner")
    results = {}
    for start in (fraction, 1.0 - float(sched.timesteps[handover]) / 1000):
        latents = base(
            POSITIVE, negative_prompt=NEGATIVE, height=HEIGHT, width=WIDTH, sigmas=sigmas, guidance_scale=CFG,
            latents=initial_noise(WIDTH, HEIGHT), original_size=size, target_size=size, crops_coords_top_left=(0, 0),
            negative_original_size=size, negative_target_size=size, negative_crops_coords_top_left=(0, 0),
            denoising_end=fraction, output_type="latent",
        ).images
        results[start] = refine(refiner, image=latents, sigmas=sigmas, denoising_start=start)
    diff = np.abs(ours[0] - results[fraction]).max()
    later = np.abs(ours[0] - results[max(results)]).max()
    print(f"sdxl base -> refiner hand-off max abs diff: {diff:.2e} (same step), {later:.2e} (refiner one step late)")
    assert diff < TOLERANCE
    assert later > 100 * TOLERANCE


def test_refiner_conditioning_and_a_base_prompt_on_the_refiner(env):
    wf = hand_off(3)
    report = validate(parse_workflow(wf), builtin_registry(), env)
    result = Executor(env).execute(report, prompt_id="conds")
    cond, extras = result.values["17"].outputs[0][0][0]
    assert cond.shape == (1, 77, 32) and extras["pooled_output"].shape == (1, 32)
    assert {k: extras[k] for k in ("aesthetic_score", "width", "height")} == {
        "aesthetic_score": 2.5, "width": SIZE_W, "height": SIZE_H}
    # The base model's CLIP (L + G, 64 wide here) on the refiner is refused with a clear reason.
    wf["11"]["inputs"]["positive"] = ["6", 0]
    report = validate(parse_workflow(wf), builtin_registry(), env)
    failed = Executor(env).execute(report, prompt_id="mixed")
    assert failed.status == "error" and failed.error.node_id == "11"
    assert "another model's CLIP" in failed.error.exception_message
