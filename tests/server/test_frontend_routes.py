"""What ComfyUI's frontend asks for besides the core API: translations, templates, blueprints, the model library,
the jobs API, and serving another frontend build at / with our editor at /latentloom/."""
from __future__ import annotations

import json

from nodes.plugins import PluginInfo, Plugins
from server.app import create_app
from server.config import ServerConfig
from tests.server import server_nodes
from tests.server.conftest import chain, gated, queue, wait_for, wait_history


def plugin_with_files(root):
    pack = root / "custom_nodes" / "pack"
    (pack / "locales" / "en").mkdir(parents=True)
    (pack / "locales" / "fr").mkdir(parents=True)
    (pack / "locales" / "en" / "main.json").write_text(json.dumps({"menu": {"a": "A"}}))
    (pack / "locales" / "en" / "nodeDefs.json").write_text(json.dumps({"Node": {"display_name": "N"}}))
    (pack / "locales" / "fr" / "settings.json").write_text("{broken")
    (pack / "example_workflows").mkdir()
    (pack / "example_workflows" / "demo.json").write_text('{"nodes": []}')
    (pack / "subgraphs").mkdir()
    (pack / "subgraphs" / "blur.json").write_text('{"definitions": {}}')
    return Plugins([PluginInfo("pack", "custom_nodes", str(pack))])


async def test_plugin_translations_templates_and_blueprints(aiohttp_client, registry, data_dir):
    app = create_app(ServerConfig(data_dir=data_dir, shutdown_grace=0.2), registry, plugin_with_files(data_dir))
    client = await aiohttp_client(app)
    assert await (await client.get("/api/i18n")).json() == {
        "en": {"menu": {"a": "A"}, "nodeDefs": {"Node": {"display_name": "N"}}}}
    assert await (await client.get("/api/workflow_templates")).json() == {"pack": ["demo"]}
    template = await client.get("/api/workflow_templates/pack/demo.json")
    assert template.status == 200 and await template.json() == {"nodes": []}
    assert (await client.get("/api/workflow_templates/pack/..%2F..%2Fpack%2Flocales%2Fen%2Fmain.json")).status in (
        403, 404)
    blueprints = await (await client.get("/api/global_subgraphs")).json()
    (key, entry), = blueprints.items()
    assert entry == {"source": "custom_node", "name": "blur", "info": {"node_pack": "pack"}}
    one = await (await client.get(f"/api/global_subgraphs/{key}")).json()
    assert one["data"] == '{"definitions": {}}'
    assert (await client.get("/api/global_subgraphs/nope")).status == 404
    assert await (await client.get("/templates/index.json")).json() == []
    assert await (await client.get("/templates/index.fr.json")).json() == []
    assert await (await client.get("/templates/index_logo.json")).json() == {}


async def test_model_library(client, data_dir):
    (data_dir / "models" / "checkpoints").mkdir(parents=True)
    (data_dir / "models" / "checkpoints" / "a.safetensors").write_bytes(b"1234")
    folders = await (await client.get("/api/experiment/models")).json()
    names = [f["name"] for f in folders]
    assert "checkpoints" in names and "configs" not in names and "custom_nodes" not in names
    files = await (await client.get("/api/experiment/models/checkpoints")).json()
    assert [(f["name"], f["pathIndex"], f["size"]) for f in files] == [("a.safetensors", 0, 4)]
    assert (await client.get("/api/experiment/models/nope")).status == 404
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(data_dir / "models" / "loras" / "m.safetensors"), metadata={"ss_v": "1"})
    assert await (await client.get("/api/view_metadata/loras?filename=m.safetensors")).json() == {"ss_v": "1"}
    for bad in ("loras?filename=..%2F..%2Fm.safetensors", "loras?filename=a.safetensors", "loras?filename=m.ckpt",
                "nope?filename=m.safetensors", "checkpoints?filename=a.safetensors"):
        assert (await client.get(f"/api/view_metadata/{bad}")).status == 404, bad
    paths = await (await client.get("/internal/folder_paths")).json()
    assert paths["checkpoints"] == [str((data_dir / "models" / "checkpoints").resolve())]
    assert (await client.get("/api/internal/folder_paths")).status == 404  # not aliased, as in ComfyUI


async def test_internal_logs(client):
    import logging

    logging.getLogger("latentloom.test").warning("a line for the terminal panel")
    assert "a line for the terminal panel" in await (await client.get("/internal/logs")).json()
    raw = await (await client.get("/internal/logs/raw")).json()
    assert raw["entries"][-1]["m"] == "a line for the terminal panel\n" and raw["size"]["cols"] > 0
    assert (await client.patch("/internal/logs/subscribe", json={"clientId": "x", "enabled": True})).status == 200


