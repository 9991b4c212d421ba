"""Loader nodes: checkpoints, VAEs and LoRAs from the data folder's `models/checkpoints`, `models/vae`, `models/loras`;
single components from `models/diffusion_models` (or `unet`), `models/text_encoders` (or `clip`) and TAESD from
`models/vae_approx` (ComfyUI's folders and combo lists)."""
from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple

from nodes.api import Context, Environment, Input, Node, node
from nodes.identity import file_state, folder_files
from nodes.sd.checkpoint import load_model, load_vae_file
from nodes.sd.components import load_taesd, load_text_encoder_file, load_unet_file
from nodes.sd.configs import LATENT_SCALE
from nodes.sd.families import family_spec
from nodes.sd.compile import compile_model
from nodes.sd.handles import ClipHandle, ModelHandle, VaeHandle, model_manager
from nodes.sd.lora import apply_lora
from nodes.sd.text_encoder import TextEncoder
from nodes.types import Choices, Clip, Model, Vae


# VAELoader offers TAESD when both halves are in models/vae_approx (`<name>_encoder.*`, `<name>_decoder.*`), with
# the latent scale of the family it pairs with; ComfyUI's list ends with "pixel_space" (no autoencoder, for
# pixel-space models), which we list and refuse.
TAESD_SCALES = {"taesd": LATENT_SCALE["sd1"], "taesdxl": LATENT_SCALE["sdxl"]}
PIXEL_SPACE = "pixel_space"


def _taesd_files(env: Environment, name: str) -> list[str] | None:
    """The encoder and decoder files of TAESD `name` in vae_approx, or None unless both are there."""
    files = env.paths.model_files("vae_approx")
    halves = [next((f for f in files if f.startswith(f"{name}_{part}.")), None) for part in ("encoder", "decoder")]
    return halves if None not in halves else None


def _vaes(env: Environment) -> list[str]:
    taesd = [name for name in TAESD_SCALES if _taesd_files(env, name) is not None]
    return env.paths.model_files("vae") + taesd + [PIXEL_SPACE]


def file_fingerprint(env: Environment, kind: str, name: str) -> list[Any]:
    """Size, mtime and inode of the file, or of every file of a diffusers folder (its weights included): a
    replaced model file is noticed without hashing gigabytes."""
    path = env.paths.model_path(kind, name)
    if path.is_dir():
        return [name, [[p.relative_to(path).as_posix(), *file_state(p)] for p in folder_files(path)]]
    return [name, *file_state(path)]


class CheckpointOutputs(NamedTuple):
    MODEL: Model
    CLIP: Clip
    VAE: Vae


@node(category="loaders", version="1.0.0", display_name="Load Checkpoint", aliases=("LoadCheckpoint",))
class CheckpointLoaderSimple(Node):
    """Load a Stable Diffusion checkpoint (SD1.x, SD2.x, SDXL; single file or diffusers folder)."""

    ckpt_name: Annotated[str, Choices.model_files("checkpoints")] = Input(tooltip="the checkpoint file to load")

    def run(self, ctx: Context) -> CheckpointOutputs:
        path = ctx.env.paths.model_path("checkpoints", self.ckpt_name)
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


@node(category="loaders", version="1.1.0", display_name="Load VAE")
class VAELoader(Node):
    """Load a standalone VAE (e.g. a fine-tuned decoder) from `models/vae`, or TAESD (`taesd` for SD1/SD2,
    `taesdxl` for SDXL: a tiny fast autoencoder) from its two files in `models/vae_approx`."""

    vae_name: Annotated[str, Choices(_vaes)] = Input()

    def run(self, ctx: Context) -> Vae:
        manager = model_manager(ctx.env)
        if self.vae_name == PIXEL_SPACE:
            raise ValueError("pixel_space is for pixel-space diffusion models, which this engine does not run")
        if self.vae_name in TAESD_SCALES:
            halves = _taesd_files(ctx.env, self.vae_name)
            if halves is None:
                raise FileNotFoundError(f"{self.vae_name} needs {self.vae_name}_encoder and {self.vae_name}_decoder "
                                        "files in models/vae_approx")
            encoder, decoder = (ctx.env.paths.model_path("vae_approx", name) for name in halves)
            taesd = load_taesd(encoder, decoder, dtype=ctx.env.precision.policy())
            return VaeHandle(taesd, manager, self.vae_name, TAESD_SCALES[self.vae_name])
        path = ctx.env.paths.model_path("vae", self.vae_name)
        vae = load_vae_file(path, allow_pickle=ctx.env.allow_pickle, dtype=ctx.env.precision.policy())
        return VaeHandle(vae, manager, self.vae_name)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        name = inputs["vae_name"]
        if name == PIXEL_SPACE:
            return name
        if name in TAESD_SCALES:
            return [file_fingerprint(env, "vae_approx", half) for half in _taesd_files(env, name) or []]
        return file_fingerprint(env, "vae", name)


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
    lora_name: Annotated[str, Choices.model_files("loras")] = Input(tooltip="the LoRA file")
    strength_model: float = _strength("diffusion model")
    strength_clip: float = _strength("CLIP model")

    def run(self, ctx: Context) -> LoraOutputs:
        path = ctx.env.paths.model_path("loras", self.lora_name)
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
    lora_name: Annotated[str, Choices.model_files("loras")] = Input(tooltip="the LoRA file")
    strength_model: float = _strength("diffusion model")

    def run(self, ctx: Context) -> Model:
        path = ctx.env.paths.model_path("loras", self.lora_name)
        model, _ = apply_lora(path, self.model, None, strength_model=self.strength_model,
                              allow_pickle=ctx.env.allow_pickle)
        return model

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return file_fingerprint(env, "loras", inputs["lora_name"])


