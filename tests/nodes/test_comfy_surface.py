"""ComfyUI's import surface for packs (nodes.comfy_compat): folder_paths, comfy.utils, comfy.model_management,
nodes.MAX_RESOLUTION, loaded through the real plugin loader and run through the executor."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from executor.events import Preview, Progress
from executor.run import Executor
from executor.validate import validate
from executor.workflow import parse_workflow
from nodes.api import Context, Environment
from nodes.builtin import full_registry
from nodes.builtin.image import SaveImage
from nodes.builtin.scale import bislerp
from nodes.comfy_compat import install
from nodes.paths import DataPaths, UnsafePathError

PACK = Path(__file__).parent / "plugin_packs" / "surface_pack"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path) -> Environment:
    paths = DataPaths(tmp_path / "data")
    shutil.copytree(PACK, paths.custom_nodes / "surface_pack")
    return Environment(paths)


@pytest.fixture
def registry(env):
    registry, plugins = full_registry(env.paths, entry_points=False)
    assert plugins.get("surface_pack").status == "loaded", plugins.to_json()
    return registry


@pytest.fixture
def pack_nodes(registry):
    return sys.modules["custom_nodes_x_surface_pack.nodes"]


def run(registry, env, wf, executor=None):
    report = validate(parse_workflow(wf), registry, env)
    assert report.clean, report.to_comfy()
    return (executor or Executor(env)).execute(report, prompt_id="p", prompt=wf)


def test_names_appear_only_with_plugins_and_never_shadow_real_modules(tmp_path):
    """In a fresh interpreter: importing our packages is cheap and adds no names; loading plugins adds them;
    a real `folder_paths` / `comfy` on sys.path wins over ours."""
    real = tmp_path / "real"
    (real / "comfy").mkdir(parents=True)
    (real / "folder_paths.py").write_text("REAL = True\n")
    (real / "comfy" / "__init__.py").write_text("REAL = True\n")
    script = textwrap.dedent(f"""
        import importlib.util, sys
        import nodes, server
        assert "torch" not in sys.modules and "aiohttp" not in sys.modules, "our packages must import cheaply"
        assert importlib.util.find_spec("folder_paths") is None and importlib.util.find_spec("comfy") is None
        from nodes.paths import DataPaths
        from nodes.plugins import load_plugins
        from nodes.registry import Registry
        load_plugins(Registry(), DataPaths({str(tmp_path / "data")!r}), entry_points=False)
        import folder_paths, comfy
        assert folder_paths.__file__.endswith("nodes/comfy_compat/folder_paths.py")
        assert importlib.util.find_spec("comfy.model_management").origin.endswith(
            "nodes/comfy_compat/comfy/model_management.py")
        from server import PromptServer
        assert PromptServer.instance.routes is not None and PromptServer.instance.loop is None
        for name in ("folder_paths", "comfy"):
            del sys.modules[name]
        sys.path.insert(0, {str(real)!r})
        import folder_paths, comfy
        assert folder_paths.REAL and comfy.REAL, "a real module of the name wins"
        assert importlib.util.find_spec("comfy.utils") is None, "our comfy.utils must not join a real comfy"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_folder_paths_lists_and_resolves_the_data_folder(tmp_path):
    paths = DataPaths(tmp_path / "data")
    install(paths)
    import folder_paths

    checkpoints = paths.models("checkpoints")
    (checkpoints / "sub").mkdir()
    for name in ("b.safetensors", "sub/a.ckpt", "notes.txt"):
        (checkpoints / name).write_bytes(b"x")
    (checkpoints / ".cache").mkdir()
    (checkpoints / ".cache" / "hidden.safetensors").write_bytes(b"x")
    (paths.root / "models" / "clip").mkdir()
    (paths.root / "models" / "clip" / "te.safetensors").write_bytes(b"x")
    (paths.root / "models" / "secret.safetensors").write_bytes(b"secret")
    (tmp_path / "outside.safetensors").write_bytes(b"outside")
    (checkpoints / "link.safetensors").symlink_to(tmp_path / "outside.safetensors")

    assert folder_paths.models_dir == str(paths.root / "models")
    assert folder_paths.get_folder_paths("checkpoints") == [str(checkpoints)]
    assert folder_paths.folder_names_and_paths["checkpoints"] == ([str(checkpoints)],
                                                                  folder_paths.supported_pt_extensions)
    listed = folder_paths.get_filename_list("checkpoints")
    assert listed == ["b.safetensors", "link.safetensors", "sub/a.ckpt"] == paths.model_files("checkpoints")
    assert folder_paths.get_filename_list("clip") == ["te.safetensors"]  # legacy key → text_encoders
    assert folder_paths.get_full_path("checkpoints", "sub/a.ckpt") == str(checkpoints / "sub" / "a.ckpt")
    for escaping in ("../secret.safetensors", "sub/../../secret.safetensors", str(paths.root / "models/x"),
                     "link.safetensors", "missing.safetensors"):
        assert folder_paths.get_full_path("checkpoints", escaping) is None, escaping
    with pytest.raises(FileNotFoundError):
        folder_paths.get_full_path_or_raise("checkpoints", "../secret.safetensors")
    with pytest.raises(KeyError):
        folder_paths.get_filename_list("no_such_kind")

    (paths.output / "pic.png").write_bytes(b"png")
    assert folder_paths.get_annotated_filepath("pic.png [output]") == str(paths.output / "pic.png")
    assert folder_paths.get_annotated_filepath("pic.png") == str(paths.input / "pic.png")
    assert folder_paths.exists_annotated_filepath("pic.png [output]")
    assert not folder_paths.exists_annotated_filepath("pic.png [temp]")
    assert not folder_paths.exists_annotated_filepath("../output/pic.png [input]")
    with pytest.raises(UnsafePathError):
        folder_paths.get_annotated_filepath("../models/secret.safetensors [output]")
    assert (folder_paths.get_input_directory(), folder_paths.get_output_directory(),
            folder_paths.get_temp_directory()) == (str(paths.input), str(paths.output), str(paths.temp))

    extra = tmp_path / "extra_loras"
    extra.mkdir()
    (extra / "x.safetensors").write_bytes(b"x")
    folder_paths.add_model_folder_path("loras", str(extra), is_default=True)
    assert folder_paths.get_folder_paths("loras") == [str(extra), str(paths.root / "models" / "loras")]
    assert folder_paths.get_filename_list("loras") == ["x.safetensors"]

    other = DataPaths(tmp_path / "other")
    install(other)  # a later load re-binds: its folders, none of the earlier additions
    assert folder_paths.models_dir == str(other.root / "models")
    assert folder_paths.get_folder_paths("loras") == [str(other.root / "models" / "loras")]


