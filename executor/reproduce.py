"""Reproduce an image from its own PNG metadata: re-run the embedded prompt and compare the pixels.

What is read from the file: the `prompt` chunk (the API prompt that ran, seeds resolved), the other ComfyUI
chunks (normally `workflow`; given to the run again as `extra_pnginfo`), and our `latentloom` chunk: which node and
batch index the image is, the sha256 of each model used (so a renamed model is found by its hash) and the device
and library versions it was made with. The run writes into a scratch folder, never into the data folder's
outputs. The verdict compares decoded pixels: `match` when byte-identical (expected on the same device class with
the same versions), else `differs` with the largest absolute difference and the PSNR. A ComfyUI image (no
`latentloom` chunk) is compared with the closest image the run saved.
"""
from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image as PILImage
from pydantic import BaseModel, ConfigDict, ValidationError

from executor.errors import PromptError, format_errors
from executor.prepare import admit
from executor.run import Executor
from nodes.api import Environment
from nodes.identity import environment_record, known_hashes
from nodes.paths import DataPaths
from nodes.registry import Registry

VERSION_KEYS = ("version", "torch", "diffusers", "transformers", "python")


@dataclass(frozen=True)
class Comparison:
    identical: bool
    max_abs_diff: int
    psnr: float          # dB; inf when identical
    shape: tuple[int, ...]

    def describe(self) -> str:
        size = "x".join(str(s) for s in self.shape)
        if self.identical:
            return f"pixels are byte-identical ({size})"
        return f"max abs diff {self.max_abs_diff}, PSNR {self.psnr:.2f} dB over {size}"


@dataclass
class Reproduction:
    status: Literal["match", "differs", "invalid", "failed"]
    message: str = ""
    comparison: Comparison | None = None
    notes: list[str] = field(default_factory=list)
    made_on: str | None = None
    now_on: str | None = None
    image: str | None = None            # which output: "node 9, image 1"
    reproduced: bytes | None = None     # the reproduced PNG file


