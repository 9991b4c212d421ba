"""UI-format conversion: hand-written files covering each rule, compared with the API format they must give."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from executor.ui_format import is_ui_format, ui_to_api
from executor.seeds import FirstSubmission, resolve_seeds
from executor.validate import validate
from executor.workflow import WorkflowError, parse_workflow
from nodes.api import Context, Environment, Input, Node, node
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths
from nodes.registry import Registry

FILES = Path(__file__).parent / "ui_files"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registry():
    return builtin_registry()


def load(name):
    return json.loads((FILES / name).read_text())


def test_default_graph_widgets_links_meta_groups_and_model_hashes(registry):
    doc = load("default_graph.json")
    assert is_ui_format(doc) and not is_ui_format(ui_to_api(doc, registry).prompt)
    conversion = ui_to_api(doc, registry)
    assert conversion.notes == []
    assert conversion.prompt == {
        "3": {"inputs": {"seed": 156680208700286, "steps": 20, "cfg": 8, "sampler_name": "euler",
                         "scheduler": "normal", "denoise": 1, "model": ["4", 0], "positive": ["6", 0],
                         "negative": ["7", 0], "latent_image": ["5", 0]},
              "class_type": "KSampler",
              "_meta": {"title": "KSampler", "pos": [863, 186], "size": [315, 262],
                        "groups": [{"title": "Sampling", "bounding": [840, 100, 360, 400], "color": "#3f789e"}],
                        "control_after_generate": {"seed": "randomize"}}},
        "4": {"inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}, "class_type": "CheckpointLoaderSimple",
              "_meta": {"title": "Load Checkpoint", "pos": [26, 474], "size": [315, 98], "model_sha256": {
                  "ckpt_name": "cc6cb27103417325ff94f52b7a5d2dde45a7515b25c255d8e396c90014281516"}}},
        "5": {"inputs": {"width": 512, "height": 512, "batch_size": 1}, "class_type": "EmptyLatentImage",
              "_meta": {"title": "Empty Latent Image", "pos": [473, 609], "size": [315, 106]}},
        "6": {"inputs": {"text": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
                         "clip": ["4", 1]}, "class_type": "CLIPTextEncode",
              "_meta": {"title": "Positive", "pos": [415, 186], "size": [423, 164]}},
        "7": {"inputs": {"text": "text, watermark", "clip": ["4", 1]}, "class_type": "CLIPTextEncode",
              "_meta": {"title": "CLIP Text Encode (Prompt)", "pos": [413, 389], "size": [425, 181]}},
        "8": {"inputs": {"samples": ["3", 0], "vae": ["4", 2]}, "class_type": "VAEDecode",
              "_meta": {"title": "VAE Decode", "pos": [1209, 188], "size": [210, 46], "collapsed": True,
                        "color": "#223", "bgcolor": "#335"}},
        "9": {"inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "class_type": "SaveImage",
              "_meta": {"title": "Save Image", "pos": [1451, 189], "size": [210, 58]}},
    }
    parse_workflow(conversion.prompt)  # the result is a well-formed API document


def test_reroutes_and_primitive_nodes_resolve_notes_dropped(registry, tmp_path):
    conversion = ui_to_api(load("virtual_nodes.json"), registry)
    prompt = conversion.prompt
    assert sorted(prompt, key=int) == ["1", "2", "3", "4", "5", "6", "7"]
    assert prompt["5"]["inputs"] == {"samples": ["4", 0], "vae": ["1", 2]}
    assert prompt["5"]["_meta"]["reroutes"] == {"vae": [[438, 313], [838, 313]]}  # reroute centres, source first
    assert prompt["4"]["inputs"] == {"seed": 42, "steps": 2, "cfg": 7.5, "sampler_name": "euler",
                                     "scheduler": "karras", "denoise": 1, "model": ["1", 0], "positive": ["2", 0],
                                     "negative": ["2", 0], "latent_image": ["3", 0]}
    assert prompt["4"]["_meta"]["control_after_generate"] == {"seed": "increment"}  # the primitive's control
    assert prompt["2"]["inputs"] == {"text": "a shared prompt", "clip": ["1", 1]}
    assert prompt["6"]["inputs"] == {"source": "a shared prompt"}
    assert conversion.notes == ["node 12 (Reroute) dropped: it is connected to nothing",
                                "node 15 (Note) dropped: the API format has no notes"]
    from nodes.sd.tiny import write_single_file

    env = Environment(DataPaths(tmp_path / "data"))
    write_single_file("sd1", env.paths.models("checkpoints") / "tiny.safetensors", seed=0)
    report = validate(parse_workflow(prompt), registry, env)
    assert report.clean, report.to_comfy()


def test_bypass_mute_upload_widget_leftovers_and_schema_1_links(registry):
    conversion = ui_to_api(load("bypass_mute.json"), registry)
    prompt = conversion.prompt
    assert sorted(prompt, key=int) == ["1", "3", "6", "7", "8"]
    assert prompt["1"]["inputs"] == {"image": "example.png"}  # the upload button's value is not an input
    assert prompt["3"]["inputs"] == {"filename_prefix": "bypassed", "images": ["1", 0]}  # through the bypass
    assert prompt["6"]["inputs"] == {}
    assert prompt["7"]["inputs"] == {"width": 64, "height": 32, "batch_size": 2}
    assert prompt["8"]["inputs"] == {"value": 5}
    assert prompt["8"]["_meta"]["control_after_generate"] == {"value": "randomize"}  # old boolean control
    assert conversion.notes == [
        "node 2 (FancyUpscale) dropped: it is bypassed (its inputs pass through)",
        "node 3 (SaveImage): 1 widget value(s) ['left over'] match no input and were ignored",
        "node 4 (PreviewImage) dropped: it is muted",
        "node 5 (PrimitiveInt) dropped: it is muted",
        "node 6 input source: its source node 5 (PrimitiveInt) is muted; left unconnected",
        "node 7 (EmptyLatentImage): widget values ['junk'] match no input and were ignored"]


def test_unknown_types_are_all_named(registry):
    with pytest.raises(WorkflowError) as caught:
        ui_to_api(load("unknown_types.json"), registry)
    error = caught.value
    assert error.type == "invalid_prompt"
    assert error.message == "Cannot convert: unknown node type(s) WAS_Image_Blend, YetAnotherMissingNode"
    # inside a subgraph; its inner id 1 clashes with root node 1, so it runs as the frontend renumbers it
    assert error.details == "WAS_Image_Blend: node(s) 2, 3; YetAnotherMissingNode: node(s) 4:6"


def test_bypass_without_matching_input_and_dangling_links_are_noted(registry):
    doc = {"nodes": [
        {"id": 1, "type": "EmptyLatentImage", "mode": 0, "widgets_values": [64, 64, 1, 9],
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [1]}]},
        {"id": 2, "type": "VAEDecode", "mode": 4, "inputs": [{"name": "samples", "type": "LATENT", "link": 1}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2]}]},
        {"id": 3, "type": "PreviewImage", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 2}]},
        {"id": 4, "type": "PreviewAny", "mode": 0, "inputs": [{"name": "source", "type": "*", "link": 99}]}],
        "links": [[1, 1, 0, 2, 0, "LATENT"], [2, 2, 0, 3, 0, "IMAGE"]]}
    conversion = ui_to_api(doc, registry)
    assert conversion.prompt["3"]["inputs"] == {} and conversion.prompt["4"]["inputs"] == {}
    assert conversion.notes == [
        "node 1 (EmptyLatentImage): 1 widget value(s) [9] match no input and were ignored",
        "node 2 (VAEDecode) dropped: it is bypassed (its inputs pass through)",
        "node 3 input images: bypassed node 2 has no connected input of type IMAGE; left unconnected",
        "node 4 input source: its link is not in the file's links; left unconnected"]


def test_cli_runs_and_validates_ui_format(tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    (data / "input").mkdir(parents=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(data / "input" / "example.png")
    path = tmp_path / "ui.json"
    path.write_text((FILES / "bypass_mute.json").read_text())
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--data-dir", str(data), "run", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    # PreviewAny lost its muted source (required input missing): reported, and the SaveImage branch still runs
    assert done.returncode == 0, done.stderr
    assert "note: node 4 (PreviewImage) dropped: it is muted" in done.stderr
    assert "node 6 (PreviewAny): required_input_missing" in done.stderr
    saved = data.resolve() / "output" / "bypassed_00001_.png"
    assert done.stdout.strip() == str(saved)
    from nodes.images import read_png_texts

    assert json.loads(read_png_texts(saved)["workflow"]) == json.loads(path.read_text())
    unknown = tmp_path / "unknown.json"
    unknown.write_text((FILES / "unknown_types.json").read_text())
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--data-dir", str(data), "validate",
                           str(unknown)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 1 and "unknown node type(s) WAS_Image_Blend" in done.stdout


EXPECTED = sorted(p.stem for p in (FILES / "expected").glob("*.json"))  # a case per file, its API prompt beside


MODEL_FILES = {"checkpoints": ["tiny.safetensors", "v1-5-pruned-emaonly.safetensors", "512-inpainting-ema.safetensors",
                               "v2-1_768-ema-pruned.safetensors", "sd_xl_base_1.0.safetensors",
                               "sd_xl_refiner_1.0.safetensors", "dreamshaper_8.safetensors",
                               "sd_xl_turbo_1.0_fp16.safetensors"],
               "loras": ["epiNoiseoffset_v2.safetensors", "theovercomer8sContrastFix_sd15.safetensors"]}
INPUT_IMAGES = ["example.png", "yosemite_inpaint_example.png"]


def write_named_files(paths: DataPaths) -> None:
    """Every model file and input image the fixtures name, empty or 8×8 (validation checks names, not contents)."""
    from PIL import Image

    for folder, names in MODEL_FILES.items():
        for name in names:
            path = paths.models(folder) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
    paths.input.mkdir(parents=True, exist_ok=True)
    for name in INPUT_IMAGES:
        Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(paths.input / name)


@pytest.fixture(scope="module")
def files_env(tmp_path_factory):
    """A data folder holding every file the classic workflows name."""
    env = Environment(DataPaths(tmp_path_factory.mktemp("data")))
    write_named_files(env.paths)
    return env


def api_view(prompt):
    """What a case's expected file states of each node: its type, inputs and seed controls."""
    return {nid: {"class_type": node["class_type"], "inputs": node["inputs"],
                  **({"control_after_generate": node["_meta"]["control_after_generate"]}
                     if "control_after_generate" in node["_meta"] else {})} for nid, node in prompt.items()}


