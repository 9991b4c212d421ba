"""Image conversion and PNG files, with ComfyUI's conventions.

IMAGE is float32 [B, H, W, C] in 0..1 on the CPU; MASK is [B, H, W] with 1 = masked (LoadImage: 1 − alpha).
Pixels become uint8 by truncation (`uint8(clip(255·v, 0, 255))`), not rounding, as ComfyUI does, so the same
latent gives the same bytes in both engines. PNG text chunks use `json.dumps` defaults (ASCII, ", " and ": ").
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from PIL import Image as PILImage
from PIL import ImageOps, ImageSequence
from PIL.PngImagePlugin import PngInfo

log = logging.getLogger(__name__)
PNG_LEVEL_SAVE = 4
PNG_LEVEL_PREVIEW = 1


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """One [H, W, C] image in 0..1 → uint8 by truncation."""
    return np.clip(image.detach().cpu().float().numpy() * 255.0, 0, 255).astype(np.uint8)


def png_info(texts: Mapping[str, Any]) -> PngInfo:
    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, value if isinstance(value, str) else json.dumps(value))
    return info


def save_png(image: torch.Tensor, path: Path, texts: Mapping[str, Any], level: int = PNG_LEVEL_SAVE) -> None:
    pil = PILImage.fromarray(to_uint8(image))
    pil.save(path, pnginfo=png_info(texts) if texts else None, compress_level=level)


def load_image(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """IMAGE [F, H, W, 3] and MASK [F, H, W] from a file (all frames of the first frame's size)."""
    with PILImage.open(path) as opened:
        frames, masks = [], []
        size = None
        for frame in ImageSequence.Iterator(opened):
            frame = ImageOps.exif_transpose(frame)
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            rgb = frame.convert("RGB")
            if size is None:
                size = rgb.size
            elif rgb.size != size:
                continue
            frames.append(torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0))
            if "A" in frame.getbands():
                alpha = np.asarray(frame.getchannel("A"), dtype=np.float32) / 255.0
                masks.append(1.0 - torch.from_numpy(alpha))
            else:
                masks.append(torch.zeros((64, 64), dtype=torch.float32))
    return torch.stack(frames), torch.stack(masks)


def read_png_texts(path: Path) -> dict[str, str]:
    with PILImage.open(path) as img:
        return dict(getattr(img, "text", {}) or {})


def output_names(folder: Path, prefix: str, width: int, height: int) -> tuple[Path, str, int]:
    """Resolve a filename prefix: (directory, base name, first free counter).

    `%width%`, `%height%`, `%year%` … `%second%` are substituted; the directory part of the prefix is a
    subfolder that must stay inside `folder`; the counter is 1 + the largest existing `<base>_<NNNNN>_` file.
    """
    now = time.localtime()
    values = {"width": width, "height": height, "year": now.tm_year, "month": f"{now.tm_mon:02}",
              "day": f"{now.tm_mday:02}", "hour": f"{now.tm_hour:02}", "minute": f"{now.tm_min:02}",
              "second": f"{now.tm_sec:02}"}
    for key, value in values.items():
        prefix = prefix.replace(f"%{key}%", str(value))
    sub, _, base = prefix.replace("\\", "/").rpartition("/")
    root = folder.resolve()
    directory = (root / sub).resolve()
    if directory != root and root not in directory.parents or "\0" in prefix or not base:
        raise ValueError(f"filename prefix {prefix!r} must name a file inside the output folder")
    directory.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(re.escape(base).replace(re.escape("%batch_num%"), r"\d+") + r"_(\d{5,})_")
    taken = [int(m.group(1)) for p in directory.iterdir() if (m := pattern.match(p.name))]
    return directory, base, max(taken, default=0) + 1


def preview_jpeg(image: Any, size: int) -> bytes | None:
    """A PIL image shrunk to fit size × size (bilinear), as JPEG quality 95 (ComfyUI's sampler previews)."""
    if not isinstance(image, PILImage.Image):
        log.warning("preview of type %s ignored (a PIL image is expected)", type(image).__name__)
        return None
    img = image.convert("RGB") if image.mode != "RGB" else image.copy()
    img.thumbnail((size, size), PILImage.Resampling.BILINEAR)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=95)
    return out.getvalue()


def claim_file(directory: Path, name_for: Callable[[int], str], counter: int) -> tuple[str, int]:
    """Create the file `name_for(counter)` in `directory`, or the first free name after it: (name, counter).

    The file is created empty and exclusively (O_EXCL): two writers sharing an output folder (threads, or two
    servers on one data folder) never get the same name, so no saved file is ever overwritten. The caller then
    writes the claimed file.
    """
    while True:
        name = name_for(counter)
        try:
            os.close(os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            counter += 1
            continue
        return name, counter
