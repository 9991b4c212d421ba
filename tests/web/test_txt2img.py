"""The default workflow end to end: the editor opens workflows/txt2img.json on first use, queues it on the real
server with the real Stable Diffusion nodes (a tiny random-weight SD1.x checkpoint in the real single-file
layout, written by nodes.sd.tiny), shows step progress and live previews on KSampler and the final image inside
SaveImage, and a drop of the PNG that SaveImage wrote brings the workflow back."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.web.conftest import REPO
from tests.web.editor_page import drop_file, events, open_editor, record_events, wait_finished, workflow

TXT2IMG = REPO / "workflows" / "txt2img.json"
SD_NODES = ("CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode", "SaveImage")


def _sd_missing() -> str | None:
    if not TXT2IMG.is_file():
        return "workflows/txt2img.json is not there yet"
    from nodes.builtin import builtin_registry

    registry = builtin_registry()
    missing = [name for name in SD_NODES if name not in registry]
    return f"the Stable Diffusion nodes {missing} are not registered yet" if missing else None


@pytest.fixture(scope="package")
def demo_checkpoint(data_dir):
    reason = _sd_missing()
    if reason:
        pytest.skip(reason)
    from nodes.sd.tiny import write_single_file

    name = json.loads(TXT2IMG.read_text())["4"]["inputs"]["ckpt_name"]
    target = data_dir / "models" / "checkpoints" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    write_single_file("sd1", target, seed=0)
    return target


def test_default_txt2img_runs_with_progress_previews_and_the_image_in_save_image(demo_checkpoint, data_dir, page):
    open_editor(page, None)  # nothing kept in this browser: the editor opens the default workflow
    page.wait_for_function("app.name === 'txt2img'")
    default = json.loads(TXT2IMG.read_text())
    assert workflow(page) == default
    record_events(page)
    page.evaluate("""() => {
      window.__previewShown = false;
      const set = app.run.setPreview.bind(app.run);
      app.run.setPreview = (id, blob) => { set(id, blob); if (app.run.previews.has('3')) window.__previewShown = true; };
    }""")
    page.click("#queue-button")
    page.wait_for_function("app.run.isRunning('3') && app.run.progress !== null", timeout=120_000)
    wait_finished(page, timeout_ms=300_000)
    kinds = [e[0] for e in events(page)]
    assert "execution_success" in kinds, events(page)[-3:]
    steps = default["3"]["inputs"]["steps"]
    assert [e[1]["value"] for e in events(page) if e[0] == "progress" and e[1]["node"] == "3"] == list(range(1, steps + 1))
    assert kinds.count("preview") >= 1 and page.evaluate("window.__previewShown")
    output = page.evaluate("app.run.outputs.get('9')")
    (image,) = output["images"]
    page.wait_for_function("""(url) => { const i = app.run.imageCache.get(url); return i && i.complete && i.naturalWidth; }""",
                           arg=page.evaluate("(loc) => app.api.viewUrl(loc)", image))
    png = data_dir / "output" / image["subfolder"] / image["filename"]
    with Image.open(png) as written:
        size = list(written.size)
    shown = page.evaluate("(() => { const i = app.display(app.graph.getNodeById('9')).images[0]; return [i.naturalWidth, i.naturalHeight]; })()")
    assert shown == size  # the node shows the file SaveImage wrote
    page.screenshot(path=str(REPO / "test-artifacts" / "web" / "txt2img_result.png"))

    # the PNG SaveImage wrote carries the workflow that ran: dropping it brings the workflow back
    page.evaluate("app.load({}, {name: 'empty'})")
    drop_file(page, png.read_bytes(), image["filename"], "image/png")
    page.wait_for_function(f"app.name === {json.dumps(png.stem)}")
    assert workflow(page) == default

    # the run is in the history panel with its image; opening it shows the workflow and the image again
    page.click("#queue-panel-button")
    entry = page.locator(".ll-history-item").first
    entry.locator("img").wait_for()
    assert entry.locator("img").get_attribute("alt") == image["filename"]
    page.evaluate("app.load({}, {name: 'empty'})")
    entry.locator("button").click()
    page.wait_for_function("app.run.outputs.has('9')")
    assert page.evaluate("app.run.outputs.get('9')") == output
    assert workflow(page) == default


FIT = """async ([workflow, installed, size]) => {
  const { fitToCheckpoints } = await import("./src/files.js");
  const asked = [];
  const fetchJson = async (route) => {
    asked.push(route);
    if (route === "/models/checkpoints") return installed;
    if (size === null) throw new Error("not a checkpoint");
    return { size };
  };
  return { workflow: await fitToCheckpoints(workflow, fetchJson), asked };
}"""


@pytest.mark.parametrize("installed, size, name, side", [
    (["latentloom-demo-tiny.safetensors", "xl.safetensors"], 64, "latentloom-demo-tiny.safetensors", 64),
    (["sd15.safetensors", "xl.safetensors"], 512, "sd15.safetensors", 512),
    (["xl.safetensors"], 1024, "xl.safetensors", 1024),
    (["odd.safetensors"], None, "odd.safetensors", 64),  # the server cannot tell: sizes stay
    ([], None, "latentloom-demo-tiny.safetensors", 64),  # nothing installed: the workflow stays
])
def test_default_workflow_uses_an_installed_checkpoint_at_its_size(page, installed, size, name, side):
    open_editor(page, {})
    default = json.loads(TXT2IMG.read_text())
    fitted = page.evaluate(FIT, [default, installed, size])
    assert fitted["workflow"]["4"]["inputs"]["ckpt_name"] == name
    latent = fitted["workflow"]["5"]["inputs"]
    assert (latent["width"], latent["height"]) == (side, side)
    if installed:
        assert fitted["asked"][1] == f"/checkpoint_info?name={name}"
