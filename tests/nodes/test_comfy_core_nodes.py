"""ComfyUI's core node classes (`from nodes import SaveImage`, …), comfy.samplers / comfy.sample / comfy.utils /
node_helpers / comfy_extras, as the `core_pack` test pack uses them: loaded by the real plugin loader, run by the
executor, results checked against our built-in nodes and independent computations."""
from __future__ import annotations

import inspect
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry, full_registry
from nodes.paths import DataPaths
from nodes.sd import tiny

PACKS = Path(__file__).parent / "plugin_packs"
CKPT = "tiny.safetensors"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Environment(DataPaths(tmp_path_factory.mktemp("core_pack") / "data"))
    shutil.copytree(PACKS / "core_pack", env.paths.custom_nodes / "core_pack")
    tiny.write_single_file("sd1", env.paths.models("checkpoints") / CKPT)
    return env


@pytest.fixture(scope="module")
def registry(env):
    registry, plugins = full_registry(env.paths, entry_points=False)
    assert plugins.get("core_pack").status == "loaded", plugins.to_json()
    return registry


def run(registry, env, wf):
    report = validate(parse_workflow(wf), registry, env)
    assert report.clean, report.to_comfy()
    result = Executor(env).execute(report, prompt_id="p", prompt=wf)
    assert result.success, result.error
    return result


def test_every_builtin_node_has_its_comfy_class(registry, env):
    import nodes

    mappings = nodes.NODE_CLASS_MAPPINGS
    assert set(mappings) == {spec.name for spec in builtin_registry()}
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS["CheckpointLoaderSimple"] == builtin_registry().get(
        "CheckpointLoaderSimple").display_name
    info = registry.object_info(env)
    for name, cls in mappings.items():
        spec = registry.get(name)
        assert cls.INPUT_TYPES() == info[name]["input"], name
        assert list(cls.RETURN_TYPES) == info[name]["output"] and list(cls.RETURN_NAMES) == info[name]["output_name"]
        assert cls.CATEGORY == spec.category and cls.OUTPUT_NODE == spec.output_node
        assert callable(getattr(cls, cls.FUNCTION))
    assert nodes.KSampler.FUNCTION == "sample" and nodes.SaveImage.FUNCTION == "save_images"
    assert list(inspect.signature(nodes.SaveImage.save_images).parameters) == [
        "self", "images", "filename_prefix", "prompt", "extra_pnginfo"]
    assert nodes.LoraLoader.INPUT_TYPES()["required"]["lora_name"][0] == []  # the data folder's (empty) list
    with pytest.raises(AttributeError, match="GrowMask"):
        nodes.GrowMask  # noqa: B018 - ComfyUI keeps it in comfy_extras.nodes_mask, not in nodes


def test_classes_called_directly(registry, env):
    import nodes

    (latent,) = nodes.EmptyLatentImage().generate(64, 32, batch_size=2)
    assert torch.equal(latent["samples"], torch.zeros(2, 4, 4, 8))
    a, b = torch.rand(1, 8, 8, 3), torch.rand(1, 8, 8, 3)
    assert torch.equal(nodes.ImageBatch().batch(a, b)[0], torch.cat((a, b)))
    saved = nodes.SaveImage().save_images(a, "direct")
    assert saved == {"ui": {"images": [{"filename": "direct_00001_.png", "subfolder": "", "type": "output"}]}}
    pixels = np.asarray(Image.open(env.paths.output / "direct_00001_.png"))
    assert np.array_equal(pixels, (a[0].numpy() * 255).clip(0, 255).astype(np.uint8))
    with pytest.raises(TypeError, match="missing required input"):
        nodes.ImageBatch().batch(a)


def test_pack_subclasses_and_helpers_run_in_a_workflow(registry, env):
    wf = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 24, "height": 16, "batch_size": 1, "color": 0x336699}},
        "2": {"class_type": "CoreHalfSize", "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact"}},
        "3": {"class_type": "CoreSaveInverted", "inputs": {"images": ["2", 0], "filename_prefix": "core",
                                                          "suffix": "_inv"}},
        "4": {"class_type": "CoreSquareLatent", "inputs": {"size": 64}},
        "5": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": "sq"}},
    }
    result = run(registry, env, wf)
    assert result.outputs["3"] == {"images": [{"filename": "core_inv_00001_.png", "subfolder": "", "type": "output"}]}
    pixels = np.asarray(Image.open(env.paths.output / "core_inv_00001_.png"))
    colour = np.array([0x33, 0x66, 0x99]) / 255.0
    expected = ((1.0 - np.broadcast_to(colour, (8, 12, 3)).astype(np.float32)) * 255).clip(0, 255).astype(np.uint8)
    assert pixels.shape == (8, 12, 3) and np.array_equal(pixels, expected)
    assert torch.equal(result.values["4"].outputs[0][0]["samples"], torch.zeros(1, 4, 8, 8))