@pytest.mark.parametrize("name", EXPECTED)
def test_files_convert_as_comfyui_queues_them_and_validate(name, registry, files_env):
    expected = load(f"expected/{name}.json")
    conversion = ui_to_api(load(f"{name}.json"), registry, files_env)
    assert api_view(conversion.prompt) == expected["prompt"]
    assert conversion.notes == expected["notes"]
    resolve_seeds(conversion.prompt, registry, FirstSubmission())  # every control is one the server can honour
    report = validate(parse_workflow(conversion.prompt), registry, files_env)
    assert report.clean == ("invalid" not in expected), report.to_comfy()
    assert {nid: [e.to_comfy()["type"] for e in errors] for nid, errors in report.errors.items()} == \
        expected.get("invalid", {})  # what ComfyUI would refuse too


def test_subgraph_reroute_points_reach_the_consumer_outside_and_groups_stay_outside(registry):
    doc = load("subgraph_nested.json")
    doc["groups"] = [{"title": "all", "bounding": [-50, -50, 2000, 1000]}]
    doc["definitions"]["subgraphs"][1]["groups"] = [{"title": "inner", "bounding": [0, 0, 400, 200]}]
    conversion = ui_to_api(doc, registry)
    prompt = conversion.prompt
    assert conversion.notes == ["node 10:3 (b5e6f7a8-0000-4000-8000-0000000000bb): the groups inside its subgraph "
                                "are not carried over"]
    assert prompt["20"]["_meta"]["reroutes"] == {"samples": [[938, 113]]}  # the reroute inside the subgraph
    assert prompt["20"]["_meta"]["groups"] == [{"title": "all", "bounding": [-50, -50, 2000, 1000]}]
    assert prompt["10:4"]["_meta"]["title"] == "KSampler" and "groups" not in prompt["10:4"]["_meta"]


