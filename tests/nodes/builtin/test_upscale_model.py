"""Upscale models through spandrel: tiny ESRGAN (RRDBNet) and Compact (SRVGGNetCompact) files in their real key
layouts, detected and run by the real library; the tiled node result is compared with spandrel's own call on
the whole image."""
from __future__ import annotations

import sys
import types

import pytest
import torch
from safetensors.torch import save_file

from PIL import Image as PILImage

from executor.events import Progress
from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths
from nodes.sd.devices import ModelManager
from nodes.sd.errors import CheckpointError
from nodes.sd.upscale import UpscaleModel, load_upscale_model, tile_starts, tiled_upscale


def _import_spandrel():
    """spandrel imports torchvision for two architectures (LaMa, RestoreFormer) these tests never build. This
    environment's CPU torch has no matching torchvision build, so a placeholder stands in while spandrel is
    imported, and is removed at once (nothing else may mistake it for torchvision)."""
    try:
        import spandrel
        return spandrel
    except ModuleNotFoundError as exc:
        if exc.name != "torchvision":
            raise
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = functional.rotate = functional.normalize = None
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional
    stub = types.ModuleType("torchvision")
    stub.transforms = transforms
    names = {"torchvision": stub, "torchvision.transforms": transforms,
             "torchvision.transforms.functional": functional}
    sys.modules.update(names)
    try:
        import spandrel
    finally:
        for name in names:
            sys.modules.pop(name, None)
    return spandrel


spandrel = _import_spandrel()
from spandrel.architectures.Compact import Compact  # noqa: E402
from spandrel.architectures.ESRGAN import ESRGAN  # noqa: E402


def _tiny_esrgan():
    torch.manual_seed(0)
    return ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4).eval()


def _tiny_compact():
    torch.manual_seed(1)
    return Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2).eval()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("upscale")))
    folder = env.paths.models("upscale_models")
    save_file({k: v.contiguous() for k, v in _tiny_esrgan().state_dict().items()}, str(folder / "esrgan.safetensors"))
    save_file({k: v.contiguous() for k, v in _tiny_compact().state_dict().items()},
              str(folder / "compact.safetensors"))
    torch.save(_tiny_compact().state_dict(), folder / "compact.pth")
    torch.save({"params_ema": _tiny_esrgan().state_dict()}, folder / "esrgan_basicsr.pth")  # as RealESRGAN ships
    save_file({"weight": torch.zeros(2, 2)}, str(folder / "not_a_model.safetensors"))
    return env


def _image(height, width, seed=3):
    return torch.rand((1, height, width, 3), generator=torch.Generator().manual_seed(seed))


def test_loader_detects_architecture_and_scale(env):
    folder = env.paths.models("upscale_models")
    esrgan = load_upscale_model(folder / "esrgan.safetensors", ModelManager("cpu"))
    compact = load_upscale_model(folder / "compact.safetensors", ModelManager("cpu"))
    assert (esrgan.descriptor.architecture.id, esrgan.scale) == ("ESRGAN", 4)
    assert (compact.descriptor.architecture.id, compact.scale) == ("Compact", 2)
    expected = _tiny_esrgan().state_dict()
    assert all(torch.equal(esrgan.descriptor.model.state_dict()[k], v) for k, v in expected.items())


def test_pickle_needs_the_flag_and_unknown_files_are_refused(env):
    folder = env.paths.models("upscale_models")
    with pytest.raises(CheckpointError, match="pickle"):
        load_upscale_model(folder / "compact.pth", ModelManager("cpu"))
    allowed = load_upscale_model(folder / "compact.pth", ModelManager("cpu"), allow_pickle=True)
    assert allowed.scale == 2
    wrapped = load_upscale_model(folder / "esrgan_basicsr.pth", ModelManager("cpu"), allow_pickle=True)
    assert (wrapped.descriptor.architecture.id, wrapped.scale) == ("ESRGAN", 4)
    with pytest.raises(CheckpointError, match="not an upscale model"):
        load_upscale_model(folder / "not_a_model.safetensors", ModelManager("cpu"))


def test_tiles_cover_the_image_with_the_overlap():
    assert tile_starts(512, 512, 32) == [0]
    assert tile_starts(1200, 512, 32) == [0, 480, 688]
    assert tile_starts(100, 64, 32) == [0, 32, 36]


