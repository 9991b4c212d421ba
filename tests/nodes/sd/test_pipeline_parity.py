"""txt2img and img2img through our nodes and executor equal diffusers' pipelines on the same weights.

Both sides get the same tiny SD1.x weights (our side loads the original-layout single file through
CheckpointLoaderSimple; diffusers gets the modules the file was written from), the same prompts, seed, steps,
sampler (euler) and sigma schedule (ComfyUI's `normal`, passed to diffusers as custom sigmas).

One convention differs by design: ComfyUI (and we) feed the UNet the integer timestep nearest to each sigma in
log space, while diffusers' EulerDiscreteScheduler feeds the fractional timestep it interpolates. With a
scheduler that rounds the timesteps the same way, the images agree to float rounding (1e-5); with diffusers'
stock fractional timesteps they differ by the timestep embedding's small change (asserted below 2e-2 on these
random weights, and measured in the test output).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
from PIL import Image as PILImage

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths
from nodes.sd.ksampler import sampling_sigmas
from nodes.sd.schedules import sd_schedule
from nodes.sd.tokenizer import load_clip_tokenizer

SEED, STEPS, CFG = 1234, 6, 6.5
POSITIVE, NEGATIVE = "a lighthouse on a cliff", "blurry"


class IntegerTimestepEuler(EulerDiscreteScheduler):
    """diffusers' Euler, but feeding the UNet ComfyUI's integer timestep (nearest in log-sigma)."""

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None, sigmas=None):
        super().set_timesteps(num_inference_steps, device, timesteps=timesteps, sigmas=sigmas)
        log_sigmas = sd_schedule().log_sigmas
        sig = self.sigmas[:-1].float().clamp(min=1e-10).log()
        self.timesteps = (sig[:, None] - log_sigmas[None, :]).abs().argmin(dim=1).to(self.timesteps.dtype)


def scheduler(cls, prediction_type="epsilon"):
    # "leading" only matters here for the initial noise scale: sqrt(1 + σ_max²) as ComfyUI (with "linspace"
    # diffusers scales the first noise by σ_max); the sigmas themselves are passed in.
    return cls(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
               timestep_spacing="leading", prediction_type=prediction_type, steps_offset=1)


@pytest.fixture(scope="module")
def setup(tiny_checkpoints, tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    env = Environment(DataPaths(root))
    target = env.paths.models("checkpoints") / "tiny.safetensors"
    target.write_bytes(tiny_checkpoints.single_file("sd1").read_bytes())
    return env, tiny_checkpoints.models("sd1")


def run_ours(env, extra_nodes, latent_link):
    wf = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}},
          "6": {"class_type": "CLIPTextEncode", "inputs": {"text": POSITIVE, "clip": ["4", 1]}},
          "7": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["4", 1]}},
          "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": SEED, "steps": STEPS, "cfg": CFG,
                                                      "sampler_name": "euler", "scheduler": "normal",
                                                      "positive": ["6", 0], "negative": ["7", 0],
                                                      "latent_image": latent_link, "denoise": 1.0}},
          "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
          "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}, **extra_nodes}
    return wf


def execute(env, wf):
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="parity")
    assert result.success, result.error
    return result.values["8"].outputs[0][0].numpy()


def pipeline(cls, models, sched_cls):
    return cls(vae=models.vae, text_encoder=models.text_encoders["l"], tokenizer=load_clip_tokenizer(),
               unet=models.unet, scheduler=scheduler(sched_cls), safety_checker=None, feature_extractor=None,
               requires_safety_checker=False)


def test_txt2img_matches_stable_diffusion_pipeline(setup):
    env, models = setup
    ours = execute(env, run_ours(env, {"5": {"class_type": "EmptyLatentImage",
                                            "inputs": {"width": 64, "height": 64, "batch_size": 1}}}, ["5", 0]))
    sigmas = sampling_sigmas("euler", "normal", STEPS).tolist()
    torch.manual_seed(SEED)
    noise = torch.randn(1, 4, 8, 8)  # ComfyUI's initial noise: the CPU generator seeded with the seed
    results = {}
    for name, cls in (("integer timesteps", IntegerTimestepEuler), ("stock diffusers", EulerDiscreteScheduler)):
        pipe = pipeline(StableDiffusionPipeline, models, cls)
        results[name] = pipe(POSITIVE, negative_prompt=NEGATIVE, height=64, width=64, sigmas=sigmas,
                             guidance_scale=CFG, latents=noise.clone(), output_type="np").images[0]
    assert ours.shape == (1, 64, 64, 3)  # the tiny VAE has the real 8× factor: 8×8 latent, 64×64 image
    exact, stock = (np.abs(ours[0] - results[k]).max() for k in ("integer timesteps", "stock diffusers"))
    print(f"txt2img max abs diff: {exact:.2e} (integer timesteps), {stock:.2e} (stock diffusers)")
    assert exact < 1e-5
    assert stock < 2e-2


def test_img2img_matches_img2img_pipeline(setup):
    env, models = setup
    rng = np.random.default_rng(0)
    PILImage.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(env.paths.input / "in.png")
    denoise = 0.5
    wf = run_ours(env, {"10": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
                        "12": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}},
                  ["12", 0])
    wf["3"]["inputs"]["denoise"] = denoise
    ours = execute(env, wf)
    assert ours.shape == (1, 64, 64, 3)
    # The same encoded latent (posterior mode, scaled) goes to diffusers, which takes a 4-channel image as latents.
    pixels = torch.from_numpy(np.asarray(PILImage.open(env.paths.input / "in.png"), dtype=np.float32) / 255.0)
    with torch.no_grad():
        latent = models.vae.encode(pixels.permute(2, 0, 1)[None] * 2 - 1).latent_dist.mode() * 0.18215
    assert latent.shape == (1, 4, 8, 8)
    # ComfyUI: the last STEPS+1 sigmas of schedule(floor(STEPS/denoise)); diffusers: strength over that many steps.
    total = int(STEPS / denoise)
    full = sampling_sigmas("euler", "normal", total).tolist()
    assert sampling_sigmas("euler", "normal", STEPS, denoise).tolist() == full[-(STEPS + 1):]
    pipe = pipeline(StableDiffusionImg2ImgPipeline, models, IntegerTimestepEuler)
    theirs = pipe(POSITIVE, image=latent, negative_prompt=NEGATIVE, strength=denoise, sigmas=full,
                  guidance_scale=CFG, generator=torch.Generator().manual_seed(SEED), output_type="np").images[0]
    diff = np.abs(ours[0] - theirs).max()
    print(f"img2img max abs diff: {diff:.2e}")
    assert diff < 1e-5
