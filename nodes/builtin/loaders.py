"""Loader nodes: checkpoints, VAEs and LoRAs from the data folder's `models/checkpoints`, `models/vae`, `models/loras`."""
from __future__ import annotations

from typing import Annotated, Any, NamedTuple

from nodes.api import Context, Environment, Input, Node, node
from nodes.sd.checkpoint import load_model, load_vae_file
from nodes.sd.compile import compile_model
from nodes.sd.handles import ClipHandle, ModelHandle, VaeHandle, model_manager
from nodes.sd.lora import apply_lora
from nodes.sd.text_encoder import TextEncoder
from nodes.types import Choices, Clip, Model, Vae


def _checkpoints(env: Environment) -> list[str]:
    return env.paths.model_files("checkpoints")


def _vaes(env: Environment) -> list[str]:
    return env.paths.model_files("vae")


def _loras(env: Environment) -> list[str]:
    return env.paths.model_files("loras")


def file_fingerprint(env: Environment, kind: str, name: str) -> list[Any]:
    """Size and modification time: a replaced model file is noticed without hashing gigabytes."""
    path = env.paths.resolve(env.paths.models(kind), name)
    stat = (path / "model_index.json").stat() if path.is_dir() else path.stat()
    return [name, stat.st_size, stat.st_mtime_ns]


class CheckpointOutputs(NamedTuple):
    MODEL: Model
    CLIP: Clip
    VAE: Vae


@node(category="loaders", version="1.0.0", display_name="Load Checkpoint", aliases=("LoadCheckpoint",))
class CheckpointLoaderSimple(Node):
    """Load a Stable Diffusion checkpoint (SD1.x, SD2.x, SDXL; single file or diffusers folder)."""

    ckpt_name: Annotated[str, Choices(_checkpoints)] = Input(tooltip="the checkpoint file to load")

    def run(self, ctx: Context) -> CheckpointOutputs:
        path = ctx.env.paths.resolve(ctx.env.paths.models("checkpoints"), self.ckpt_name)
        loaded = load_model(path, allow_pickle=ctx.env.allow_pickle, dtype=ctx.env.precision.policy())
        if ctx.env.compile is not None:
            compile_model(loaded.unet, backend=ctx.env.compile)
            if loaded.vae is not None:
                compile_model(loaded.vae, "decode", backend=ctx.env.compile)
        manager = model_manager(ctx.env)
        clip = ClipHandle(TextEncoder(loaded.family, loaded.text_encoders), manager,
                          self.ckpt_name)
        vae = VaeHandle(loaded.vae, manager, self.ckpt_name) if loaded.vae is not None else None
        return CheckpointOutputs(ModelHandle(loaded.unet, loaded.family, manager, self.ckpt_name), clip, vae)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return file_fingerprint(env, "checkpoints", inputs["ckpt_name"])


@node(category="loaders", version="1.0.0", display_name="Load VAE")
class VAELoader(Node):
    """Load a standalone VAE (e.g. a fine-tuned decoder) from `models/vae`."""

    vae_name: Annotated[str, Choices(_vaes)] = Input()

    def run(self, ctx: Context) -> Vae:
        path = ctx.env.paths.resolve(ctx.env.paths.models("vae"), self.vae_name)
        vae = load_vae_file(path, allow_pickle=ctx.env.allow_pickle, dtype=ctx.env.precision.policy())
        return VaeHandle(vae, model_manager(ctx.env), self.vae_name)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return file_fingerprint(env, "vae", inputs["vae_name"])


class LoraOutputs(NamedTuple):
    MODEL: Model
    CLIP: Clip


def _strength(what: str) -> Any:
    return Input(1.0, ge=-100.0, le=100.0, step=0.01, tooltip=f"how strongly to modify the {what} (0: unchanged)")


@node(category="loaders", version="1.0.0", display_name="Load LoRA")
class LoraLoader(Node):
    """Apply a LoRA from `models/loras` to a diffusion model and its text encoders (chain loaders to stack LoRAs).

    The models given are left unchanged: the outputs carry the LoRA, applied to the weights only while used.
    """

    model: Model = Input(tooltip="the diffusion model the LoRA is applied to")
    clip: Clip = Input(tooltip="the CLIP model the LoRA is applied to")
    lora_name: Annotated[str, Choices(_loras)] = Input(tooltip="the LoRA file")
    strength_model: float = _strength("diffusion model")
    strength_clip: float = _strength("CLIP model")

    def run(self, ctx: Context) -> LoraOutputs:
        path = ctx.env.paths.resolve(ctx.env.paths.models("loras"), self.lora_name)
        model, clip = apply_lora(path, self.model, self.clip, strength_model=self.strength_model,
                                 strength_clip=self.strength_clip, allow_pickle=ctx.env.allow_pickle)
        return LoraOutputs(model, clip)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return file_fingerprint(env, "loras", inputs["lora_name"])


@node(category="loaders", version="1.0.0")
class LoraLoaderModelOnly(Node):
    """Apply a LoRA from `models/loras` to a diffusion model only (its text-encoder layers are ignored)."""

    model: Model = Input(tooltip="the diffusion model the LoRA is applied to")
    lora_name: Annotated[str, Choices(_loras)] = Input(tooltip="the LoRA file")
    strength_model: float = _strength("diffusion model")

    def run(self, ctx: Context) -> Model:
        path = ctx.env.paths.resolve(ctx.env.paths.models("loras"), self.lora_name)
        model, _ = apply_lora(path, self.model, None, strength_model=self.strength_model,
                              allow_pickle=ctx.env.allow_pickle)
        return model

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return file_fingerprint(env, "loras", inputs["lora_name"])
