"""Input files from the editor: LoadImage's upload button and image drop (the node shows the selected image),
and combo lists (e.g. checkpoint files) refreshed from the server."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.web.editor_page import drop_file, node_body, open_editor, settle, widget, workflow


@pytest.fixture
def needs_image_nodes():
    from nodes.builtin import builtin_registry

    registry = builtin_registry()
    missing = [n for n in ("LoadImage", "CheckpointLoaderSimple") if n not in registry]
    if missing:
        pytest.skip(f"the nodes {missing} are not registered yet")


def png(colour, size=(12, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def shown_size(page, node_id):
    page.wait_for_function("""(id) => { const d = app.display(app.graph.getNodeById(id));
                                         return d.images.length && d.images[0].complete && d.images[0].naturalWidth; }""",
                           arg=node_id)
    return page.evaluate("""(id) => { const i = app.display(app.graph.getNodeById(id)).images[0];
                                      return [i.naturalWidth, i.naturalHeight]; }""", node_id)


def test_load_image_upload_button_and_drop(needs_image_nodes, data_dir, page):
    open_editor(page, {"1": {"class_type": "LoadImage", "inputs": {},
                             "_meta": {"pos": [100, 100], "size": [300, 320]}}})
    with page.expect_file_chooser() as chooser:
        page.mouse.click(*widget(page, "1", "choose file to upload"))
    chooser.value.set_files(files=[{"name": "red.png", "mimeType": "image/png", "buffer": png((255, 0, 0))}])
    page.wait_for_function("app.toWorkflow()['1'].inputs.image === 'red.png'")
    assert (data_dir / "input" / "red.png").read_bytes() == png((255, 0, 0))
    assert shown_size(page, "1") == [12, 8]
    # an image dropped on the node is uploaded and selected (elsewhere it would be opened as a workflow)
    x, y = node_body(page, "1")
    box = page.evaluate("(() => { const r = document.querySelector('#canvas-wrap').getBoundingClientRect(); return [r.left, r.top]; })()")
    drop_file(page, png((0, 0, 255), (6, 6)), "blue.png", "image/png", at=(x - box[0], y - box[1] + 120))
    page.wait_for_function("app.toWorkflow()['1'].inputs.image === 'blue.png'")
    assert shown_size(page, "1") == [6, 6]
    values = page.evaluate("app.graph.getNodeById('1').widgets.find(w => w.name === 'image').options.values")
    assert {"red.png", "blue.png"} <= set(values)


def test_combo_lists_refresh_from_the_server(needs_image_nodes, data_dir, page):
    open_editor(page, {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {},
                             "_meta": {"pos": [100, 100], "size": [320, 100]}}})
    folder = data_dir / "models" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zz-fresh-model.safetensors").write_bytes(b"")
    try:
        values = "app.graph.getNodeById('1').widgets.find(w => w.name === 'ckpt_name').options.values"
        assert "zz-fresh-model.safetensors" not in page.evaluate(values)
        page.mouse.click(*node_body(page, "1"))
        page.keyboard.press("r")
        page.wait_for_function(f"{values}.includes('zz-fresh-model.safetensors')")
        settle(page)
        # the new file can be chosen in the node
        page.evaluate("""() => { const w = app.graph.getNodeById('1').widgets.find(w => w.name === 'ckpt_name');
                                 w.value = 'zz-fresh-model.safetensors'; }""")
        assert workflow(page)["1"]["inputs"]["ckpt_name"] == "zz-fresh-model.safetensors"
    finally:
        (folder / "zz-fresh-model.safetensors").unlink()
