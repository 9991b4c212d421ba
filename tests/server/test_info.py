"""Information routes, the OpenAPI document and docs page, and the editor's static files."""
from __future__ import annotations

import re

from nodes.api import Environment
from nodes.paths import MODEL_FOLDERS, DataPaths
from nodes.registry import render_object_info
from server import schemas
from server.app import api_routes


async def test_object_info_is_the_registry(client, registry, data_dir):
    info = await (await client.get("/object_info")).json()
    assert info == registry.object_info(Environment(DataPaths(data_dir)))
    assert {"Constant", "Const", "Scale", "Show", "Seeded"} <= set(info)
    one = await (await client.get("/api/object_info/Scale")).json()
    assert one == {"Scale": render_object_info(registry.get("Scale"), Environment(DataPaths(data_dir)))}
    assert one["Scale"]["input"]["required"]["mode"] == [["multiply", "divide"], {"default": "multiply"}]
    alias = await (await client.get("/object_info/Const")).json()
    assert list(alias) == ["Const"] and alias["Const"]["alias_of"] == "Constant"
    assert await (await client.get("/object_info/Nope")).json() == {}


async def test_model_folders_and_embeddings(client, data_dir):
    for rel in ("checkpoints/b.safetensors", "checkpoints/sub/a.ckpt", "checkpoints/notes.txt",
                "embeddings/easy.pt", "embeddings/more/bad-hands.safetensors"):
        path = data_dir / "models" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert await (await client.get("/models")).json() == list(MODEL_FOLDERS)
    assert await (await client.get("/models/checkpoints")).json() == ["b.safetensors", "sub/a.ckpt"]
    assert await (await client.get("/api/models/loras")).json() == []
    assert (await client.get("/models/nope")).status == 404
    assert await (await client.get("/embeddings")).json() == ["easy", "more/bad-hands"]


async def test_features_extensions_system_stats(client):
    assert await (await client.get("/features")).json() == {"supports_preview_metadata": True,
                                                           "max_upload_size": 104857600.0}
    assert await (await client.get("/extensions")).json() == []
    stats = await (await client.get("/system_stats")).json()
    assert {"os", "ram_total", "ram_free", "comfyui_version", "python_version", "pytorch_version",
            "embedded_python", "argv"} <= set(stats["system"])
    assert stats["system"]["ram_total"] >= stats["system"]["ram_free"] > 0
    assert stats["system"]["latentloom_precision"]["requested"] == "auto"
    device = stats["devices"][0]
    assert {"name", "type", "index", "vram_total", "vram_free", "torch_vram_total", "torch_vram_free"} <= set(device)


async def test_openapi_document_matches_the_routes(client):
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    for route in api_routes():
        openapi_path = route.path
        for path in (openapi_path, *(["/api" + openapi_path] if route.alias else [])):
            assert route.method.lower() in doc["paths"][path], (route.method, path)
    assert "/api/internal/folder_paths" not in doc["paths"]  # /internal is not aliased, as in ComfyUI
    assert {"/userdata/{file}", "/api/settings/{id}", "/api/jobs", "/i18n"} <= doc["paths"].keys()
    prompt = doc["paths"]["/prompt"]["post"]
    assert prompt["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PromptRequest"}
    components = doc["components"]["schemas"]
    assert components["PromptRequest"]["properties"].keys() == schemas.PromptRequest.model_json_schema()[
        "properties"].keys()
    assert prompt["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    view_params = {p["name"] for p in doc["paths"]["/view"]["get"]["parameters"]}
    assert view_params == set(schemas.ViewQuery.model_fields)
    upload = doc["paths"]["/upload/image"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
    assert "{prompt_id}" in "".join(doc["paths"]) and doc["paths"]["/history/{prompt_id}"]["get"]["parameters"][0][
        "in"] == "path"
    # the document's models are the ones that validate: a field the model refuses is refused by the server
    resp = await client.post("/prompt", json={"prompt": {}, "partial_execution_targets": "9"})
    assert resp.status == 400 and "partial_execution_targets" in (await resp.json())["error"]["details"]


async def test_docs_page_is_self_contained(client):
    resp = await client.get("/docs")
    html = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "openapi.json" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing fetched from elsewhere
    assert "https://" not in html and "http://" not in html


async def test_placeholder_without_editor(make_client, tmp_path):
    client = await make_client(web_root=tmp_path / "no-web")
    resp = await client.get("/")
    assert resp.status == 200 and "latentloom" in await resp.text() and "/docs" in await resp.text()
    assert (await client.get("/lib/litegraph/litegraph.es.js")).status == 404
    assert (await client.get("/src/main.js")).status == 404


async def test_editor_files_and_library(make_client, tmp_path):
    web = tmp_path / "web"
    dist = web / "node_modules" / "@comfyorg" / "litegraph" / "dist"
    (dist / "css").mkdir(parents=True)
    (dist / "litegraph.es.js").write_text("export const LiteGraph = {};")
    (dist / "css" / "litegraph.css").write_text(".a{}")
    (web / "src").mkdir()
    (web / "index.html").write_text("<!doctype html><title>editor</title>")
    (web / "src" / "main.js").write_text("import '@comfyorg/litegraph';")
    (web / ".env").write_text("SECRET=1")
    (tmp_path / "outside.js").write_text("nope")
    client = await make_client(web_root=web)
    index = await client.get("/")
    assert await index.text() == "<!doctype html><title>editor</title>"
    lib = await client.get("/lib/litegraph/litegraph.es.js")
    assert lib.status == 200 and lib.content_type == "text/javascript" and lib.headers["Cache-Control"] == "no-cache"
    assert await (await client.get("/lib/litegraph/css/litegraph.css")).text() == ".a{}"
    main = await client.get("/src/main.js")
    assert main.status == 200 and main.content_type == "text/javascript"
    for bad in ("/.env", "/lib/litegraph/..%2F..%2F..%2F..%2Foutside.js", "/src/..%2F..%2Foutside.js",
                "/src/%2e%2e/%2e%2e/outside.js"):
        resp = await client.get(bad)
        assert resp.status in (403, 404) and "nope" not in await resp.text(), bad
    assert (await client.get("/api/nothing-here")).status == 404


async def test_checkpoint_info_tells_family_and_size(client, data_dir):
    from nodes.sd.tiny import write_single_file

    folder = data_dir / "models" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    write_single_file("sdxl", folder / "tiny-xl.safetensors")
    (folder / "junk.safetensors").write_bytes(b"not a checkpoint")
    info = await (await client.get("/checkpoint_info", params={"name": "tiny-xl.safetensors"})).json()
    assert info == {"name": "tiny-xl.safetensors", "family": "sdxl", "prediction": "eps", "size": 64}
    for name, status in (("junk.safetensors", 400), ("missing.safetensors", 404), ("../x.safetensors", 400)):
        resp = await client.get("/checkpoint_info", params={"name": name})
        assert resp.status == status and (await resp.json())["error"]["details"], name
    assert (await client.get("/checkpoint_info")).status == 400