@pytest.mark.parametrize("name", ["esrgan.safetensors", "compact.safetensors"])
def test_tiled_upscale_equals_the_whole_image_run(env, name):
    """Compact with 2 convs sees 3 input pixels around each output pixel (3×3 convs plus the pixel shuffle):
    within overlap/4 = 8, so tiling changes nothing but float rounding. The 1-block ESRGAN sees farther (about
    20 px), so a little of the tile cuts' zero padding reaches the blended seams: close, not equal."""
    model = load_upscale_model(env.paths.models("upscale_models") / name, ModelManager("cpu"))
    image = _image(70, 90).movedim(-1, 1)
    whole = model.descriptor(image)
    tiled = tiled_upscale(model.descriptor, image, model.scale, tile=40, overlap=32)
    assert tiled.shape == whole.shape == (1, 3, 70 * model.scale, 90 * model.scale)
    difference = (tiled - whole).abs()
    if name.startswith("compact"):
        assert difference.max() < 1e-5
    else:
        assert difference.mean() < 1e-3 and difference.max() < 0.05


def run(env, wf, events=None):
    report = validate(parse_workflow(wf), builtin_registry(), env)
    assert report.clean, report.to_comfy()
    executor = Executor(env)
    if events is not None:
        executor.subscribe(events.append)
    return executor.execute(report, prompt_id="p")


def test_workflow_upscales_with_progress_per_tile(env):
    save = env.paths.input / "small.png"
    PILImage.fromarray((_image(600, 40).numpy()[0] * 255).astype("uint8")).save(save)
    wf = {"1": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "compact.safetensors"}},
          "2": {"class_type": "LoadImage", "inputs": {"image": "small.png"}},
          "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["1", 0], "image": ["2", 0]}},
          "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}
    events = []
    result = run(env, wf, events)
    assert result.success, result.error
    out = result.values["3"].outputs[0][0]
    loaded = result.values["2"].outputs[0][0]
    expected = result.values["1"].outputs[0][0].descriptor(loaded.movedim(-1, 1)).movedim(1, -1)
    assert out.shape == (1, 1200, 80, 3) and torch.allclose(out, expected, atol=1e-5)
    progress = [(e.value, e.max) for e in events if isinstance(e, Progress) and e.node == "3"]
    assert progress == [(1, 2), (2, 2)]  # 600 rows: tiles at 0 and 88


def test_object_info_matches_comfyui(env):
    info = builtin_registry().object_info(env)
    loader, upscale = info["UpscaleModelLoader"], info["ImageUpscaleWithModel"]
    assert loader["input"]["required"]["model_name"][0] == ["compact.pth", "compact.safetensors", "esrgan.safetensors",
                                                            "esrgan_basicsr.pth", "not_a_model.safetensors"]
    assert (loader["output"], loader["output_name"], loader["category"], loader["display_name"],
            loader["python_module"]) == (["UPSCALE_MODEL"], ["UPSCALE_MODEL"], "loaders", "Load Upscale Model",
                                         "comfy_extras.nodes_upscale_model")
    assert upscale["input_order"]["required"] == ["upscale_model", "image"]
    assert upscale["input"]["required"]["upscale_model"][0] == "UPSCALE_MODEL"
    assert (upscale["output"], upscale["category"], upscale["display_name"], upscale["python_module"]) == (
        ["IMAGE"], "image/upscaling", "Upscale Image (using Model)", "comfy_extras.nodes_upscale_model")


class _MemoryLimited:
    """spandrel's descriptor as a small GPU sees it: tiles above `limit` pixels a side run out of memory."""

    def __init__(self, descriptor, limit):
        self.descriptor, self.limit, self.sides = descriptor, limit, []
        self.model, self.scale, self.input_channels = descriptor.model, descriptor.scale, descriptor.input_channels

    def __call__(self, image):
        if max(image.shape[-2:]) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        self.sides.append(max(image.shape[-2:]))
        return self.descriptor(image)


def test_out_of_memory_halves_the_tile(env):
    model = load_upscale_model(env.paths.models("upscale_models") / "compact.safetensors", ModelManager("cpu"))
    limited = _MemoryLimited(model.descriptor, 300)
    image = _image(600, 330).movedim(-1, 1)
    seen = []
    out = UpscaleModel(limited, model.manager).upscale(image, on_tile=lambda done, total: seen.append((done, total)))
    assert max(limited.sides) == 256 and seen[-1] == (6, 6)  # 3 rows × 2 columns of 256 px tiles
    assert torch.allclose(out, model.descriptor(image), atol=1e-5)
    with pytest.raises(torch.OutOfMemoryError):
        UpscaleModel(_MemoryLimited(model.descriptor, 100), model.manager).upscale(image)
    with pytest.raises(ValueError, match="channels"):
        model.upscale(image[:, :1])