def passthrough_subgraph(mode, loop=False):
    """A subgraph node (mode given) whose subgraph hands its IMAGE input straight to its output."""
    sub = {"id": "sub-pass", "inputs": [{"name": "image", "type": "IMAGE"}],
           "outputs": [{"name": "IMAGE", "type": "IMAGE"}],
           "nodes": [], "links": [{"id": 1, "origin_id": -10, "origin_slot": 0, "target_id": -20, "target_slot": 0,
                                   "type": "IMAGE"}]}
    return {"nodes": [
        {"id": 1, "type": "LoadImage", "mode": 0, "widgets_values": ["example.png", "image"]},
        {"id": 2, "type": "sub-pass", "mode": mode,
         "inputs": [{"name": "image", "type": "IMAGE", "link": 3 if loop else 1}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2]}]},
        {"id": 3, "type": "PreviewImage", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 2}]}],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"], [3, 2, 0, 2, 0, "IMAGE"]],
        "definitions": {"subgraphs": [sub]}}


@pytest.mark.parametrize("mode, images, notes", [
    (0, ["1", 0], []),
    (4, ["1", 0], ["node 2 (sub-pass) dropped: it is bypassed (its inputs pass through)"]),
    (2, None, ["node 2 (sub-pass) dropped: it is muted",
               "node 3 input images: its source node 2 (sub-pass) is muted; left unconnected"]),
])
def test_subgraph_nodes_expand_or_are_muted_and_bypassed_like_any_node(registry, mode, images, notes):
    conversion = ui_to_api(passthrough_subgraph(mode), registry)
    assert conversion.prompt["3"]["inputs"] == ({"images": images} if images else {})
    assert conversion.notes == notes