async def test_jobs_list_the_queue_and_history(client):
    pid = (await queue(client, chain(2.0), extra_data={"extra_pnginfo": {"workflow": {"id": "wf-1"}}}))["prompt_id"]
    await wait_history(client, pid)
    data = await (await client.get("/api/jobs?status=completed,failed,cancelled&limit=64&offset=0")).json()
    assert data["pagination"] == {"offset": 0, "limit": 64, "total": 1, "has_more": False}
    job, = data["jobs"]
    assert job["id"] == pid and job["status"] == "completed" and job["workflow_id"] == "wf-1"
    assert job["create_time"] > 0 and job["execution_end_time"] >= job["execution_start_time"] > 0
    assert (await (await client.get("/api/jobs?status=in_progress,pending")).json())["jobs"] == []
    detail = await (await client.get(f"/api/jobs/{pid}")).json()
    assert detail["workflow"]["prompt"]["1"]["class_type"] == "Constant" and "3" in detail["outputs"]
    assert (await client.get("/api/jobs/nope")).status == 404
    assert (await client.get("/api/jobs?status=bogus")).status == 400


async def test_cancelling_jobs(client):
    running = (await queue(client, gated()))["prompt_id"]
    await wait_for(server_nodes.GATE_ENTERED.is_set)
    pending = [(await queue(client, gated(str(i))))["prompt_id"] for i in range(2)]
    listed = await (await client.get("/api/jobs?status=in_progress,pending")).json()
    assert {j["id"]: j["status"] for j in listed["jobs"]} == {running: "in_progress", pending[0]: "pending",
                                                               pending[1]: "pending"}
    assert (await client.post(f"/api/jobs/{pending[0]}/cancel")).status == 200
    assert (await client.post("/api/jobs/cancel", json={"job_ids": [running, pending[1], "unknown"]})).status == 200
    entry = await wait_history(client, running)
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    assert (await (await client.get(f"/api/jobs/{running}")).json())["status"] == "cancelled"
    assert (await (await client.get("/queue")).json())["queue_pending"] == []
    assert (await client.post(f"/api/jobs/{running}/cancel")).status == 404  # finished: nothing to cancel
    assert (await client.post("/api/jobs/cancel", json={"job_ids": "x"})).status == 400


async def test_another_frontend_at_root_and_ours_at_latentloom(make_client, tmp_path):
    front = tmp_path / "front"
    (front / "assets").mkdir(parents=True)
    (front / "index.html").write_text("<title>official</title>")
    (front / "assets" / "app.js").write_text("export {}")
    web = tmp_path / "web"
    (web / "src").mkdir(parents=True)
    (web / "index.html").write_text("<title>ours</title>")
    (web / "src" / "main.js").write_text("export {}")
    client = await make_client(web_root=web, front_end_root=front)
    assert await (await client.get("/")).text() == "<title>official</title>"
    assert (await client.get("/assets/app.js")).content_type == "text/javascript"
    assert await (await client.get("/latentloom/")).text() == "<title>ours</title>"
    assert (await client.get("/latentloom/src/main.js")).status == 200
    redirect = await client.get("/latentloom", allow_redirects=False)
    assert redirect.status == 302 and redirect.headers["Location"] == "/latentloom/"
    assert (await client.get("/src/main.js")).status == 404  # our files are not mixed into theirs
    assert (await client.get("/assets/..%2F..%2Fweb%2Findex.html")).status in (403, 404)
    assert (await client.get("/api/object_info")).status == 200
    default = await make_client(web_root=web)
    assert await (await default.get("/")).text() == "<title>ours</title>"
    assert await (await default.get("/latentloom/")).text() == "<title>ours</title>"


def test_front_end_flags(tmp_path):
    import pytest

    from main import build_parser
    from server.config import FrontEndError, ServerConfig

    args = build_parser().parse_args(["serve", "--front-end-root", str(tmp_path), "--multi-user"])
    with pytest.raises(FrontEndError, match="no index.html"):
        ServerConfig.from_args(args)
    (tmp_path / "index.html").write_text("x")
    config = ServerConfig.from_args(args)
    assert config.front_end_root == tmp_path.resolve() and config.multi_user
    assert ServerConfig.from_args(build_parser().parse_args(["serve"])).front_end_root is None
    official = ServerConfig.from_args(build_parser().parse_args(["serve", "--front-end", "official"]))
    assert (official.front_end_root / "index.html").is_file()
