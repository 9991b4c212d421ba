"""ComfyUI's own frontend (the `comfyui-frontend-package` build) served by latentloom at `/`, in Chromium: the
release ComfyUI 0.3.64 pins (1.27.10, installed by `./dev.sh test` into `.frontends/`) and the newest one (the
`test` extra). Each loads without an error caused by our answers, shows our nodes under ComfyUI's categories and
names, opens ComfyUI's default SD1.5 graph from a UI-format file (made small: 64×64, 3 steps, on the tiny demo
checkpoint), runs it from its Run command with step progress and the image in Save Image, and keeps its settings
and a workflow saved from its Save dialog across a server restart, reopened from its workflows sidebar. A graph
with a subgraph (made by its Convert to Subgraph command) runs: the frontend flattens it when it queues.

The frontend is driven through its own objects where clicking would be brittle: `app.handleFile` (what a file
drop calls), `app.extensionManager.command.execute('Comfy.QueuePrompt')` (the Run button's command) and
`app.extensionManager.setting.set` (what the settings dialog calls). Saving and reopening use the real dialog and
sidebar.
"""
from __future__ import annotations

import importlib.util
import json
import re
import time
from pathlib import Path

import pytest

from tests.web.conftest import REPO

OLD, NEW = "comfyui-0.3.64", "newest"
STATIC = Path("comfyui_frontend_package") / "static"
FRONTENDS = {OLD: REPO / ".frontends" / "comfyui-frontend-package-1.27.10" / STATIC}
_installed = importlib.util.find_spec("comfyui_frontend_package")
if _installed is not None and _installed.origin:
    FRONTENDS[NEW] = Path(_installed.origin).parent / "static"
GRAPH = REPO / "tests" / "executor" / "ui_files" / "default_graph.json"  # ComfyUI's default graph, UI format
CHECKPOINT = "v1-5-pruned-emaonly.safetensors"  # the name the default graph asks for; here the tiny demo weights
COMFY_NAMES = {"CheckpointLoaderSimple": ["loaders", "Load Checkpoint"],
               "CLIPTextEncode": ["conditioning", "CLIP Text Encode (Prompt)"],
               "EmptyLatentImage": ["latent", "Empty Latent Image"], "KSampler": ["sampling", "KSampler"],
               "VAEDecode": ["latent", "VAE Decode"], "SaveImage": ["image", "Save Image"]}
# What ComfyUI answers 404 too: files a fresh user does not have yet.
COMFY_404 = re.compile(r"/user\.css$|/api/userdata/(user\.css|comfy\.templates\.json|workflows%2F\.index\.json)$"
                       r"|/api/userdata\?dir=(workflows|subgraphs)")
# 1.27.10's model-to-node map registers these loaders by name and breaks (`reading 'name'`, then `reading 'has'` in
# every ckpt_name/lora_name/vae_name combo) when one is missing from /object_info: then its Load Checkpoint has no
# ckpt_name and it cannot queue the graph. Newer releases cope.
LOADERS_127 = ("CheckpointLoaderSimple", "ImageOnlyCheckpointLoader", "LoraLoader", "LoraLoaderModelOnly", "VAELoader",
               "ControlNetLoader", "UNETLoader", "UpscaleModelLoader", "StyleModelLoader", "GLIGENLoader")
MISSING_LOADERS = [r"reading 'name'", r"reading 'has'"]
# and its own bug: a setting's onChange sets a setting not registered yet, on every fresh user
KNOWN_FRONTEND_BUGS = {OLD: [r"reading 'id'"], NEW: []}


