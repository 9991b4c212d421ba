"""A pack's web folder served at ComfyUI's paths; a pack that would copy its JavaScript into our code folders when
the server does not say `supports` never does; routes added on `PromptServer.instance.app` at import; binary
`send_sync` frames."""
from __future__ import annotations

import io
import shutil
import struct
from pathlib import Path

import pytest
from PIL import Image

from nodes.builtin import full_registry
from nodes.paths import DataPaths
from server.app import create_app
from server.comfy_server import BinaryEventTypes, PromptServer, binary_frame
from server.config import ServerConfig

PACKS = Path(__file__).parents[1] / "nodes" / "plugin_packs"
REPO = Path(__file__).parents[2]
CODE_FOLDERS = ("server", "nodes", "executor", "web")


def code_files() -> dict[str, int]:
    """Every file of the code folders (caches aside) with its size."""
    return {str(p.relative_to(REPO)): p.stat().st_size for folder in CODE_FOLDERS
            for p in (REPO / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and "node_modules" not in p.parts}


@pytest.fixture
def paths(data_dir) -> DataPaths:
    paths = DataPaths(data_dir)
    shutil.copytree(PACKS / "web_pack", paths.custom_nodes / "web_pack")
    return paths


async def test_web_directory_is_served_and_nothing_is_copied(aiohttp_client, paths):
    before = code_files()
    client = await aiohttp_client(create_app(ServerConfig(data_dir=paths.root)))
    assert code_files() == before
    assert not (REPO / "server" / "web").exists()
    response = await client.get("/extensions")
    assert response.status == 200
    assert await response.json() == ["/extensions/web_pack/lib/helper.js", "/extensions/web_pack/main.js"]
    script = await client.get("/extensions/web_pack/main.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert await script.text() == (PACKS / "web_pack" / "js" / "main.js").read_text()
    assert (await client.get("/extensions/web_pack/../__init__.py")).status == 404
    plugins = await (await client.get("/plugins")).json()
    assert [(p["name"], p["status"], p["web"]) for p in plugins] == [("web_pack", "loaded", True)]


async def test_routes_packs_add_on_the_app_at_import(aiohttp_client, paths):
    PromptServer()  # as a host loading packs itself does, then builds the app from them
    registry, plugins = full_registry(paths, entry_points=False)
    stand_in = PromptServer.instance.app
    client = await aiohttp_client(create_app(ServerConfig(data_dir=paths.root), registry, plugins))
    hello = await client.get("/web_pack/hello")
    assert hello.status == 200 and await hello.json() == {"hello": "web_pack", "preview_event": 1}
    assert PromptServer.instance.app is client.app and client.app is not stand_in
    assert (await client.get("/object_info")).status == 200  # ours still answer


def test_binary_frames():
    image = Image.new("RGB", (64, 32), (200, 10, 10))
    frame = binary_frame(BinaryEventTypes.UNENCODED_PREVIEW_IMAGE, ("JPEG", image, 16))
    assert struct.unpack(">II", frame[:8]) == (1, 1)
    decoded = Image.open(io.BytesIO(frame[8:]))
    assert decoded.format == "JPEG" and decoded.size == (16, 8)
    assert binary_frame(BinaryEventTypes.TEXT, b"abc") == struct.pack(">I", 3) + b"abc"
    with pytest.raises(TypeError, match="bytes"):
        binary_frame(BinaryEventTypes.TEXT, "abc")
