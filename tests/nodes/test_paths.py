"""nodes.paths and nodes.model_paths: models where users keep them (symlinks, extra folders), cached listings."""
from __future__ import annotations

import os

import pytest

from nodes import paths as paths_module
from nodes.model_paths import ModelPathsError, read_extra_model_paths
from nodes.paths import DataPaths, ExtraFolder, UnsafePathError


def test_owner_symlinks_to_model_files_and_folders_are_followed(tmp_path):
    paths = DataPaths(tmp_path / "data")
    elsewhere = tmp_path / "disk2"
    (elsewhere / "sdxl").mkdir(parents=True)
    (elsewhere / "one.safetensors").write_bytes(b"1")
    (elsewhere / "sdxl" / "two.safetensors").write_bytes(b"2")
    checkpoints = paths.models("checkpoints")
    (checkpoints / "one.safetensors").symlink_to(elsewhere / "one.safetensors")
    (checkpoints / "big").symlink_to(elsewhere / "sdxl")
    assert paths.model_files("checkpoints") == ["big/two.safetensors", "one.safetensors"]
    assert paths.model_path("checkpoints", "big/two.safetensors").read_bytes() == b"2"
    assert paths.model_path("checkpoints", "one.safetensors").read_bytes() == b"1"
    for name in ("../secret.safetensors", "/etc/passwd", "a\0b"):
        with pytest.raises(UnsafePathError):
            paths.model_path("checkpoints", name)


def test_symlink_loops_are_listed_once(tmp_path):
    paths = DataPaths(tmp_path / "data")
    checkpoints = paths.models("checkpoints")
    (checkpoints / "sub").mkdir()
    (checkpoints / "sub" / "a.safetensors").write_bytes(b"a")
    (checkpoints / "sub" / "back").symlink_to(checkpoints)  # a loop through the parent
    (checkpoints / "self").symlink_to(checkpoints / "self")  # a link to itself (broken)
    assert paths.model_files("checkpoints") == ["sub/a.safetensors"]


def test_listings_are_cached_until_a_directory_changes(tmp_path, monkeypatch):
    paths = DataPaths(tmp_path / "data")
    checkpoints = paths.models("checkpoints")
    (checkpoints / "deep").mkdir()
    (checkpoints / "a.safetensors").write_bytes(b"a")
    walks = []
    walk = paths_module._walk_models
    monkeypatch.setattr(paths_module, "_walk_models", lambda *a: walks.append(1) or walk(*a))
    assert paths.model_files("checkpoints") == ["a.safetensors"]
    assert paths.model_files("checkpoints") == ["a.safetensors"] and len(walks) == 1
    (checkpoints / "deep" / "b.safetensors").write_bytes(b"b")  # a sub-folder's mtime changes
    assert paths.model_files("checkpoints") == ["a.safetensors", "deep/b.safetensors"] and len(walks) == 2


YAML = """
comfyui:
    base_path: {base}
    is_default: true
    checkpoints: models/checkpoints/
    clip: |
        models/clip/
        models/text_encoders/
    custom_nodes: custom_nodes/

a111:
    base_path: webui
    checkpoints: models/Stable-diffusion
    vae: models/VAE
"""


def test_extra_model_paths_yaml_adds_folders_in_comfyui_order(tmp_path):
    comfy = tmp_path / "ComfyUI"
    for sub in ("models/checkpoints", "models/clip", "models/text_encoders"):
        (comfy / sub).mkdir(parents=True)
    (comfy / "models/checkpoints/shared.safetensors").write_bytes(b"comfy")
    webui = tmp_path / "webui" / "models" / "Stable-diffusion"
    webui.mkdir(parents=True)
    (webui / "shared.safetensors").write_bytes(b"webui")
    (webui / "only-webui.safetensors").write_bytes(b"w")
    file = tmp_path / "extra_model_paths.yaml"
    file.write_text(YAML.format(base=comfy))
    extra = read_extra_model_paths(file)
    assert extra.folders["checkpoints"] == [ExtraFolder(comfy / "models/checkpoints", True), ExtraFolder(webui)]
    assert extra.folders["text_encoders"] == [ExtraFolder(comfy / "models/clip", True),
                                              ExtraFolder(comfy / "models/text_encoders", True)]
    assert extra.folders["vae"] == [ExtraFolder(tmp_path / "webui/models/VAE")]  # relative to the YAML's folder
    assert extra.notes == ["comfyui.custom_nodes: not a model folder kind here; skipped"]
    paths = DataPaths(tmp_path / "data", extra.folders)
    (paths.models("checkpoints") / "own.safetensors").write_bytes(b"own")
    assert paths.model_files("checkpoints") == ["only-webui.safetensors", "own.safetensors", "shared.safetensors"]
    assert paths.model_path("checkpoints", "shared.safetensors").read_bytes() == b"comfy"  # is_default first
    assert paths.model_path("checkpoints", "missing.safetensors") == paths.models("checkpoints") / "missing.safetensors"


@pytest.mark.parametrize("text, message", [("a: [1, 2", "cannot read"), ("- 1\n- 2", "expected sections"),
                                           ("x:\n  checkpoints: 5", "expected a path")])
def test_malformed_yaml_is_a_clear_error(tmp_path, text, message):
    file = tmp_path / "extra.yaml"
    file.write_text(text)
    with pytest.raises(ModelPathsError, match=message):
        read_extra_model_paths(file)
    with pytest.raises(ModelPathsError, match="cannot read"):
        read_extra_model_paths(tmp_path / "missing.yaml")


def test_a_missing_extra_folder_is_listed_once_it_appears(tmp_path):
    later = tmp_path / "later"
    paths = DataPaths(tmp_path / "data", {"loras": [ExtraFolder(later)]})
    assert paths.model_files("loras") == []
    later.mkdir()
    (later / "style.safetensors").write_bytes(b"s")
    assert paths.model_files("loras") == ["style.safetensors"]
    assert os.path.samefile(paths.model_path("loras", "style.safetensors"), later / "style.safetensors")
