"""Files in a real browser: save → reload → the identical workflow, PNG drop, ComfyUI API exports without
positions, ComfyUI UI-format files through the server's converter, and the workflow surviving a page reload."""
from __future__ import annotations

import io
import json

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.web.editor_page import drop_file, open_editor, settle, wait_ready, widget, workflow

RICH = {
    "1": {"inputs": {"value": 5.0}, "class_type": "Constant",
          "_meta": {"title": "Five", "pos": [40, 100], "size": [280, 60], "color": "#232", "bgcolor": "#353"}},
    "2": {"inputs": {"value": 123}, "class_type": "PrimitiveInt",
          "_meta": {"title": "Int", "pos": [40, 300], "size": [280, 90],
                    "control_after_generate": {"value": "increment"}}},
    "5": {"inputs": {"x": ["1", 0], "factor": 3, "mode": "divide"}, "class_type": "Scale",
          "_meta": {"title": "Scale", "pos": [520, 80], "size": [300, 90], "reroutes": {"x": [[400, 40], [460, 40]]},
                    "groups": [{"title": "Maths", "bounding": [500, 0, 360, 400], "color": "#3f789e"}]}},
    "6": {"inputs": {"a": ["1", 0], "b": ["5", 0]}, "class_type": "Add",
          "_meta": {"title": "Add", "pos": [560, 240], "size": [200, 70], "reroutes": {"a": [[400, 40]]},
                    "groups": [{"title": "Maths", "bounding": [500, 0, 360, 400], "color": "#3f789e"}]}},
    "7": {"inputs": {"value": ["6", 0]}, "class_type": "Show",
          "_meta": {"title": "Show", "pos": [900, 240], "size": [240, 100], "collapsed": True}},
    "8": {"inputs": {"x": ["1", 0], "template": "n = {}\nline two", "suffix": "!"}, "class_type": "Format",
          "_meta": {"title": "Format", "pos": [520, 460], "size": [300, 160]}},
}


def png_with(texts: dict[str, str]) -> bytes:
    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def test_loading_keeps_everything_the_file_says(page):
    """Open → serialise gives the same document: titles, colours, reroutes (shared ones too), groups, collapse,
    seed modes, multi-line text."""
    open_editor(page, RICH)
    assert workflow(page) == RICH
    assert page.evaluate("app.graph.reroutes.size") == 2  # [400, 40] is shared by two links
    assert page.evaluate("app.graph.groups.length") == 1


def test_save_reload_gives_the_identical_workflow(page):
    open_editor(page, RICH)
    page.mouse.click(*widget(page, "5", "factor", 0.95))  # an edit through the UI first
    settle(page)
    with page.expect_download() as download_info:
        page.click("#save-button")
    saved = json.loads(download_info.value.path().read_text())
    assert saved["5"]["inputs"]["factor"] == 4
    assert {k: v for k, v in saved.items() if k != "5"} == {k: v for k, v in RICH.items() if k != "5"}
    page.reload()
    wait_ready(page)
    assert workflow(page) == saved
    # and the saved file opens to the same workflow too
    page.evaluate("app.load({}, {name: 'empty'})")
    with page.expect_file_chooser() as chooser:
        page.click("#open-button")
    chooser.value.set_files(files=[{"name": "saved.json", "mimeType": "application/json",
                                    "buffer": json.dumps(saved).encode()}])
    page.wait_for_function("app.name === 'saved'")
    assert workflow(page) == saved


def test_dropping_a_png_restores_its_workflow(editor):
    page = editor
    drop_file(page, png_with({"prompt": json.dumps(RICH), "workflow": json.dumps({"nodes": [], "links": []})}),
              "ComfyUI_00001_.png", "image/png")
    page.wait_for_function("app.name === 'ComfyUI_00001_'")
    assert workflow(page) == RICH


def test_png_without_a_workflow_is_explained(editor):
    page = editor
    drop_file(page, png_with({"Software": "something"}), "plain.png", "image/png")
    notice = page.locator(".ll-notice-error")
    notice.wait_for()
    assert "no workflow" in notice.inner_text()
    assert workflow(page) == {}