def test_a_loop_through_a_subgraph_boundary_is_refused_naming_the_node(registry):
    with pytest.raises(WorkflowError) as caught:
        ui_to_api(passthrough_subgraph(0, loop=True), registry)
    assert caught.value.details.startswith("node 3: input images is linked in a loop")


def test_missing_dynamic_combo_values_need_the_data_folder(registry, files_env):
    doc = load("classic_lora.json")
    without = ui_to_api(doc, registry).prompt["10"]["inputs"]
    assert "lora_name" not in without and without["strength_model"] == 1.0  # validation names the missing input
    assert ui_to_api(doc, registry, files_env).prompt["10"]["inputs"]["lora_name"] == "epiNoiseoffset_v2.safetensors"


def test_subgraph_node_promoted_widgets_give_inner_values(registry):
    doc = load("subgraph_nested.json")
    sub_node = doc["nodes"][2]
    sub_node["properties"] = {"proxyWidgets": [["-1", "seed"], ["4", "steps"]]}
    sub_node["widgets_values"] = [555, 9]
    conversion = ui_to_api(doc, registry)
    assert {k: conversion.prompt["10:4"]["inputs"][k] for k in ("seed", "steps")} == {"seed": 555, "steps": 9}
    sub_node["widgets_values"] = [555]  # one value for two promoted widgets: which is which cannot be told
    conversion = ui_to_api(doc, registry)
    assert {k: conversion.prompt["10:4"]["inputs"][k] for k in ("seed", "steps")} == {"seed": 7, "steps": 2}
    assert conversion.notes == ["node 10: its widget values do not match its promoted widgets; the subgraph's own "
                                "values are used"]


