"""MODEL, CLIP and VAE: the handles that flow between the Stable Diffusion nodes.

A handle wraps loaded modules (kept in RAM) with the facts needed to use them and the environment's model
manager, which moves a module to the compute device while it is used. Handles are cheap to clone (CLIPSetLastLayer
returns a new CLIP sharing the weights). The executor's output cache holds handles by reference; the model manager
owns device memory.

Modules are shared by every handle made from them and never changed by one: a LoRA'd handle carries its weight
patches in its `manager`, a `PatchedManager` view whose `use(module)` applies them (nodes/sd/devices.py), so
always reach a handle's modules through `handle.manager.use(module)`. Model-patch nodes (ModelSamplingDiscrete,
RescaleCFG, FreeU, …) likewise return a MODEL with new `ModelOptions` (nodes/sd/model_options.py) and the same UNet.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel

from nodes.api import Environment, ServiceKey
from nodes.sd import vae as vae_ops
from nodes.sd.devices import ModelManager, PatchedManager
from nodes.sd.embeddings import EmbeddingLibrary
from nodes.sd.families import ModelFamily
from nodes.sd.model_options import ModelOptions
from nodes.sd.schedules import DiscreteSchedule, sd_schedule
from nodes.sd.text_encoder import TextEncoder, TextEncoding

MANAGER_KEY: ServiceKey[ModelManager] = ServiceKey("models")


def model_manager(env: Environment) -> ModelManager:
    """The environment's one model manager (created on first use)."""
    return env.services.get_or_create(MANAGER_KEY, ModelManager)


def unload_models(env: Environment) -> None:
    """Send every model on the compute device back to RAM (`POST /free {"unload_models": true}`)."""
    manager = env.services.get(MANAGER_KEY)
    if manager is not None:
        manager.offload_all()


@dataclass(frozen=True)
class ModelHandle:
    """MODEL: a diffusion UNet and its family (prediction type, latent scale, inpainting), with patch options."""

    unet: UNet2DConditionModel
    family: ModelFamily
    manager: ModelManager | PatchedManager = field(repr=False)
    source: str = ""
    options: ModelOptions = field(default_factory=ModelOptions, repr=False)

    @property
    def prediction(self) -> str:
        """What the UNet predicts: the options' override, else the family's."""
        return self.options.prediction or self.family.prediction

    @property
    def schedule(self) -> DiscreteSchedule:
        """The training schedule σ ↔ timestep: the options' override, else SD's (zero-terminal-SNR for `ztsnr`
        checkpoints)."""
        if self.options.schedule is not None:
            return self.options.schedule
        return sd_schedule().zero_terminal_snr() if self.family.zsnr else sd_schedule()

    def with_options(self, **changes) -> "ModelHandle":
        """A handle on the same UNet with some options replaced (see `ModelOptions`)."""
        return replace(self, options=replace(self.options, **changes))


@dataclass(frozen=True)
class ClipHandle:
    """CLIP: the text encoder(s) of a checkpoint, with the selected last layer."""

    encoder: TextEncoder
    manager: ModelManager | PatchedManager = field(repr=False)
    source: str = ""

    def with_last_layer(self, layer: int) -> "ClipHandle":
        return replace(self, encoder=self.encoder.with_last_layer(layer))

    def _resident(self) -> ExitStack:
        stack = ExitStack()
        for module in self.encoder.models.values():
            stack.enter_context(self.manager.use(module))
        return stack

    @torch.inference_mode()
    def encode(self, text: str, embeddings: EmbeddingLibrary | None = None) -> TextEncoding:
        """`embeddings` resolves the prompt's `embedding:NAME` words (None: they stay text)."""
        with self._resident():
            return self.encoder.encode(text, embeddings)

    @torch.inference_mode()
    def encode_sdxl(self, text_g: str, text_l: str, embeddings: EmbeddingLibrary | None = None) -> TextEncoding:
        with self._resident():
            return self.encoder.encode_sdxl(text_g, text_l, embeddings)


@dataclass(frozen=True)
class VaeHandle:
    """VAE: an AutoencoderKL, or TAESD's AutoencoderTiny with the latent scale of its family (`taesd_scale`)."""

    vae: AutoencoderKL | AutoencoderTiny
    manager: ModelManager = field(repr=False)
    source: str = ""
    taesd_scale: float | None = None

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        with self.manager.use(self.vae):
            if self.taesd_scale is not None:
                return vae_ops.encode_tiny(self.vae, pixels, self.taesd_scale)
            return vae_ops.encode(self.vae, pixels)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        with self.manager.use(self.vae):
            if self.taesd_scale is not None:
                return vae_ops.decode_tiny(self.vae, latent, self.taesd_scale)
            return vae_ops.decode(self.vae, latent)

    def encode_tiled(self, pixels: torch.Tensor, tile: int, overlap: int,
                     on_tile: Callable[[], None] | None = None) -> torch.Tensor:
        """`tile` and `overlap` in pixels; `on_tile()` after each tile (`vae_ops.tiled_steps` of them)."""
        with self.manager.use(self.vae):
            return vae_ops.encode_tiled(self.vae, pixels, tile, overlap, on_tile)

    def decode_tiled(self, latent: torch.Tensor, tile: int, overlap: int,
                     on_tile: Callable[[], None] | None = None) -> torch.Tensor:
        """`tile` and `overlap` in latent cells; `on_tile()` after each tile (`vae_ops.tiled_steps` of them)."""
        with self.manager.use(self.vae):
            return vae_ops.decode_tiled(self.vae, latent, tile, overlap, on_tile)
