"""UI-format conversion: hand-written files covering each rule, compared with the API format they must give."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from executor.ui_format import is_ui_format, ui_to_api
from executor.validate import validate
from executor.workflow import WorkflowError, parse_workflow
from nodes.api import Environment
from nodes.builtin import builtin_registry
from nodes.paths import DataPaths

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
    assert error.message == ("Cannot convert: unknown node type(s) WAS_Image_Blend, "
                             "a5c0e6d2-0000-4000-8000-000000000001 (a subgraph; not supported)")
    assert error.details == ("WAS_Image_Blend: node(s) 2, 3; a5c0e6d2-0000-4000-8000-000000000001 "
                             "(a subgraph; not supported): node(s) 4")


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
