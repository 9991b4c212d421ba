"""What a workflow or PNG says about its models (`executor.model_sources`), and the converter keeping
`properties.models` in `_meta.models` so the editor and `models pull --for` still know the sources."""
from __future__ import annotations

import json

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from executor.model_sources import WantedModel, missing_models, wanted_models
from executor.ui_format import ui_to_api
from nodes.builtin import builtin_registry
from nodes.identity import ModelHashes, hash_file
from nodes.paths import DataPaths

URL = "https://example.com/v1-5.safetensors"
SHA = "ab" * 32
UI = {"nodes": [{"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["v1-5.safetensors"],
                 "outputs": [], "properties": {"models": [{"name": "v1-5.safetensors", "url": URL,
                                                           "directory": "checkpoints"}, "junk"]}},
                {"id": 5, "type": "LoraLoaderModelOnly", "widgets_values": ["style.safetensors", 1.0],
                 "properties": {"models": [{"name": "style.safetensors", "directory": "loras"}]},
                 "inputs": [{"name": "model", "type": "MODEL", "link": 1}], "outputs": []}],
      "links": [[1, 4, 0, 5, 0, "MODEL"]],
      "models": [{"name": "v1-5.safetensors", "directory": "checkpoints", "hash": SHA.upper(), "hash_type": "SHA256"},
                 {"name": "x.bin", "directory": "nowhere", "url": URL}]}


def test_a_ui_file_names_its_models_with_sources_and_hashes(tmp_path):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(UI))
    assert wanted_models(path) == [WantedModel("checkpoints", "v1-5.safetensors", URL, SHA),
                                   WantedModel("loras", "style.safetensors")]


def test_the_converter_keeps_sources_and_the_api_file_still_names_them(tmp_path):
    prompt = ui_to_api(UI, builtin_registry()).prompt
    assert prompt["4"]["_meta"]["models"] == [{"name": "v1-5.safetensors", "url": URL, "directory": "checkpoints"}]
    path = tmp_path / "api.json"
    path.write_text(json.dumps(prompt))
    assert wanted_models(path) == [WantedModel("checkpoints", "v1-5.safetensors", URL, SHA),
                                   WantedModel("loras", "style.safetensors")]


def test_a_png_record_gives_hashes_and_sources(tmp_path):
    info = PngInfo()
    info.add_text("prompt", json.dumps({"1": {"class_type": "VAELoader", "inputs": {"vae_name": "v.safetensors"}}}))
    info.add_text("latentloom", json.dumps({"models": [
        {"node": "2", "input": "ckpt_name", "kind": "checkpoints", "name": "m.safetensors", "sha256": SHA,
         "source": URL}, {"kind": "loras", "name": None}]}))
    path = tmp_path / "made.png"
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    assert wanted_models(path) == [WantedModel("checkpoints", "m.safetensors", URL, SHA),
                                   WantedModel("vae", "v.safetensors")]


def test_present_means_the_name_with_the_right_bytes_or_the_bytes_under_another_name(tmp_path):
    paths = DataPaths(tmp_path)
    hashes = ModelHashes(tmp_path / "hashes.json")
    (paths.models("checkpoints") / "a.safetensors").write_bytes(b"aaa")
    (paths.models("checkpoints") / "renamed.safetensors").write_bytes(b"bbb")
    sha_a, sha_b = hash_file(paths.models("checkpoints") / "a.safetensors"), hash_file(
        paths.models("checkpoints") / "renamed.safetensors")
    wanted = [WantedModel("checkpoints", "a.safetensors"), WantedModel("checkpoints", "a.safetensors", sha256=sha_a),
              WantedModel("checkpoints", "b.safetensors", sha256=sha_b), WantedModel("checkpoints", "c.safetensors"),
              WantedModel("checkpoints", "a.safetensors", sha256="0" * 64), WantedModel("checkpoints", "../x.ckpt")]
    assert missing_models(wanted, paths, hashes) == wanted[3:]
