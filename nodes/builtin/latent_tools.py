"""Latent utility nodes: LatentCompositeMasked, LatentComposite, LatentBlend, LatentCrop, SaveLatent, LoadLatent,
LatentFlip, LatentRotate (ComfyUI's class names, inputs, defaults and categories).

- LatentCompositeMasked pastes with `image_tools.composite`: x, y are pixels (step 8), divided by 8; the mask is
  in pixels too and is resized (bilinear) to the source latent's size.
- LatentComposite pastes samples_from at (x // 8, y // 8), cut where it runs off samples_to; its batch must be
  samples_to's or 1. With f = feather // 8 > 0 the pasted block is blended, out = m·from + (1 − m)·to, through
  m[i, j] = r(i)·c(j): along each axis, an edge that lies inside samples_to (not on its border) ramps in over f
  cells, cell k from that edge (0-based) weighing (k + 1)/f (both edges multiply where they meet).
- LatentBlend: out = blend_factor·samples1 + (1 − blend_factor)·samples2 (ComfyUI's "normal" mode, its only
  one); samples2 of another size is first resized bicubic with a centre crop to samples1's size.
- LatentCrop: x, y, width, height are pixels divided by 8; x and y are pulled back so that at least 8 cells
  (64 px) remain when the latent has them. The noise mask is kept as it is (as in ComfyUI).
- SaveLatent writes `<prefix>_<NNNNN>_.latent` in the output folder (numbering as SaveImage, `output_names`, with
  %width%/%height% 0 as ComfyUI does): a safetensors file holding `latent_tensor` and an empty
  `latent_format_version_0` marker, with metadata `prompt` and each `extra_pnginfo` key as JSON (ComfyUI's keys),
  plus our `latentloom` run record. The editor gets `ui.latents`.
- LoadLatent reads a `.latent` of the input folder (never outside it: `DataPaths.resolve`). A file without the
  version marker is an old-format one that stored scaled latents, so it is multiplied by 1/0.18215, as ComfyUI
  does; a current one comes back bit for bit. Its fingerprint is the file's sha256.
- LatentFlip and LatentRotate keep the LATENT's other keys as they are (ComfyUI does not flip the noise mask;
  the sampler resizes a mask to the latent anyway). Rotation is clockwise.
"""
from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import torch
from safetensors.torch import load_file, save_file

from nodes.api import Context, Environment, Input, Node, node
from nodes.builtin.image import metadata_texts
from nodes.builtin.image_tools import composite
from nodes.builtin.scale import resize
from nodes.identity import hash_file, run_record
from nodes.images import claim_file, output_names
from nodes.types import MAX_RESOLUTION, Choices, Latent, Mask

LATENT_SUFFIX = ".latent"
VERSION_MARKER = "latent_format_version_0"
OLD_FORMAT_SCALE = 1.0 / 0.18215


@node(category="latent", version="1.0.0", python_module="comfy_extras.nodes_mask")
class LatentCompositeMasked(Node):
    """Paste latent `source` onto `destination` at pixel (x, y), blended through the optional (pixel) mask."""

    destination: Latent = Input()
    source: Latent = Input()
    x: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8)
    y: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8)
    resize_source: bool = Input(False)
    mask: Mask | None = Input(None, optional=True)

    def run(self, ctx: Context) -> Latent:
        pasted = composite(self.destination["samples"], self.source["samples"], self.x, self.y, self.mask, 8,
                           self.resize_source)
        return {**self.destination, "samples": pasted}


def edge_ramp(length: int, feather: int, ramp_start: bool, ramp_end: bool) -> torch.Tensor:
    """LatentComposite's weights along one axis of the pasted block (see the module paragraph)."""
    weights = torch.ones(length)
    steps = (torch.arange(min(feather, length)) + 1) / feather
    if ramp_start:
        weights[:len(steps)] *= steps
    if ramp_end:
        weights[length - len(steps):] *= steps.flip(0)
    return weights


@node(category="latent", version="1.0.0", display_name="Latent Composite")
class LatentComposite(Node):
    """Paste samples_from onto samples_to at pixel (x, y); feather fades its inner edges in over that many px."""

    samples_to: Latent = Input()
    samples_from: Latent = Input()
    x: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8)
    y: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8)
    feather: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8)

    def run(self, ctx: Context) -> Latent:
        to, source = self.samples_to["samples"], self.samples_from["samples"]
        if source.shape[0] not in (1, to.shape[0]):
            raise ValueError(f"samples_from has a batch of {source.shape[0]}, samples_to of {to.shape[0]}: "
                             "they must match, or samples_from must hold one latent")
        left, top, feather = self.x // 8, self.y // 8, self.feather // 8
        out = to.clone()
        source = source[:, :, :max(0, to.shape[2] - top), :max(0, to.shape[3] - left)].to(out)
        height, width = source.shape[2:]
        if height == 0 or width == 0:
            return {**self.samples_to, "samples": out}
        region = out[:, :, top:top + height, left:left + width]
        if feather > 0:
            rows = edge_ramp(height, feather, top != 0, top + height < to.shape[2])
            cols = edge_ramp(width, feather, left != 0, left + width < to.shape[3])
            weight = torch.outer(rows, cols).to(out)
            source = weight * source + (1.0 - weight) * region
        region[...] = source
        return {**self.samples_to, "samples": out}


