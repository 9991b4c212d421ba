"""Text conditioning nodes.

The text encoders read `embedding:NAME` words from `models/embeddings` (`nodes.sd.embeddings`); since those
files are outside the inputs, the nodes' fingerprints hold the size and mtime of the files their texts name
(of the whole folder when a text comes through a link), so a replaced embedding re-runs the encoding.
"""
from __future__ import annotations

from typing import Any

from nodes.api import Context, Environment, Input, Node, node
from nodes.sd.embeddings import embedding_library
from nodes.types import MAX_RESOLUTION, Clip, Conditioning


def embeddings_fingerprint(env: Environment, inputs: dict[str, Any], names: tuple[str, ...]) -> Any:
    """The embedding files the text inputs `names` refer to (None when they name none)."""
    library = embedding_library(env)
    prints = [library.fingerprint(text if isinstance(text := inputs.get(name), str) else None) for name in names]
    return prints if any(p is not None for p in prints) else None


@node(category="conditioning", version="1.0.0", display_name="CLIP Text Encode (Prompt)")
class CLIPTextEncode(Node):
    """Encode a prompt with CLIP into conditioning; `(word:1.2)` weights words, `embedding:NAME` inserts a
    textual-inversion embedding from models/embeddings, long prompts are chunked."""

    text: str = Input(multiline=True, dynamic_prompts=True, tooltip="the text to encode")
    clip: Clip = Input(tooltip="the CLIP model used to encode the text")

    def run(self, ctx: Context) -> Conditioning:
        if self.clip is None:
            raise ValueError("clip input is invalid: None (the checkpoint has no text encoder)")
        cond, pooled = self.clip.encode(self.text, embedding_library(ctx.env))
        return [[cond, {"pooled_output": pooled}]]

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return embeddings_fingerprint(env, inputs, ("text",))


@node(category="conditioning", version="1.0.0", display_name="CLIP Set Last Layer")
class CLIPSetLastLayer(Node):
    """Read the text encoder's output from an earlier layer ("CLIP skip": -2 skips the last layer)."""

    clip: Clip = Input()
    stop_at_clip_layer: int = Input(-1, ge=-24, le=-1)

    def run(self, ctx: Context) -> Clip:
        return self.clip.with_last_layer(self.stop_at_clip_layer)


@node(category="advanced/conditioning", version="1.0.0", display_name="CLIP Text Encode SDXL",
      python_module="comfy_extras.nodes_clip_sdxl")
class CLIPTextEncodeSDXL(Node):
    """Encode SDXL prompts: `text_g` for the large CLIP-G encoder, `text_l` for CLIP-L, with the image size and
    crop the model is told about (size conditioning)."""

    clip: Clip = Input()
    width: int = Input(1024, ge=0, le=MAX_RESOLUTION)
    height: int = Input(1024, ge=0, le=MAX_RESOLUTION)
    crop_w: int = Input(0, ge=0, le=MAX_RESOLUTION)
    crop_h: int = Input(0, ge=0, le=MAX_RESOLUTION)
    target_width: int = Input(1024, ge=0, le=MAX_RESOLUTION)
    target_height: int = Input(1024, ge=0, le=MAX_RESOLUTION)
    text_g: str = Input(multiline=True, dynamic_prompts=True)
    text_l: str = Input(multiline=True, dynamic_prompts=True)

    def run(self, ctx: Context) -> Conditioning:
        cond, pooled = self.clip.encode_sdxl(self.text_g, self.text_l, embedding_library(ctx.env))
        sizes = {"width": self.width, "height": self.height, "crop_w": self.crop_w, "crop_h": self.crop_h,
                 "target_width": self.target_width, "target_height": self.target_height}
        return [[cond, {"pooled_output": pooled, **sizes}]]

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return embeddings_fingerprint(env, inputs, ("text_g", "text_l"))


@node(category="advanced/conditioning", version="1.0.0", python_module="comfy_extras.nodes_clip_sdxl")
class CLIPTextEncodeSDXLRefiner(Node):
    """Encode a prompt for the SDXL refiner, with the aesthetic score it is told to aim for (6 for the positive
    prompt; workflows give the negative 2.5) and the image size (size conditioning)."""

    ascore: float = Input(6.0, ge=0.0, le=1000.0, step=0.01)
    width: int = Input(1024, ge=0, le=MAX_RESOLUTION)
    height: int = Input(1024, ge=0, le=MAX_RESOLUTION)
    text: str = Input(multiline=True, dynamic_prompts=True)
    clip: Clip = Input()

    def run(self, ctx: Context) -> Conditioning:
        cond, pooled = self.clip.encode(self.text, embedding_library(ctx.env))
        extras = {"aesthetic_score": self.ascore, "width": self.width, "height": self.height}
        return [[cond, {"pooled_output": pooled, **extras}]]

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return embeddings_fingerprint(env, inputs, ("text",))