def test_api_export_without_positions_is_laid_out(editor):
    page = editor
    export = {  # what ComfyUI's "Export (API)" writes: no positions at all
        "3": {"inputs": {"value": 2.0}, "class_type": "Constant", "_meta": {"title": "Constant"}},
        "4": {"inputs": {"x": ["3", 0], "factor": 2, "mode": "multiply"}, "class_type": "Scale", "_meta": {"title": "Scale"}},
        "5": {"inputs": {"a": ["3", 0], "b": ["4", 0]}, "class_type": "Add", "_meta": {"title": "Add"}},
        "6": {"inputs": {"value": ["5", 0]}, "class_type": "Show", "_meta": {"title": "Show"}},
    }
    drop_file(page, json.dumps(export).encode(), "api.json", "application/json")
    page.wait_for_function("app.name === 'api'")
    wf = workflow(page)
    x = {nid: wf[nid]["_meta"]["pos"][0] for nid in wf}
    assert x["3"] < x["4"] < x["5"] < x["6"]  # columns follow the links
    assert {nid: {k: v for k, v in n.items() if k != "_meta"} for nid, n in wf.items()} == \
           {nid: {k: v for k, v in n.items() if k != "_meta"} for nid, n in export.items()}
    boxes = [(n["_meta"]["pos"], n["_meta"]["size"]) for n in wf.values()]
    for i, (p, s) in enumerate(boxes):  # nothing overlaps
        for q, t in boxes[i + 1:]:
            assert p[0] + s[0] <= q[0] or q[0] + t[0] <= p[0] or p[1] + s[1] <= q[1] or q[1] + t[1] <= p[1]


UI_DOC = {"last_node_id": 2, "last_link_id": 1, "version": 0.4, "groups": [], "config": {}, "extra": {},
          "nodes": [{"id": 1, "type": "Constant", "pos": [10, 20], "size": [280, 60], "mode": 0,
                     "outputs": [{"name": "NUMBER", "type": "NUMBER", "links": [1]}], "widgets_values": [2.5]},
                    {"id": 2, "type": "Show", "pos": [400, 20], "size": [240, 100], "mode": 0,
                     "inputs": [{"name": "value", "type": "*", "link": 1}], "widgets_values": []}],
          "links": [[1, 1, 0, 2, 0, "NUMBER"]]}


def test_ui_format_file_opens_through_the_server_converter(editor):
    page = editor
    drop_file(page, json.dumps(UI_DOC).encode(), "ui.json", "application/json")
    page.wait_for_function("app.name === 'ui'")
    wf = workflow(page)
    assert {k: (n["class_type"], n["inputs"]) for k, n in wf.items()} == \
        {"1": ("Constant", {"value": 2.5}), "2": ("Show", {"value": ["1", 0]})}
    assert wf["2"]["_meta"]["pos"] == [400, 20]


def test_png_with_only_a_ui_workflow_chunk_is_converted(editor):
    page = editor
    drop_file(page, png_with({"workflow": json.dumps(UI_DOC)}), "ui.png", "image/png")
    page.wait_for_function("app.name === 'ui'")
    assert workflow(page)["1"]["inputs"] == {"value": 2.5}


def test_ui_format_with_unknown_types_names_them(editor):
    page = editor
    page.allowed_errors.append(r"status of 400")  # the browser logs the refused POST /workflow/convert itself
    doc = json.loads(json.dumps(UI_DOC))
    doc["nodes"][0]["type"] = "NotInstalledNode"
    drop_file(page, json.dumps(doc).encode(), "bad.json", "application/json")
    notice = page.locator(".ll-notice-error")
    notice.wait_for()
    assert "NotInstalledNode" in notice.inner_text()


def test_unknown_node_types_are_kept_and_reported(page):
    wf = {
        "1": {"inputs": {"value": 1.0}, "class_type": "Constant", "_meta": {"title": "C", "pos": [40, 100], "size": [280, 60]}},
        "2": {"inputs": {"x": ["1", 0], "strength": 0.5, "pair": {"__value__": [1, 2]}}, "class_type": "SomeCustomNode",
              "_meta": {"title": "Custom", "pos": [400, 100], "size": [200, 60]}},
    }
    open_editor(page, wf)
    notice = page.locator(".ll-notice-error")
    notice.wait_for()
    assert "SomeCustomNode" in notice.inner_text()
    saved = workflow(page)
    assert saved["2"]["inputs"] == wf["2"]["inputs"] and saved["2"]["class_type"] == "SomeCustomNode"