@node(category="test", version="1.0.0", output=True)
class PackSampler(Node):
    """A pack's node whose seed does not declare control_after_generate."""

    seed: int = Input(0)
    steps: int = Input(20)

    def run(self, ctx: Context) -> None:
        return None


def test_an_int_named_seed_has_a_control_slot_even_undeclared_as_the_frontend_assumes():
    registry = Registry()
    registry.add(PackSampler.__node_spec__)
    doc = {"nodes": [{"id": 1, "type": "PackSampler", "widgets_values": [5, "randomize", 30]},
                     {"id": 2, "type": "PackSampler", "widgets_values": [6, 31]}], "links": []}
    conversion = ui_to_api(doc, registry)
    assert conversion.prompt["1"]["inputs"] == {"seed": 5, "steps": 30}
    assert conversion.prompt["2"]["inputs"] == {"seed": 6, "steps": 31}
    assert "control_after_generate" not in conversion.prompt["1"]["_meta"]  # the server has no control to apply
    assert conversion.notes == ["node 1 (PackSampler): control 'randomize' of seed ignored: the node declares no seed "
                                "control for it"]


def test_linked_widgets_without_values_are_not_noted_as_defaulted_and_null_links_are_skipped(registry):
    doc = {"nodes": [
        {"id": 1, "type": "PrimitiveNode", "outputs": [{"name": "STRING", "type": "STRING", "links": [1]}],
         "widgets_values": ["from the primitive"]},
        {"id": 2, "type": "PreviewAny", "inputs": [{"name": "source", "type": "*", "link": 2}]},
        {"id": 3, "type": "CLIPTextEncodeSDXL", "inputs": [{"name": "text_g", "type": "STRING", "link": 1,
                                                           "widget": {"name": "text_g"}}],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [2]}]}],
        "links": [None, [1, 1, 0, 3, 0, "STRING"], [2, 3, 0, 2, 0, "CONDITIONING"]]}
    conversion = ui_to_api(doc, registry)
    assert conversion.prompt["3"]["inputs"] == {"width": 1024, "height": 1024, "crop_w": 0, "crop_h": 0,
                                                "target_width": 1024, "target_height": 1024,
                                                "text_g": "from the primitive", "text_l": ""}
    assert conversion.notes == ["node 3 (CLIPTextEncodeSDXL): no widget value for width, height, crop_w, crop_h, "
                                "target_width, target_height, text_l; the default(s) used"]


def test_clashing_inner_ids_are_renumbered_after_the_last_id_as_the_frontend_loads_them():
    from executor.ui_format.node_ids import renumber_clashing_inner_ids

    doc = {"last_node_id": 7, "nodes": [{"id": 1, "type": "A"}, {"id": 2, "type": "sub-a",
                                         "properties": {"proxyWidgets": [["1", "text"], ["-1", "seed"]]}}],
           "links": [], "definitions": {"subgraphs": [
               {"id": "sub-a", "nodes": [{"id": 1}, {"id": 9}], "links": [{"id": 1, "origin_id": 1, "target_id": 9}]},
               {"id": "sub-b", "nodes": [{"id": 3}, {"id": 9}], "links": [[1, 3, 0, 9, 0, "X"]]}]}}
    out = renumber_clashing_inner_ids(doc)
    first, second = out["definitions"]["subgraphs"]
    assert [n["id"] for n in first["nodes"]] == [8, 9]  # 1 is a root node's: the next after last_node_id
    assert first["links"] == [{"id": 1, "origin_id": 8, "target_id": 9}]
    assert [n["id"] for n in second["nodes"]] == [3, 10]  # 9 was taken inside sub-a, and raised the last id
    assert second["links"] == [[1, 3, 0, 10, 0, "X"]]
    assert out["nodes"][1]["properties"]["proxyWidgets"] == [["8", "text"], ["-1", "seed"]]
    assert doc["definitions"]["subgraphs"][0]["nodes"][0]["id"] == 1  # the input is left as it was
    assert renumber_clashing_inner_ids({"nodes": [{"id": 1}], "links": []}) == {"nodes": [{"id": 1}], "links": []}
