"""Image-prompt nodes: CLIPVisionLoader and CLIPVisionEncode (`nodes.sd.clip_vision`), and unCLIPConditioning,
which adds ComfyUI's `unclip_conditioning` entries to a conditioning (what an unCLIP model reads when sampling).
ComfyUI's names, inputs and categories."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from nodes.api import Context, Environment, Input, Node, node
from nodes.builtin.loaders import file_fingerprint
from nodes.sd.clip_vision import load_clip_vision
from nodes.sd.handles import model_manager
from nodes.types import Choices, Conditioning, Image, socket

ClipVision = socket("CLIP_VISION")
ClipVisionOutput = socket("CLIP_VISION_OUTPUT")


def _clip_vision_files(env: Environment) -> list[str]:
    return env.paths.model_files("clip_vision")


@node(category="loaders", version="1.0.0", display_name="Load CLIP Vision")
class CLIPVisionLoader(Node):
    """Load a CLIP image encoder from `models/clip_vision` (transformers' or OpenCLIP's single-file layout)."""

    clip_name: Annotated[str, Choices(_clip_vision_files)] = Input()

    def run(self, ctx: Context) -> ClipVision:
        path = ctx.env.paths.resolve(ctx.env.paths.models("clip_vision"), self.clip_name)
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
