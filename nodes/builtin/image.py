"""Image nodes: load from the input folder, save to the output folder, preview to the temp folder."""
from __future__ import annotations

import random
import string
from typing import Annotated, Any, NamedTuple

from nodes.api import Context, Environment, Input, Node, node
from nodes.identity import hash_file, run_record
from nodes.images import PNG_LEVEL_PREVIEW, PNG_LEVEL_SAVE, claim_file, load_image, output_names, save_png
from nodes.types import Choices, Image, Mask


class ImageAndMask(NamedTuple):
    IMAGE: Image
    MASK: Mask


def input_images(env: Environment) -> list[str]:
    return [name for name in env.paths.input_files()
            if name.lower().endswith((".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"))]


@node(category="image", version="1.0.0", display_name="Load Image")
class LoadImage(Node):
    """Load an image from the input folder; its alpha channel becomes the mask (1 = transparent)."""

    image: Annotated[str, Choices(input_images)] = Input(image_upload=True)

    def run(self, ctx: Context) -> ImageAndMask:
        pixels, mask = load_image(ctx.env.paths.resolve(ctx.env.paths.input, self.image))
        return ImageAndMask(pixels, mask)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], env: Environment) -> str:
        return hash_file(env.paths.resolve(env.paths.input, inputs["image"]))


def _save_batch(ctx: Context, images: Any, folder_kind: str, prefix: str, level: int,
                texts: dict[str, Any]) -> list[dict[str, str]]:
    folder = getattr(ctx.env.paths, folder_kind)
    height, width = int(images.shape[1]), int(images.shape[2])
    directory, base, counter = output_names(folder, prefix, width, height)
    record = run_record(ctx)
    results = []
    for index, image in enumerate(images):
        stem = base.replace('%batch_num%', str(index))
        name, counter = claim_file(directory, lambda n: f"{stem}_{n:05}_.png", counter)
        own = {"latentloom": {**record, "image": {"node": ctx.node_id, "batch_index": index}}}
        save_png(image, directory / name, {**texts, **own}, level)
        subfolder = directory.relative_to(folder.resolve()).as_posix()
        results.append({"filename": name, "subfolder": "" if subfolder == "." else subfolder, "type": folder_kind})
        counter += 1
    return results


def metadata_texts(ctx: Context) -> dict[str, Any]:
    """PNG text chunks: the prompt that ran, then each key of extra_data["extra_pnginfo"] (e.g. workflow).

    `_save_batch` adds our own `latentloom` chunk after them: versions, device, model hashes and which image of
    which node the file is (`nodes.identity.run_record`), what `main.py reproduce` needs.
    """
    texts: dict[str, Any] = {"prompt": ctx.prompt}
    texts.update(ctx.extra_data.get("extra_pnginfo") or {})
    return texts


@node(category="image", version="1.0.0", display_name="Save Image", output=True,
      hidden=("PROMPT", "EXTRA_PNGINFO"))
class SaveImage(Node):
    """Save images as PNG files in the output folder, with the workflow that made them in the file."""

    images: Image = Input(tooltip="the images to save")
    filename_prefix: str = Input("ComfyUI", tooltip="file name prefix; may contain a subfolder and "
                                 "%width%, %height%, %year%, %month%, %day%, %hour%, %minute%, %second%")

    def run(self, ctx: Context) -> None:
        saved = _save_batch(ctx, self.images, "output", self.filename_prefix, PNG_LEVEL_SAVE, metadata_texts(ctx))
        ctx.show(images=saved)


@node(category="image", version="1.0.0", display_name="Preview Image", output=True,
      hidden=("PROMPT", "EXTRA_PNGINFO"))
class PreviewImage(Node):
    """Show images in the editor without keeping them (written to the temp folder)."""

    images: Image = Input()

    def run(self, ctx: Context) -> None:
        suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(5))
        saved = _save_batch(ctx, self.images, "temp", f"ComfyUI_temp_{suffix}", PNG_LEVEL_PREVIEW,
                            metadata_texts(ctx))
        ctx.show(images=saved)
