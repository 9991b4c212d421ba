"""Plugin discovery: custom_nodes/ and entry points, isolation of broken plugins and nodes, report, web files."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from nodes.builtin import builtin_registry, full_registry
from nodes.paths import DataPaths
from nodes.plugins import load_plugins

PACKS = Path(__file__).parent / "plugin_packs"


def install(paths: DataPaths, *names: str) -> None:
    for name in names:
        source = PACKS / name
        target = paths.custom_nodes / name
        shutil.copytree(source, target) if source.is_dir() else shutil.copy(source, target)


@pytest.fixture
def paths(tmp_path) -> DataPaths:
    return DataPaths(tmp_path / "data")


def test_broken_plugins_next_to_good_ones(paths, caplog):
    install(paths, "broken_import.py", "exits.py", "native_pack", "v1_pack")
    (paths.custom_nodes / "README.txt").write_text("not a plugin")
    (paths.custom_nodes / "old.py.disabled").write_text("raise SystemExit")
    (paths.custom_nodes / "no_init").mkdir()
    registry, plugins = full_registry(paths, entry_points=False)
    report = {p.name: p for p in plugins.items}
    assert list(report) == ["broken_import", "exits", "native_pack", "no_init", "old", "v1_pack"]
    assert report["broken_import"].status == "failed"
    assert report["broken_import"].error.startswith(
        "ModuleNotFoundError: No module named 'this_module_does_not_exist_anywhere' (at ")
    assert report["exits"].status == "failed" and report["exits"].error.startswith("SystemExit: 3")
    assert report["no_init"].status == "failed" and "without __init__.py" in report["no_init"].error
    assert report["old"].status == "disabled" and report["old"].nodes == []
    native = report["native_pack"]
    assert native.status == "partial" and native.nodes == ["Invert", "Sum"]
    assert "RETURN_TYPES must be a tuple" in native.node_errors["NativeBroken"]
    assert "already taken" in native.node_errors["SaveImage"]
    v1 = report["v1_pack"]
    assert v1.status == "loaded" and v1.version == "1.4.0" and v1.error is None and len(v1.nodes) == 9
    # the good plugins' nodes are registered, the built-in SaveImage is still ours
    assert registry.get("Invert").python_module == "custom_nodes.native_pack"
    assert registry.get("V1Brightness").display_name == "Brightness (V1)"
    assert registry.get("SaveImage").cls.__module__ == "nodes.builtin.image"
    assert len(registry) == len(builtin_registry()) + 2 + 9
    assert "plugin broken_import (" in caplog.text and "failed to load" in caplog.text
    json_report = plugins.to_json()
    assert [p["status"] for p in json_report] == ["failed", "failed", "partial", "failed", "disabled", "loaded"]
    assert json_report[5]["web"] is True and json_report[5]["nodes"][0] == "V1Brightness"


def test_same_plugin_name_in_two_data_folders_does_not_leak(tmp_path):
    first, second = DataPaths(tmp_path / "a"), DataPaths(tmp_path / "b")
    (first.custom_nodes / "pack.py").write_text(_native_plugin("FromA"))
    (second.custom_nodes / "pack.py").write_text(_native_plugin("FromB"))
    reg_a, _ = full_registry(first, entry_points=False)
    reg_b, _ = full_registry(second, entry_points=False)
    assert "FromA" in reg_a and "FromB" not in reg_a
    assert "FromB" in reg_b and "FromA" not in reg_b


def test_two_plugins_claiming_one_name_keep_the_first(paths):
    (paths.custom_nodes / "a_pack.py").write_text(_native_plugin("Twice"))
    (paths.custom_nodes / "b_pack.py").write_text(_native_plugin("Twice"))
    registry, plugins = full_registry(paths, entry_points=False)
    assert registry.get("Twice").python_module == "custom_nodes.a_pack"
    assert plugins.get("b_pack").status == "failed" and "already taken" in plugins.get("b_pack").node_errors["Twice"]


def test_entry_point_plugin(tmp_path, monkeypatch, paths):
    """A distribution installed with a `latentloom.nodes` entry point (a real dist-info on sys.path)."""
    site = tmp_path / "site"
    package = site / "ep_nodes_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(_native_plugin("FromEntryPoint") + "\nWEB_DIRECTORY = 'web'\n")
    (package / "web").mkdir()
    (package / "web" / "hello.js").write_text("export default {};\n")
    info = site / "ep_nodes_pkg-3.1.4.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-nodes-pkg\nVersion: 3.1.4\n")
    (info / "entry_points.txt").write_text("[latentloom.nodes]\nep_pack = ep_nodes_pkg\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "ep_nodes_pkg", raising=False)
    registry = builtin_registry()
    plugins = load_plugins(registry, paths)
    plugin = plugins.get("ep_pack")
    assert plugin.status == "loaded" and plugin.source == "entry_point" and plugin.version == "3.1.4"
    assert registry.get("FromEntryPoint").python_module == "ep_nodes_pkg"
    assert plugins.extension_urls() == ["/extensions/ep_pack/hello.js"]


def test_web_extensions_listing_and_safe_files(paths):
    install(paths, "v1_pack", "broken_import.py")
    (paths.custom_nodes / "v1_pack" / "js" / "sub").mkdir()
    (paths.custom_nodes / "v1_pack" / "js" / "sub" / "more.js").write_text("export default {};")
    (paths.custom_nodes / "v1_pack" / "secret.txt").write_text("no")
    _, plugins = full_registry(paths, entry_points=False)
    assert plugins.extension_urls() == ["/extensions/v1_pack/brightness.js", "/extensions/v1_pack/sub/more.js"]
    assert plugins.web_file("v1_pack", "sub/more.js").read_text() == "export default {};"
    assert plugins.web_file("v1_pack", "../secret.txt") is None
    assert plugins.web_file("v1_pack", "/etc/passwd") is None
    assert plugins.web_file("broken_import", "x.js") is None


def test_plugins_can_be_switched_off(paths):
    install(paths, "v1_pack")
    registry, plugins = full_registry(paths, plugins=False)
    assert plugins.items == [] and "V1Brightness" not in registry


def _native_plugin(name: str) -> str:
    return f'''
from nodes.api import Context, Input, Node, node


@node(category="plugin/test", version="1.0.0", name="{name}")
class Node_{name}(Node):
    """A test node."""

    x: int = Input(1)

    def run(self, ctx: Context) -> int:
        return self.x
'''


async def test_server_lists_plugins_serves_extensions_and_converts_ui_format(paths, aiohttp_client):
    """The app factory's default registry: built-ins + the data folder's plugins, a broken one among them."""
    import asyncio
    import json

    from PIL import Image

    from nodes.images import read_png_texts
    from server.app import create_app
    from server.config import ServerConfig

    install(paths, "broken_import.py", "v1_pack")
    client = await aiohttp_client(create_app(ServerConfig(data_dir=paths.root, shutdown_grace=0.2)))
    listed = await (await client.get("/plugins")).json()
    assert [(p["name"], p["status"]) for p in listed] == [("broken_import", "failed"), ("v1_pack", "loaded")]
    assert listed[0]["error"].startswith("ModuleNotFoundError") and listed[1]["version"] == "1.4.0"
    assert await (await client.get("/extensions")).json() == ["/extensions/v1_pack/brightness.js"]
    assert await (await client.get("/api/extensions")).json() == ["/extensions/v1_pack/brightness.js"]
    script = await client.get("/extensions/v1_pack/brightness.js")
    assert script.status == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert "v1test.brightness" in await script.text()
    assert (await client.get("/extensions/v1_pack/../__init__.py")).status == 404
    assert (await client.get("/extensions/broken_import/x.js")).status == 404
    info = await (await client.get("/object_info")).json()
    assert info["V1Brightness"]["display_name"] == "Brightness (V1)" and "SaveImage" in info

    Image.new("RGB", (8, 8), (200, 100, 50)).save(paths.input / "example.png")
    ui = {"nodes": [
        {"id": 1, "type": "LoadImage", "mode": 0, "widgets_values": ["example.png", "image"],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}]},
        {"id": 2, "type": "V1Brightness", "mode": 0, "widgets_values": [0.5],
         "inputs": [{"name": "image", "type": "IMAGE", "link": 1}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2]}]},
        {"id": 3, "type": "SaveImage", "mode": 0, "widgets_values": ["from_ui"],
         "inputs": [{"name": "images", "type": "IMAGE", "link": 2}]},
        {"id": 4, "type": "Note", "mode": 0, "widgets_values": ["hi"]}],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]], "version": 0.4}
    converted = await (await client.post("/workflow/convert", json=ui)).json()
    assert converted["prompt"]["2"]["inputs"] == {"amount": 0.5, "image": ["1", 0]}
    assert converted["notes"] == ["node 4 (Note) dropped: the API format has no notes"]
    bad = await client.post("/workflow/convert", json={**ui, "nodes": [{"id": 9, "type": "Nope", "mode": 0}]})
    assert bad.status == 400 and (await bad.json())["error"]["message"] == "Cannot convert: unknown node type(s) Nope"

    queued = await client.post("/prompt", json={"prompt": ui})
    assert queued.status == 200, await queued.text()
    prompt_id = (await queued.json())["prompt_id"]
    for _ in range(200):
        entry = (await (await client.get(f"/history/{prompt_id}")).json()).get(prompt_id)
        if entry:
            break
        await asyncio.sleep(0.05)
    assert entry["status"]["status_str"] == "success", entry
    (saved,) = entry["outputs"]["3"]["images"]
    texts = read_png_texts(paths.output / saved["filename"])
    assert json.loads(texts["workflow"]) == ui  # the UI file travels in the PNG, as ComfyUI's frontend sends it
    assert json.loads(texts["prompt"])["2"]["class_type"] == "V1Brightness"
    with Image.open(paths.output / saved["filename"]) as img:
        assert img.getpixel((0, 0)) == (100, 50, 25)


def test_missing_requirement_reports_the_install_command(paths, caplog):
    install(paths, "needs_requirement", "broken_import.py", "native_pack")
    registry, plugins = full_registry(paths, entry_points=False)
    pack = plugins.get("needs_requirement")
    requirements = paths.custom_nodes / "needs_requirement" / "requirements.txt"
    assert pack.status == "failed" and "No module named 'latentloom_test_absent_dependency'" in pack.error
    assert pack.install == f"{sys.executable} -m pip install -r {requirements}"
    assert pack.to_json()["install"] == pack.install and pack.install in caplog.text
    assert plugins.get("broken_import").install is None  # a single file has no requirements.txt
    assert plugins.get("native_pack").status == "partial" and "Invert" in registry  # the others still load


def test_missing_runtime_library_names_the_library(paths):
    # what `import torchvision` raises where the library is missing
    (paths.custom_nodes / "needs_vision.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'torchvision'\", name='torchvision')\n")
    _, plugins = full_registry(paths, entry_points=False)
    assert plugins.get("needs_vision").install == f"{sys.executable} -m pip install torchvision"