def test_get_save_image_path_continues_save_image_numbering(tmp_path):
    env = Environment(DataPaths(tmp_path / "data"))
    install(env.paths)
    import folder_paths

    ctx = Context(node_id="9", prompt_id="p", prompt={}, extra_data={}, env=env)
    SaveImage.model_construct(images=torch.zeros(2, 8, 6, 3), filename_prefix="sub/pic_%width%").run(ctx)
    assert [i["filename"] for i in ctx.ui["images"]] == ["pic_6_00001_.png", "pic_6_00002_.png"]
    assert folder_paths.get_save_image_path("sub/pic_%width%", folder_paths.get_output_directory(), 6, 8) == (
        str(env.paths.output / "sub"), "pic_6", 3, "sub", "sub/pic_6")
    assert folder_paths.get_save_image_path("fresh", str(env.paths.output))[1:] == ("fresh", 1, "", "fresh")
    with pytest.raises(ValueError):
        folder_paths.get_save_image_path("../escape", str(env.paths.output))


def test_progress_bar_reports_through_the_running_node(registry, env, pack_nodes):
    executor = Executor(env)
    events = []
    pack_nodes.CONTINUE.set()  # the "user" answers each step as soon as its progress is reported

    def on_event(event):
        events.append(event)
        if isinstance(event, Progress):
            pack_nodes.CONTINUE.set()

    executor.subscribe(on_event)
    result = run(registry, env, {"1": {"class_type": "SurfaceWaitForUser", "inputs": {"steps": 3, "width": 64}}},
                 executor)
    assert result.status == "success", result.error
    assert [(e.value, e.max, e.node) for e in events if isinstance(e, Progress)] == [(1, 3, "1"), (2, 3, "1"),
                                                                                     (3, 3, "1")]
    assert result.outputs["1"] == {"waited": [3]}


