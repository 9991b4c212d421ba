"""Model upscaling: UpscaleModelLoader (a model from `models/upscale_models`) and ImageUpscaleWithModel (tiled,
with progress per tile; `nodes.sd.upscale` holds the rules). ComfyUI's names, inputs and categories."""
from __future__ import annotations

from typing import Annotated, Any

from nodes.api import Context, Environment, Input, Node, node
from nodes.builtin.loaders import file_fingerprint
from nodes.sd.handles import model_manager
from nodes.sd.upscale import load_upscale_model
from nodes.types import Choices, Image, socket

UpscaleModel = socket("UPSCALE_MODEL")
MODULE = "comfy_extras.nodes_upscale_model"


@node(category="loaders", version="1.0.0", display_name="Load Upscale Model", python_module=MODULE)
class UpscaleModelLoader(Node):
    """Load an upscale model (ESRGAN, SwinIR, SPAN, Compact, … : the architectures spandrel detects)."""

    model_name: Annotated[str, Choices.model_files("upscale_models")] = Input()

    def run(self, ctx: Context) -> UpscaleModel:
        path = ctx.env.paths.model_path("upscale_models", self.model_name)
        return load_upscale_model(path, model_manager(ctx.env), allow_pickle=ctx.env.allow_pickle,
                                  source=self.model_name)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> Any:
        return file_fingerprint(env, "upscale_models", inputs["model_name"])


@node(category="image/upscaling", version="1.0.0", display_name="Upscale Image (using Model)",
      python_module=MODULE)
class ImageUpscaleWithModel(Node):
    """Upscale images with an upscale model, in overlapping tiles (512 px, halved when the device runs out of
    memory); the result is clamped to 0..1."""

    upscale_model: UpscaleModel = Input()
    image: Image = Input()

    def run(self, ctx: Context) -> Image:
        pixels = self.image.movedim(-1, 1)
        out = self.upscale_model.upscale(pixels, on_tile=ctx.progress)
        return out.clamp(0.0, 1.0).movedim(1, -1)