class OfficialServer:
    """The app with a frontend build at `/`, restartable on the same data folder."""

    def __init__(self, root: Path, data_dir: Path) -> None:
        from nodes.builtin import full_registry
        from nodes.paths import DataPaths

        self.root, self.data_dir = root, data_dir
        self.registry, self.plugins = full_registry(DataPaths(data_dir), entry_points=False)
        self.server = None
        self.release = ""

    @property
    def cannot_queue(self) -> str | None:
        """Why this frontend cannot queue a Load Checkpoint graph on our nodes, or None."""
        missing = [name for name in LOADERS_127 if name not in self.registry]
        if self.release == OLD and missing:
            return f"1.27.10 needs ComfyUI's loaders in /object_info; missing {', '.join(missing)}"
        return None

    def start(self) -> None:
        from server.app import create_app
        from server.background import BackgroundServer
        from server.config import ServerConfig

        config = ServerConfig(data_dir=self.data_dir, port=0, front_end_root=self.root)
        self.server = BackgroundServer(create_app(config, self.registry, self.plugins)).start()
        self.url = self.server.url + "/"

    def restart(self) -> None:
        self.server.stop()
        self.start()


@pytest.fixture(scope="module", params=list(FRONTENDS))
def official(request, tmp_path_factory):
    root = FRONTENDS[request.param]
    if not (root / "index.html").is_file():
        pytest.skip(f"{root} is missing: ./dev.sh test installs it")
    from nodes.sd.tiny import write_single_file

    data_dir = tmp_path_factory.mktemp(f"official-{request.param}")
    write_single_file("sd1", data_dir / "models" / "checkpoints" / CHECKPOINT, seed=0)
    settings = data_dir / "user" / "default" / "comfy.settings.json"  # a returning user: no first-run tour
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    server = OfficialServer(root, data_dir)
    server.start()
    server.release = request.param
    yield server
    server.server.stop()


@pytest.fixture
def comfy(official, page):
    """The page on the official frontend; every error response must be one ComfyUI gives too."""
    failed, page.images = [], []
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
    page.on("response", lambda r: r.status == 200 and r.headers.get("content-type") == "image/png"
            and page.images.append(r.url))
    page.allowed_errors += [r"status of 404 \(Not Found\)", r"net::ERR_FAILED",  # checked below; the internet
                            *KNOWN_FRONTEND_BUGS[official.release],
                            *(MISSING_LOADERS if official.cannot_queue else [])]
    yield page
    assert [f for f in failed if not (f.startswith("404 ") and COMFY_404.search(f))] == []