def test_common_ksampler_matches_ksampler(registry, env):
    import comfy.samplers

    assert "euler" in comfy.samplers.KSampler.SAMPLERS and "karras" in comfy.samplers.KSampler.SCHEDULERS
    sampler = {"seed": 7, "sampler_name": "euler_ancestral", "scheduler": "karras"}
    wf = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red cube", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
        "5": {"class_type": "CoreQuickSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0],
                                                          "negative": ["3", 0], "latent_image": ["4", 0],
                                                          "strength": 1.0, **sampler}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                  "latent_image": ["4", 0], "steps": 2, "cfg": 5.0, "denoise": 1.0,
                                                  **sampler}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "pack"}},
        "8": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": "ours"}},
    }
    result = run(registry, env, wf)
    ours = result.values["6"].outputs[0][0]["samples"]
    assert torch.equal(result.values["5"].outputs[0][0]["samples"], ours)
    # comfy.sample with the seed's noise is the same sampling again
    import comfy.sample

    model, positive, negative = (result.values[n].outputs[0][0] for n in ("1", "2", "3"))
    noise = comfy.sample.prepare_noise(torch.zeros(1, 4, 4, 4), 7)
    again = comfy.sample.sample(model, noise, 2, 5.0, "euler_ancestral", "karras", positive, negative,
                                torch.zeros(1, 4, 4, 4), seed=7)
    assert torch.equal(again, ours)
    with pytest.raises(NotImplementedError, match="seed's own noise"):
        comfy.sample.sample(model, noise + 1, 2, 5.0, "euler", "karras", positive, negative,
                            torch.zeros(1, 4, 4, 4), seed=7)


def test_node_helpers_and_mask_helpers(registry):
    import node_helpers
    from comfy_extras.nodes_mask import GrowMask, composite

    embedding = torch.ones(1, 2, 3)
    conditioning = [[embedding, {"strength": 0.5}]]
    appended = node_helpers.conditioning_set_values(conditioning, {"strength": 0.25, "x": 1}, append=True)
    assert appended[0][1] == {"strength": 0.75, "x": 1} and appended[0][0] is embedding
    assert conditioning[0][1] == {"strength": 0.5}  # the input is left alone
    mask = torch.zeros(1, 5, 5)
    mask[0, 2, 2] = 1.0
    (grown,) = GrowMask().expand_mask(mask, 1, False)
    cross = torch.zeros(1, 5, 5)
    cross[0, 1:4, 1:4] = 1.0  # a square structuring element without tapered corners
    assert torch.equal(grown, cross)
    destination, source = torch.zeros(1, 3, 5, 5), torch.ones(1, 3, 5, 5)
    assert torch.equal(composite(destination, source, 0, 0, cross, 1), cross.expand(1, 3, 5, 5))


def test_comfy_utils_state_dicts_and_tiles(registry, env, tmp_path):
    import comfy.utils

    sd = {"model.a": torch.arange(4.0), "model.b": torch.ones(2), "other": torch.zeros(1)}
    path = str(tmp_path / "x.safetensors")
    comfy.utils.save_torch_file(sd, path, metadata={"k": "v"})
    loaded, metadata = comfy.utils.load_torch_file(path, return_metadata=True)
    assert metadata == {"k": "v"} and all(torch.equal(loaded[k], sd[k]) for k in sd)
    assert list(comfy.utils.state_dict_prefix_replace(dict(sd), {"model.": "m."}, filter_keys=True)) == ["m.a", "m.b"]
    torch.save(sd, tmp_path / "x.ckpt")
    with pytest.raises(Exception, match="pickle"):
        comfy.utils.load_torch_file(str(tmp_path / "x.ckpt"))
    image = torch.rand(2, 3, 40, 56)

    def upscale(tile):
        return tile.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    tiled = comfy.utils.tiled_scale(image, upscale, tile_x=16, tile_y=16, overlap=4, upscale_amount=2)
    assert torch.allclose(tiled, upscale(image), atol=1e-6)