def test_interrupt_stops_a_progress_bar_loop(registry, env, pack_nodes):
    executor = Executor(env)
    pack_nodes.CONTINUE.set()

    def on_event(event):  # interrupt after the first step instead of answering
        if isinstance(event, Progress):
            executor.interrupt()

    executor.subscribe(on_event)
    result = run(registry, env, {"1": {"class_type": "SurfaceWaitForUser", "inputs": {"steps": 5, "width": 64}}},
                 executor)
    assert result.status == "interrupted" and result.error.node_id == "1"
    assert [m for m, _ in result.messages][-1] == "execution_interrupted"


def test_interrupt_processing_exception_interrupts_the_run(registry, env):
    wf = {"1": {"class_type": "SurfaceStopWorkflow", "inputs": {"value": 3, "stop": True}},
          "2": {"class_type": "SurfaceWaitForUser", "inputs": {"steps": ["1", 0], "width": 64}}}
    result = run(registry, env, wf)
    assert result.status == "interrupted" and result.error.node_id == "1" and result.executed == []


def _previews(registry, env):
    executor = Executor(env)
    events = []
    executor.subscribe(events.append)
    result = run(registry, env, {"1": {"class_type": "SurfaceAsyncPreviews", "inputs": {"steps": 2}}}, executor)
    assert result.status == "success", result.error
    return [(e.value, e.max) for e in events if isinstance(e, Progress)], [
        e.image.getpixel((0, 0)) for e in events if isinstance(e, Preview)]


def test_async_function_reports_progress_and_previews(registry, env):
    assert _previews(registry, env) == ([(1, 2), (2, 2)], [(0, 0, 0), (10, 0, 0)])


async def test_async_function_on_a_helper_thread_still_knows_its_node(registry, env):
    """Called where an event loop runs, the adapter awaits the coroutine on a helper thread."""
    assert _previews(registry, env) == ([(1, 2), (2, 2)], [(0, 0, 0), (10, 0, 0)])


def test_outside_a_node_nothing_is_reported_or_interrupted(registry):
    import comfy.model_management as mm
    import comfy.utils

    bar = comfy.utils.ProgressBar(4)
    bar.update(3)
    bar.update_absolute(9)
    assert (bar.current, bar.total) == (4, 4)
    assert not mm.processing_interrupted()
    mm.throw_exception_if_processing_interrupted()
    assert mm.get_torch_device().type in ("cpu", "cuda", "mps")
    assert mm.intermediate_device() == mm.unet_offload_device() == torch.device("cpu")
    mm.soft_empty_cache()


def test_common_upscale_is_our_resize(registry):
    import comfy.utils

    torch.manual_seed(0)
    samples = torch.rand(2, 3, 8, 12)
    centred = comfy.utils.common_upscale(samples, 4, 4, "bilinear", "center")
    assert torch.equal(centred, torch.nn.functional.interpolate(samples[..., 2:10], size=(4, 4), mode="bilinear"))
    nearest = comfy.utils.common_upscale(samples, 24, 16, "nearest-exact", "disabled")
    assert torch.equal(nearest, samples.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
    slerped = comfy.utils.common_upscale(samples, 4, 4, "bislerp", "center")
    assert torch.equal(slerped, bislerp(samples[..., 2:10], 4, 4))


def test_nodes_package_names(registry, env):
    import nodes

    assert nodes.MAX_RESOLUTION == 16384
    with pytest.raises(ImportError):
        from nodes import NoSuchComfyNode  # noqa: F401
    info = registry.object_info(env)
    assert info["SurfaceWaitForUser"]["input"]["required"]["width"][1]["max"] == 16384