def open_app(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("window.app?.graph && window.app.vueAppReady && window.LiteGraph", timeout=90_000)


def small_graph_file() -> str:
    graph = json.loads(GRAPH.read_text())
    for node in graph["nodes"]:
        if node["type"] == "EmptyLatentImage":
            node["widgets_values"] = [64, 64, 1]
        elif node["type"] == "KSampler":
            node["widgets_values"] = [7, "fixed", 3, 8, "euler", "normal", 1]
    return json.dumps(graph)


def open_file(page, text: str, name: str = "sd15.json") -> None:
    page.evaluate("""([text, name]) => app.handleFile(new File([text], name, {type: 'application/json'}))""",
                  [text, name])
    page.wait_for_function("app.graph.nodes.length === 7 && app.graph.getNodeById(5).widgets[0].value === 64")


def test_loads_lists_our_nodes_and_runs_a_workflow(official, comfy):
    open_app(comfy, official.url)
    names = comfy.evaluate("""(names) => Object.fromEntries(names.map(n => {
      const type = LiteGraph.registered_node_types[n];
      return [n, [type?.category, type?.title]];
    }))""", list(COMFY_NAMES))
    assert names == COMFY_NAMES
    open_file(comfy, small_graph_file())
    if official.cannot_queue:
        pytest.skip(official.cannot_queue)
    comfy.evaluate("() => app.extensionManager.command.execute('Comfy.Canvas.FitView')")  # Save Image on screen
    comfy.evaluate("""() => {
      window.__events = [];
      for (const t of ['execution_start', 'progress', 'executed', 'execution_success', 'execution_error'])
        app.api.addEventListener(t, (e) => window.__events.push([t, e.detail]));
    }""")
    comfy.evaluate("() => app.extensionManager.command.execute('Comfy.QueuePrompt')")
    comfy.wait_for_function("window.__events.some(([t]) => t === 'execution_success' || t === 'execution_error')",
                            timeout=120_000)
    events = comfy.evaluate("window.__events")
    assert [t for t, _ in events if t.startswith("execution_")][-1] == "execution_success", events[-2:]
    assert [d["value"] for t, d in events if t == "progress" and d["node"] == "3"] == [1, 2, 3]
    saved = [d for t, d in events if t == "executed" and d["node"] == "9"][0]["output"]["images"][0]
    assert (official.data_dir / "output" / saved["subfolder"] / saved["filename"]).is_file()
    deadline = time.monotonic() + 30  # the frontend fetches the image to show it in Save Image
    while not any("/api/view?" in url and f"filename={saved['filename']}" in url for url in comfy.images):
        assert time.monotonic() < deadline, comfy.images
        comfy.wait_for_timeout(100)


def test_settings_and_a_saved_workflow_survive_a_restart(official, comfy):
    open_app(comfy, official.url)
    comfy.evaluate("() => app.extensionManager.setting.set('Comfy.TextareaWidget.FontSize', 13)")
    open_file(comfy, small_graph_file())
    comfy.evaluate("() => { app.extensionManager.command.execute('Comfy.SaveWorkflow') }")
    comfy.wait_for_function("document.activeElement?.tagName === 'INPUT'")  # the Save dialog's name field
    comfy.keyboard.press("Control+a")
    comfy.keyboard.type("small sd15")
    comfy.keyboard.press("Enter")
    saved = official.data_dir / "user" / "default" / "workflows" / "small sd15.json"
    deadline = time.monotonic() + 20
    while not saved.is_file() and time.monotonic() < deadline:
        comfy.wait_for_timeout(100)
    assert [n["type"] for n in json.loads(saved.read_text())["nodes"]].count("KSampler") == 1

    comfy.goto("about:blank")  # the page would poll the stopped server
    official.restart()  # a new port: a new origin, so nothing comes back from the browser's storage
    open_app(comfy, official.url)
    assert comfy.evaluate("() => app.extensionManager.setting.get('Comfy.TextareaWidget.FontSize')") == 13
    comfy.evaluate("() => app.extensionManager.command.execute('Workspace.ToggleSidebarTab.workflows')")
    comfy.get_by_text(re.compile(r"^small sd15(\.json)?$")).first.click()  # 1.27.10 shows the extension
    comfy.wait_for_function("app.graph.nodes.length === 7 && app.graph.getNodeById(3).widgets[2].value === 3")


def test_our_editor_stays_at_latentloom(official, comfy):
    from tests.web.editor_page import wait_ready

    comfy.goto(official.url + "latentloom/")
    wait_ready(comfy)  # its API calls and websocket reach /api from under /latentloom/
    assert comfy.evaluate("Object.keys(app.defs).includes('KSampler')")


def test_a_graph_with_a_subgraph_runs(official, comfy):
    """The newest frontend flattens subgraphs itself when it queues (ids like `10:5`); the prompt must run."""
    if official.release != NEW:
        pytest.skip("checked with the newest release")
    open_app(comfy, official.url)
    open_file(comfy, small_graph_file())
    comfy.evaluate("""() => {
      app.canvas.selectItems([app.graph.getNodeById(5), app.graph.getNodeById(6), app.graph.getNodeById(7)]);
      return app.extensionManager.command.execute('Comfy.Graph.ConvertToSubgraph');
    }""")
    comfy.wait_for_function("app.graph.nodes.length === 5 && app.graph.subgraphs.size === 1")
    prompt = comfy.evaluate("async () => (await app.graphToPrompt()).output")
    assert any(":" in node_id for node_id in prompt), prompt.keys()  # flattened: the subgraph's nodes, prefixed
    result = comfy.evaluate("async () => await app.api.queuePrompt(0, await app.graphToPrompt())")
    pid = result["prompt_id"]
    deadline = time.monotonic() + 120
    while not (entry := comfy.evaluate(f"fetch('/api/history/{pid}').then(r => r.json())").get(pid)):
        assert time.monotonic() < deadline, "the prompt did not finish"
        comfy.wait_for_timeout(500)
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert entry["outputs"]["9"]["images"]
