"""What a checkpoint is, cheaply, for the editor's first minutes: its family and the image size it was trained at.

Read from tensor names and shapes (a single file's header, one tensor for SD2's prediction type) or a diffusers
folder's configs; no weights are loaded. Sizes: SD1.x and SD2.x-base 512, SD2.x v-prediction 768, SDXL 1024,
and 64 for the tiny demo and test models (a UNet narrower than Stable Diffusion's 320 channels).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nodes.sd.errors import CheckpointError

FAMILY_SIZES = {"sd1": 512, "sd2": 512, "sdxl": 1024, "sdxl_refiner": 1024}
V_PREDICTION_SIZES = {"sd2": 768}
TINY_SIZE = 64
SD_WIDTH = 320  # the first UNet level's channels in every released SD1.x/SD2.x/SDXL model


@dataclass(frozen=True)
class CheckpointSummary:
    family: str          # "sd1", "sd2" or "sdxl"
    prediction: str      # "eps" or "v"
    size: int            # the side of the square image it suits

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(path: Path, *, allow_pickle: bool = False) -> CheckpointSummary:
    """Family, prediction type and suggested size of a checkpoint file or diffusers folder.

    Raises `CheckpointError` for a file that is not a checkpoint we can load.
    """
    if path.is_dir():
        family, prediction, first_width = _folder(path)
    else:
        from nodes.sd.families import detect
        from nodes.sd.statedict import open_state_dict

        arch = detect(open_state_dict(path, allow_pickle=allow_pickle))
        family, prediction = arch.family.name, arch.family.prediction
        first_width = arch.unet.block_out_channels[0]
    if first_width < SD_WIDTH:
        size = TINY_SIZE
    elif prediction == "v":
        size = V_PREDICTION_SIZES.get(family, FAMILY_SIZES[family])
    else:
        size = FAMILY_SIZES[family]
    return CheckpointSummary(family, prediction, size)


def _folder(path: Path) -> tuple[str, str, int]:
    from nodes.sd.checkpoint import folder_family

    try:
        config = json.loads((path / "unet" / "config.json").read_text(encoding="utf-8"))
        scheduler = path / "scheduler" / "scheduler_config.json"
        schedule = json.loads(scheduler.read_text(encoding="utf-8")) if scheduler.is_file() else {}
    except (OSError, ValueError) as exc:
        raise CheckpointError(path, f"unreadable diffusers configs ({exc})") from None
    prediction = "v" if schedule.get("prediction_type") == "v_prediction" else "eps"
    return folder_family(config, path), prediction, int((config.get("block_out_channels") or [SD_WIDTH])[0])