class _ScratchPaths(DataPaths):
    """The data folder, with outputs and temporary files redirected to a scratch folder."""

    def __init__(self, base: DataPaths, scratch: Path) -> None:
        super().__init__(base.root)
        self.scratch = scratch

    @property
    def output(self) -> Path:
        return self._scratch_dir("output")

    @property
    def temp(self) -> Path:
        return self._scratch_dir("temp")

    def _scratch_dir(self, name: str) -> Path:
        path = self.scratch / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def read_metadata(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None, np.ndarray]:
    """(prompt, extra_pnginfo, latentloom record or None, pixels) of a PNG; raises ValueError when unusable."""
    try:
        with PILImage.open(path) as img:
            texts = dict(getattr(img, "text", {}) or {})
            pixels = np.asarray(img.convert("RGBA" if "A" in img.getbands() else "RGB"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if "prompt" not in texts:
        raise ValueError(f"{path} has no embedded prompt (was it saved with metadata?)")
    prompt = _json(texts["prompt"], "prompt")
    record = _checked(_json(texts["latentloom"], "latentloom")) if "latentloom" in texts else None
    extra = {k: _maybe_json(v) for k, v in texts.items() if k not in ("prompt", "latentloom")}
    return prompt, extra, record, pixels


class _ImageRecord(BaseModel):
    node: str | int
    batch_index: int = 0


class _ModelRecord(BaseModel):
    kind: str
    name: str
    sha256: str


class _DeviceRecord(BaseModel):
    type: str | None = None
    name: str | None = None


class _Record(BaseModel):
    """The fields of a `latentloom` chunk that reproduction reads (any others are ignored)."""

    model_config = ConfigDict(extra="allow")
    image: _ImageRecord | None = None
    models: list[_ModelRecord] = []
    device: _DeviceRecord | None = None
    dtypes: dict[str, str] | None = None


def _checked(record: dict[str, Any]) -> dict[str, Any]:
    try:
        _Record.model_validate(record)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"the latentloom chunk is malformed: {where}: {first['msg']}") from None
    return record


def reproduce(path: Path, registry: Registry, env: Environment) -> Reproduction:
    try:
        prompt, extra, record, original = read_metadata(path)
    except ValueError as exc:
        return Reproduction("invalid", str(exc))
    now = environment_record(env.precision)
    result = Reproduction("failed", now_on=_device(now))
    if record is not None:
        result.made_on = _device(record)
        result.notes += _version_notes(record, now)
    try:
        admitted = admit(prompt, registry, env, extra_data={"extra_pnginfo": extra}, targets=_targets(record),
                         known_models=known_hashes(record or {}))
    except PromptError as exc:
        lines = "\n  ".join(format_errors(exc.body()))
        return Reproduction("invalid", f"the embedded prompt does not validate here:\n  {lines}",
                            notes=result.notes, made_on=result.made_on, now_on=result.now_on)
    result.notes += admitted.notes
    with tempfile.TemporaryDirectory(prefix="latentloom-reproduce-") as scratch:
        # the same environment (services, settings) with outputs redirected
        run_env = dataclasses.replace(env, paths=_ScratchPaths(env.paths, Path(scratch)), previews=False)
        run = Executor(run_env).execute(admitted.report, prompt_id=str(uuid.uuid4()), prompt=admitted.prompt,
                                        extra_data=admitted.extra_data)
        if not run.success:
            data = run.error.data() if run.error is not None else {}
            result.message = (f"the run failed in node {data.get('node_id')} ({data.get('node_type')}): "
                              f"{data.get('exception_message', 'interrupted')}")
            return result
        candidates = _saved_images(run.outputs, run_env.paths)
        chosen = _choose(candidates, record, original)
        if chosen is None:
            result.message = "the run saved no image to compare with"
            return result
        label, file = chosen
        reproduced = np.asarray(PILImage.open(file).convert("RGBA" if original.shape[-1] == 4 else "RGB"))
        result.comparison = compare(original, reproduced)
        result.image, result.reproduced = label, file.read_bytes()
    result.status = "match" if result.comparison.identical else "differs"
    return result


def compare(a: np.ndarray, b: np.ndarray) -> Comparison:
    """Pixel comparison of two uint8 images (different sizes never match)."""
    if a.shape != b.shape:
        return Comparison(False, 255, 0.0, tuple(b.shape))
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    psnr = math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
    return Comparison(mse == 0, int(diff.max()), psnr, tuple(a.shape))


def _targets(record: dict[str, Any] | None) -> list[str] | None:
    """Only the saving node's branch needs to run when the file says which node saved it."""
    image = (record or {}).get("image") or {}
    return [str(image["node"])] if "node" in image else None


def _saved_images(outputs: dict[str, dict[str, list[Any]]], paths: DataPaths) -> list[tuple[str, int, Path]]:
    found = []
    for nid, ui in outputs.items():
        for index, image in enumerate(ui.get("images") or []):
            folder = paths.output if image.get("type", "output") == "output" else paths.temp
            found.append((nid, index, folder / image.get("subfolder", "") / image["filename"]))
    return found


def _choose(candidates: list[tuple[str, int, Path]], record: dict[str, Any] | None,
            original: np.ndarray) -> tuple[str, Path] | None:
    """The image the file says it is; without our chunk, the closest one the run saved."""
    image = (record or {}).get("image") or {}
    for nid, index, path in candidates:
        if nid == str(image.get("node")) and index == image.get("batch_index"):
            return f"node {nid}, image {index + 1}", path
    if not candidates:
        return None

    def distance(item: tuple[str, int, Path]) -> float:
        with PILImage.open(item[2]) as img:
            pixels = np.asarray(img.convert("RGBA" if original.shape[-1] == 4 else "RGB"))
        return -compare(original, pixels).psnr

    nid, index, path = min(candidates, key=distance)
    return f"node {nid}, image {index + 1} (the closest of {len(candidates)})", path


def _device(record: dict[str, Any]) -> str:
    device = record.get("device") or {}
    return str(device.get("name") or device.get("type") or "unknown")


def _version_notes(record: dict[str, Any], now: dict[str, Any]) -> list[str]:
    notes = [f"{key} {record.get(key)} made the image, {now.get(key)} runs now" for key in VERSION_KEYS
             if record.get(key) != now.get(key)]
    if "precision" in record and record["precision"] != now["precision"]:
        notes.append(f"precision {record['precision']} made the image, {now['precision']} runs now "
                     f"(pass the same --precision flags to reproduce it exactly)")
    if record.get("dtypes") != now.get("dtypes"):
        notes.append(f"dtypes {record.get('dtypes')} made the image, {now.get('dtypes')} run now")
    return notes


def _json(text: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"the {name} chunk is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"the {name} chunk is not a JSON object")
    return value


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