@node(category="advanced/loaders", version="1.0.0", display_name="Load Checkpoint With Config (DEPRECATED)",
      deprecated=True)
class CheckpointLoader(Node):
    """Load a checkpoint; the config file is ignored (the architecture is read from the checkpoint itself).
    Deprecated: use Load Checkpoint."""

    config_name: Annotated[str, Choices.model_files("configs")] = Input()
    ckpt_name: Annotated[str, Choices.model_files("checkpoints")] = Input()

    def run(self, ctx: Context) -> CheckpointOutputs:
        return CheckpointLoaderSimple(ckpt_name=self.ckpt_name).run(ctx)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return file_fingerprint(env, "checkpoints", inputs["ckpt_name"])


@node(category="advanced/loaders", version="1.0.0", display_name="Load Diffusion Model")
class UNETLoader(Node):
    """Load a diffusion model (UNet) file from `models/diffusion_models` (or `models/unet`): SD1, SD2, SDXL base
    or refiner, original layout. fp8 weight types are not supported (use default)."""

    unet_name: Annotated[str, Choices.model_files("diffusion_models")] = Input()
    weight_dtype: Literal["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"] = Input()

    def run(self, ctx: Context) -> Model:
        if self.weight_dtype != "default":
            raise ValueError(f"weight_dtype {self.weight_dtype} is not supported: fp8 weights need fp8 kernels this "
                             "engine does not have; use default")
        path = ctx.env.paths.model_path("diffusion_models", self.unet_name)
        family, unet = load_unet_file(path, allow_pickle=ctx.env.allow_pickle, dtype=ctx.env.precision.policy())
        return ModelHandle(unet, family, model_manager(ctx.env), self.unet_name)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return file_fingerprint(env, "diffusion_models", inputs["unet_name"])


CLIP_TYPES = Literal["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart",
                     "cosmos", "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image",
                     "hunyuan_image"]
DUAL_CLIP_TYPES = Literal["sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image"]
# A text encoder file alone, by kind, makes the CLIP of this family (ComfyUI: CLIP-G alone is the refiner's).
SINGLE_CLIP_FAMILIES = {"l": "sd1", "h": "sd2", "g": "sdxl_refiner"}
ENCODER_NAMES = {"l": "CLIP-L", "h": "OpenCLIP ViT-H", "g": "OpenCLIP ViT-bigG (CLIP-G)"}


def _device() -> Any:
    # ComfyUI's "cpu" keeps the text encoder off the GPU; here the model manager places every model.
    return Input(None, optional=True, advanced=True)


def _load_encoder(ctx: Context, name: str):
    return load_text_encoder_file(ctx.env.paths.model_path("text_encoders", name), allow_pickle=ctx.env.allow_pickle,
                                  dtype=ctx.env.precision.policy())


@node(category="advanced/loaders", version="1.0.0", display_name="Load CLIP")
class CLIPLoader(Node):
    """Load a text encoder file from `models/text_encoders` (or `models/clip`). stable_diffusion: CLIP-L (SD1),
    OpenCLIP ViT-H (SD2) or ViT-bigG (SDXL refiner); the other types are not supported."""

    clip_name: Annotated[str, Choices.model_files("text_encoders")] = Input()
    type: CLIP_TYPES = Input()
    device: Literal["default", "cpu"] | None = _device()

    def run(self, ctx: Context) -> Clip:
        if self.type != "stable_diffusion":
            raise ValueError(f"CLIP type {self.type} is not supported (only stable_diffusion)")
        kind, model = _load_encoder(ctx, self.clip_name)
        family = family_spec(SINGLE_CLIP_FAMILIES[kind])
        return ClipHandle(TextEncoder(family, {kind: model}), model_manager(ctx.env), self.clip_name)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return file_fingerprint(env, "text_encoders", inputs["clip_name"])


@node(category="advanced/loaders", version="1.0.0")
class DualCLIPLoader(Node):
    """Load two text encoder files as one CLIP. sdxl: a CLIP-L file and a CLIP-G file (either order); the other
    types are not supported."""

    clip_name1: Annotated[str, Choices.model_files("text_encoders")] = Input()
    clip_name2: Annotated[str, Choices.model_files("text_encoders")] = Input()
    type: DUAL_CLIP_TYPES = Input()
    device: Literal["default", "cpu"] | None = _device()

    def run(self, ctx: Context) -> Clip:
        if self.type != "sdxl":
            raise ValueError(f"CLIP type {self.type} is not supported (only sdxl)")
        pairs = [_load_encoder(ctx, name) for name in (self.clip_name1, self.clip_name2)]
        kinds = [kind for kind, _ in pairs]
        if sorted(kinds) != ["g", "l"]:
            got = " and ".join(ENCODER_NAMES[kind] for kind in kinds)
            raise ValueError(f"sdxl needs a CLIP-L and a CLIP-G file, got {got} ({self.clip_name1}, {self.clip_name2})")
        loaded = dict(pairs)
        label = f"{self.clip_name1}+{self.clip_name2}"
        return ClipHandle(TextEncoder(family_spec("sdxl"), loaded), model_manager(ctx.env), label)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return [file_fingerprint(env, "text_encoders", inputs[name]) for name in ("clip_name1", "clip_name2")]
