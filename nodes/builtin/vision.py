"""Image-prompt nodes: CLIPVisionLoader and CLIPVisionEncode (`nodes.sd.clip_vision`); unCLIPConditioning, which
adds ComfyUI's `unclip_conditioning` entries to a conditioning (what an unCLIP model reads when sampling);
StyleModelLoader and StyleModelApply (`nodes.sd.style_model`). ComfyUI's names, inputs and categories.

StyleModelApply, as ComfyUI: the style tokens of every image of the batch are joined into one sequence, multiplied
by `strength` (`multiply`), and appended to each conditioning's prompt tokens. `attn_bias` (strength as a log
bias in cross-attention) needs attention masks in the sampler, which it does not have: it is accepted only at
strength 1, where it changes nothing.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

import torch

from nodes.api import Context, Environment, Input, Node, node
from nodes.builtin.loaders import file_fingerprint
from nodes.sd.clip_vision import load_clip_vision
from nodes.sd.handles import model_manager
from nodes.sd.style_model import load_style_model
from nodes.types import Choices, Conditioning, Image, socket

ClipVision = socket("CLIP_VISION")
ClipVisionOutput = socket("CLIP_VISION_OUTPUT")
StyleModel = socket("STYLE_MODEL")


@node(category="loaders", version="1.0.0", display_name="Load CLIP Vision")
class CLIPVisionLoader(Node):
    """Load a CLIP image encoder from `models/clip_vision` (transformers' or OpenCLIP's single-file layout)."""

    clip_name: Annotated[str, Choices.model_files("clip_vision")] = Input()

    def run(self, ctx: Context) -> ClipVision:
        path = ctx.env.paths.model_path("clip_vision", self.clip_name)
        return load_clip_vision(path, model_manager(ctx.env), allow_pickle=ctx.env.allow_pickle,
                                source=self.clip_name)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return file_fingerprint(env, "clip_vision", inputs["clip_name"])


@node(category="conditioning", version="1.0.0", display_name="CLIP Vision Encode")
class CLIPVisionEncode(Node):
    """Encode images with a CLIP vision model; `center` crops to a square first, `none` squeezes the image."""

    clip_vision: ClipVision = Input()
    image: Image = Input()
    crop: Literal["center", "none"] = Input("center")

    def run(self, ctx: Context) -> ClipVisionOutput:
        return self.clip_vision.encode(self.image, crop=self.crop == "center")


@node(category="conditioning", version="1.0.0")
class unCLIPConditioning(Node):  # noqa: N801 - ComfyUI's node name
    """Add an image to a conditioning for unCLIP models: the model sees its CLIP embedding at `strength`, noised
    by `noise_augmentation` (0: as encoded)."""

    conditioning: Conditioning = Input()
    clip_vision_output: ClipVisionOutput = Input()
    strength: float = Input(1.0, ge=-10.0, le=10.0, step=0.01)
    noise_augmentation: float = Input(0.0, ge=0.0, le=1.0, step=0.01)

    def run(self, ctx: Context) -> Conditioning:
        if self.strength == 0:
            return self.conditioning
        entry = {"clip_vision_output": self.clip_vision_output, "strength": self.strength,
                 "noise_augmentation": self.noise_augmentation}
        return [[cond, {**extra, "unclip_conditioning": [*extra.get("unclip_conditioning", []), entry]}]
                for cond, extra in self.conditioning]


@node(category="loaders", version="1.0.0", display_name="Load Style Model")
class StyleModelLoader(Node):
    """Load a T2I-Adapter style model from `models/style_models`."""

    style_model_name: Annotated[str, Choices.model_files("style_models")] = Input()

    def run(self, ctx: Context) -> StyleModel:
        path = ctx.env.paths.model_path("style_models", self.style_model_name)
        return load_style_model(path, model_manager(ctx.env), allow_pickle=ctx.env.allow_pickle,
                                source=self.style_model_name)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return file_fingerprint(env, "style_models", inputs["style_model_name"])


@node(category="conditioning/style_model", version="1.0.0", display_name="Apply Style Model")
class StyleModelApply(Node):
    """Add an image's style to a conditioning: the style model turns its CLIP vision encoding into extra prompt
    tokens."""

    conditioning: Conditioning = Input()
    style_model: StyleModel = Input()
    clip_vision_output: ClipVisionOutput = Input()
    strength: float = Input(1.0, ge=0.0, le=10.0, step=0.001)
    strength_type: Literal["multiply", "attn_bias"] = Input("multiply")

    def run(self, ctx: Context) -> Conditioning:
        if self.strength_type == "attn_bias" and self.strength != 1.0:
            raise ValueError("strength_type attn_bias needs attention masks in the sampler, which are not "
                             "supported: use multiply")
        tokens = self.style_model.tokens(self.clip_vision_output.last_hidden_state)
        tokens = tokens.flatten(0, 1).unsqueeze(0)
        if self.strength_type == "multiply":
            tokens = tokens * self.strength
        out = []
        for cond, extra in self.conditioning:
            if cond.shape[-1] != tokens.shape[-1]:
                raise ValueError(f"the style model makes tokens of width {tokens.shape[-1]}, the conditioning's "
                                 f"are {cond.shape[-1]} wide (another model family)")
            style = tokens.to(cond.device, cond.dtype).expand(cond.shape[0], -1, -1)
            out.append([torch.cat([cond, style], dim=1), dict(extra)])
        return out