@node(category="_for_testing", version="1.0.0", display_name="Latent Blend")
class LatentBlend(Node):
    """Mix two latents: blend_factor of samples1 plus the rest of samples2 (resized to samples1 if needed)."""

    samples1: Latent = Input()
    samples2: Latent = Input()
    blend_factor: float = Input(0.5, ge=0, le=1, step=0.01)

    def run(self, ctx: Context) -> Latent:
        first, second = self.samples1["samples"], self.samples2["samples"].to(self.samples1["samples"])
        if second.shape[1] != first.shape[1]:
            raise ValueError(f"cannot blend latents of {first.shape[1]} and {second.shape[1]} channels")
        if second.shape[0] not in (1, first.shape[0]) and first.shape[0] != 1:
            raise ValueError(f"cannot blend batches of {first.shape[0]} and {second.shape[0]} latents")
        if second.shape[2:] != first.shape[2:]:
            second = resize(second, first.shape[3], first.shape[2], "bicubic", "center")
        blended = first * self.blend_factor + second * (1.0 - self.blend_factor)
        return {**self.samples1, "samples": blended}


@node(category="latent/transform", version="1.0.0", display_name="Crop Latent")
class LatentCrop(Node):
    """Cut a width × height pixel window at (x, y) out of latents (all in pixels, multiples of 8)."""

    samples: Latent = Input()
    width: int = Input(512, ge=64, le=MAX_RESOLUTION, step=8)
    height: int = Input(512, ge=64, le=MAX_RESOLUTION, step=8)
    x: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8)
    y: int = Input(0, ge=0, le=MAX_RESOLUTION, step=8)

    def run(self, ctx: Context) -> Latent:
        latent = self.samples["samples"]
        left = max(0, min(self.x // 8, latent.shape[3] - 8))
        top = max(0, min(self.y // 8, latent.shape[2] - 8))
        cropped = latent[:, :, top:top + self.height // 8, left:left + self.width // 8]
        return {**self.samples, "samples": cropped}


def latent_metadata(ctx: Context) -> dict[str, str]:
    """Safetensors metadata (strings only): ComfyUI's `prompt` and extra_pnginfo keys, then our run record."""
    meta = {key: json.dumps(value) for key, value in metadata_texts(ctx).items()}
    meta["latentloom"] = json.dumps({**run_record(ctx), "latent": {"node": ctx.node_id}})
    return meta


@node(category="_for_testing", version="1.0.0", output=True, hidden=("PROMPT", "EXTRA_PNGINFO"))
class SaveLatent(Node):
    """Save latents as a .latent (safetensors) file in the output folder, to load again with LoadLatent."""

    samples: Latent = Input()
    filename_prefix: str = Input("latents/ComfyUI")

    def run(self, ctx: Context) -> None:
        folder = ctx.env.paths.output
        directory, base, counter = output_names(folder, self.filename_prefix, 0, 0)
        name, _ = claim_file(directory, lambda n: f"{base}_{n:05}_{LATENT_SUFFIX}", counter)
        tensors = {"latent_tensor": self.samples["samples"].detach().cpu().contiguous(),
                   VERSION_MARKER: torch.tensor([])}
        save_file(tensors, str(directory / name), metadata=latent_metadata(ctx))
        subfolder = directory.relative_to(folder.resolve()).as_posix()
        ctx.show(latents=[{"filename": name, "subfolder": "" if subfolder == "." else subfolder, "type": "output"}])


def input_latents(env: Environment) -> list[str]:
    return [name for name in env.paths.input_files() if name.endswith(LATENT_SUFFIX)]


@node(category="_for_testing", version="1.0.0")
class LoadLatent(Node):
    """Load latents saved by SaveLatent (a .latent file in the input folder)."""

    latent: Annotated[str, Choices(input_latents)] = Input()

    def run(self, ctx: Context) -> Latent:
        tensors = load_file(str(ctx.env.paths.resolve(ctx.env.paths.input, self.latent)))
        samples = tensors["latent_tensor"].float()
        if VERSION_MARKER not in tensors:
            samples = samples * OLD_FORMAT_SCALE
        return {"samples": samples}

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> str:
        return hash_file(env.paths.resolve(env.paths.input, inputs["latent"]))


@node(category="latent/transform", version="1.0.0", display_name="Flip Latent")
class LatentFlip(Node):
    """Mirror latents: "x-axis" flips top to bottom, "y-axis" left to right."""

    samples: Latent = Input()
    flip_method: Literal["x-axis: vertically", "y-axis: horizontally"] = Input("x-axis: vertically")

    def run(self, ctx: Context) -> Latent:
        dim = 2 if self.flip_method.startswith("x") else 3
        return {**self.samples, "samples": torch.flip(self.samples["samples"], dims=[dim])}


@node(category="latent/transform", version="1.0.0", display_name="Rotate Latent")
class LatentRotate(Node):
    """Rotate latents clockwise by a multiple of 90 degrees."""

    samples: Latent = Input()
    rotation: Literal["none", "90 degrees", "180 degrees", "270 degrees"] = Input("none")

    def run(self, ctx: Context) -> Latent:
        turns = {"none": 0, "90 degrees": 1, "180 degrees": 2, "270 degrees": 3}[self.rotation]
        # rot90 from the width axis towards the height axis turns the picture clockwise.
        return {**self.samples, "samples": torch.rot90(self.samples["samples"], k=turns, dims=[3, 2])}