def test_model_internals_fail_naming_what_is_missing(registry):
    with pytest.raises(ModuleNotFoundError, match="latentloom does not provide comfy.model_patcher"):
        import comfy.model_patcher  # noqa: F401
    with pytest.raises(ModuleNotFoundError):
        import comfy_extras.nodes_no_such_module  # noqa: F401
    import execution

    assert execution.ExecutionResult.PENDING.value == 2
    with pytest.raises(AttributeError, match="PromptExecutor"):
        execution.PromptExecutor  # noqa: B018
    assert sys.modules["comfy_extras.nodes_mask"].ImageToMask.__module__ == "comfy_extras.nodes_mask"


def test_folder_paths_user_and_content_types(registry, env):
    import folder_paths

    (env.paths.input / "faces" / "close").mkdir(parents=True)
    assert folder_paths.get_input_subfolders() == ["faces", "faces/close"]
    assert folder_paths.get_user_directory() == str(env.paths.root / "user") == folder_paths.user_directory
    files = ["a.png", "b.webp", "c.mp4", "d.safetensors", "e.txt"]
    assert folder_paths.filter_files_content_types(files, ["image"]) == ["a.png", "b.webp"]
    assert folder_paths.filter_files_content_types(files, ["video", "text"]) == ["c.mp4", "e.txt"]


def test_latent_preview_callback_and_interrupt(registry, env):
    from executor.events import ExecutionInterrupted, Progress

    wf = {"1": {"class_type": "CorePreviewSteps", "inputs": {"steps": 3, "stop_at": 0}},
          "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "steps"}}}
    executor, events = Executor(env), []
    executor.subscribe(events.append)
    result = executor.execute(validate(parse_workflow(wf), registry, env), prompt_id="p", prompt=wf)
    assert result.success, result.error
    assert [(e.value, e.max) for e in events if isinstance(e, Progress) and e.node == "1"] == [(1, 3), (2, 3), (3, 3)]
    assert torch.equal(result.values["1"].outputs[0][0]["samples"], torch.full((1, 4, 2, 2), 2.0))
    wf["1"]["inputs"]["stop_at"] = 2
    events.clear()
    stopped = executor.execute(validate(parse_workflow(wf), registry, env), prompt_id="q", prompt=wf)
    assert stopped.status == "interrupted" and isinstance(stopped.error, ExecutionInterrupted)
    assert [e.value for e in events if isinstance(e, Progress)] == [1]


def test_karras_sigmas_of_comfy_samplers(registry):
    import comfy.samplers
    from comfy.samplers import calculate_sigmas
    from nodes.sd.schedules import sd_schedule

    schedule = sd_schedule()
    sigmas = calculate_sigmas(schedule, "karras", 4)
    lo, hi = float(schedule.sigma_min), float(schedule.sigma_max)
    ramp = [(hi ** (1 / 7) + i / 3 * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7 for i in range(4)]
    assert torch.allclose(sigmas, torch.tensor(ramp + [0.0]), rtol=1e-5)
    assert comfy.samplers.sampler_object("euler").name == "euler"
    with pytest.raises(TypeError, match="DiscreteSchedule"):
        calculate_sigmas(object(), "karras", 4)


def test_batch_and_latent_helpers(registry):
    import comfy.utils
    from comfy_extras.nodes_latent import reshape_latent_to

    batch = torch.arange(3.0).reshape(3, 1)
    assert comfy.utils.repeat_to_batch_size(batch, 5).flatten().tolist() == [0, 1, 2, 0, 1]
    assert comfy.utils.repeat_to_batch_size(batch, 2).flatten().tolist() == [0, 1]
    latent = torch.rand(1, 4, 8, 8)
    reshaped = reshape_latent_to(torch.Size((2, 4, 4, 4)), latent)
    expected = torch.nn.functional.interpolate(latent, size=(4, 4), mode="bilinear")
    assert reshaped.shape == (2, 4, 4, 4) and torch.equal(reshaped[0], expected[0]) and torch.equal(reshaped[1],
                                                                                                   expected[0])
