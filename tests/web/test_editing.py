"""Editing in a real browser: search, typed links, widgets, widget ↔ input, undo/redo, copy/paste, groups."""
from __future__ import annotations

from tests.web.editor_page import drag, node_body, open_editor, settle, slot, widget, workflow


def meta(pos, size=None):
    return {"pos": list(pos), **({"size": list(size)} if size else {})}


def test_add_node_through_search(editor):
    page = editor
    page.mouse.dblclick(420, 300)
    search = page.locator(".ll-search input")
    search.wait_for()
    search.type("prvw any")  # fuzzy: letters in order, not a substring
    first = page.locator(".ll-search-item").first
    assert first.get_attribute("data-type") == "PreviewAny"
    categories = page.locator(".ll-search-category").all_inner_texts()
    assert categories and categories[0].lower() == "utils"  # results are grouped under their category
    search.fill("int")
    types = page.locator(".ll-search-item").evaluate_all("els => els.map(e => e.dataset.type)")
    assert "PrimitiveInt" in types
    search.fill("preview any")
    search.press("Enter")
    settle(page)
    assert page.locator(".ll-search").count() == 0
    wf = workflow(page)
    assert [n["class_type"] for n in wf.values()] == ["PreviewAny"]
    (node,) = wf.values()
    # the node lands where the user double-clicked (graph units = pixels at scale 1, canvas below the toolbar)
    top = page.evaluate("app.canvas.canvas.getBoundingClientRect().top")
    assert node["_meta"]["pos"] == [420, round(300 - top)]


def test_typed_link_made_and_wrong_type_refused(page):
    open_editor(page, {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 3}, "_meta": meta((60, 80))},
        "2": {"class_type": "Constant", "inputs": {"value": 2.5}, "_meta": meta((60, 260))},
        "3": {"class_type": "Add", "inputs": {}, "_meta": meta((480, 120))},
    })
    # INT output onto a NUMBER input: litegraph refuses it (the slot types differ)
    drag(page, slot(page, "1", "out", 0), slot(page, "3", "in", "a"))
    page.keyboard.press("Escape")
    assert "a" not in workflow(page)["3"]["inputs"]
    # NUMBER onto NUMBER connects
    drag(page, slot(page, "2", "out", 0), slot(page, "3", "in", "a"))
    drag(page, slot(page, "2", "out", 0), slot(page, "3", "in", "b"))
    assert workflow(page)["3"]["inputs"] == {"a": ["2", 0], "b": ["2", 0]}


def test_edit_widgets(page):
    open_editor(page, {
        "1": {"class_type": "Scale", "inputs": {"factor": 2, "mode": "multiply"}, "_meta": meta((80, 100))},
        "2": {"class_type": "Format", "inputs": {"template": "{}"}, "_meta": meta((480, 100), (360, 200))},
        "3": {"class_type": "PrimitiveBoolean", "inputs": {"value": False}, "_meta": meta((80, 360))},
    })
    # number: the right arrow steps by the declared step (1 for INT)
    page.mouse.click(*widget(page, "1", "factor", 0.95))
    page.mouse.click(*widget(page, "1", "factor", 0.95))
    settle(page)
    assert workflow(page)["1"]["inputs"]["factor"] == 4
    # number: typing a value out of range is clamped to the declared max (100)
    page.mouse.click(*widget(page, "1", "factor", 0.5))
    dialog = page.locator(".graphdialog input")
    dialog.fill("1000")
    dialog.press("Enter")
    settle(page)
    assert workflow(page)["1"]["inputs"]["factor"] == 100
    # combo: the arrow moves to the next option
    page.mouse.click(*widget(page, "1", "mode", 0.95))
    settle(page)
    assert workflow(page)["1"]["inputs"]["mode"] == "divide"
    # multiline string: a real textarea
    area = page.locator('.ll-textarea[data-input="template"]')
    area.fill("value: {}\nsecond line")
    assert workflow(page)["2"]["inputs"]["template"] == "value: {}\nsecond line"
    # boolean toggle
    page.mouse.click(*widget(page, "3", "value", 0.5))
    settle(page)
    assert workflow(page)["3"]["inputs"]["value"] is True


def test_widget_becomes_input_and_back(page):
    open_editor(page, {
        "1": {"class_type": "PrimitiveString", "inputs": {"value": "{} apples"}, "_meta": meta((40, 120))},
        "2": {"class_type": "Format", "inputs": {"template": "kept {}"}, "_meta": meta((480, 100), (360, 180))},
    })
    # drop a STRING link onto the template widget: the widget becomes an input
    drag(page, slot(page, "1", "out", 0), widget(page, "2", "template", 0.5))
    assert workflow(page)["2"]["inputs"]["template"] == ["1", 0]
    assert not page.locator('.ll-textarea[data-input="template"]').is_visible()
    # remove the link's source: the widget is back with its value
    page.mouse.click(*node_body(page, "1"))
    page.keyboard.press("Delete")
    settle(page)
    assert workflow(page)["2"]["inputs"]["template"] == "kept {}"
    assert page.locator('.ll-textarea[data-input="template"]').is_visible()
    # undo (a reload of the graph) leaves exactly one text area per multi-line widget
    page.keyboard.press("Control+z")
    settle(page)
    assert workflow(page)["2"]["inputs"]["template"] == ["1", 0]
    page.keyboard.press("Control+y")
    settle(page)
    assert page.locator(".ll-textarea").count() == 1


def test_undo_redo_copy_paste_delete_group(page):
    open_editor(page, {"1": {"class_type": "PrimitiveInt", "inputs": {"value": 7}, "_meta": meta((100, 100))}})
    page.mouse.click(*node_body(page, "1"))
    page.keyboard.press("Control+c")
    page.mouse.move(600, 400)
    page.keyboard.press("Control+v")
    settle(page)
    page.wait_for_timeout(400)  # changes are recorded for undo a moment after they happen
    wf = workflow(page)
    assert len(wf) == 2
    assert [n["inputs"]["value"] for n in wf.values()] == [7, 7]
    page.keyboard.press("Control+z")
    settle(page)
    assert list(workflow(page)) == ["1"]
    page.keyboard.press("Control+y")
    settle(page)
    assert len(workflow(page)) == 2
    # multi-select everything, group it
    page.keyboard.press("Control+a")
    page.keyboard.press("Control+g")
    settle(page)
    wf = workflow(page)
    assert all(n["_meta"]["groups"][0]["title"] == "Group" for n in wf.values())
    # delete the selection, undo brings it back
    page.mouse.click(*node_body(page, "1"))
    page.keyboard.press("Delete")
    page.wait_for_timeout(400)
    assert "1" not in workflow(page)
    page.keyboard.press("Control+z")
    settle(page)
    assert workflow(page)["1"]["inputs"]["value"] == 7


def test_help_lists_shortcuts(editor):
    page = editor
    page.keyboard.press("?")
    help_panel = page.locator("#help")
    assert help_panel.is_visible()
    text = help_panel.inner_text()
    for keys in ("Ctrl+Enter", "Ctrl+Z", "Ctrl+C", "Delete", "Ctrl+G"):
        assert keys in text
    page.keyboard.press("Escape")
    assert not help_panel.is_visible()


def link_centre(page, target_id: str, input_name: str):
    pos = page.evaluate("""([id, name]) => {
      const node = app.graph.getNodeById(id);
      const link = app.graph._links.get(node.inputs.find(s => s.name === name).link);
      return [link._pos[0], link._pos[1]];
    }""", [target_id, input_name])
    from tests.web.editor_page import to_screen

    return to_screen(page, pos)


def test_link_menu_adds_a_reroute_and_deletes_links(page):
    open_editor(page, {
        "1": {"class_type": "Constant", "inputs": {"value": 1.0}, "_meta": meta((40, 100))},
        "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}, "_meta": meta((600, 300))},
    })
    page.mouse.click(*link_centre(page, "2", "value"))
    page.locator(".litemenu-entry", has_text="Add Reroute").click()
    settle(page)
    page.wait_for_timeout(400)
    (point,) = workflow(page)["2"]["_meta"]["reroutes"]["value"]
    assert 300 < point[0] < 600 and 100 < point[1] < 320  # on the link, between the nodes
    page.mouse.click(*link_centre(page, "2", "value"))
    page.locator(".litemenu-entry", has_text="Delete").click()
    settle(page)
    assert "value" not in workflow(page)["2"]["inputs"]


def test_right_click_menu_adds_nodes_by_category(editor):
    page = editor
    page.mouse.click(500, 400, button="right")
    page.locator(".litemenu-entry", has_text="Add Node").click()
    page.locator(".litemenu-entry", has_text="utils").first.click()
    page.locator(".litemenu-entry", has_text="primitive").first.click()
    page.locator(".litemenu-entry", has_text="Boolean").click()
    settle(page)
    assert [n["class_type"] for n in workflow(page).values()] == ["PrimitiveBoolean"]


def test_fit_to_view_shows_every_node(page):
    open_editor(page, {
        "1": {"class_type": "Constant", "inputs": {"value": 1.0}, "_meta": meta((-3000, -2000))},
        "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}, "_meta": meta((4000, 2500))},
    })
    assert page.evaluate("app.canvas.ds.scale") == 1
    page.mouse.click(700, 500)
    page.keyboard.press(".")
    # the view animates there; litegraph recomputes the visible nodes on each frame it draws
    page.wait_for_function("app.canvas.visible_nodes.map(n => String(n.id)).sort().join() === '1,2'")
    assert page.evaluate("app.canvas.ds.scale") < 1


def test_link_dropped_on_empty_canvas_offers_matching_nodes_and_connects(page):
    open_editor(page, {"1": {"class_type": "Constant", "inputs": {"value": 1.0}, "_meta": meta((40, 120))}})
    drag(page, slot(page, "1", "out", 0), (700, 400))
    page.locator(".litemenu-entry", has_text="Search").click()
    offered = page.locator(".ll-search-item").evaluate_all("els => els.map(e => e.dataset.type)")
    assert "Add" in offered and "PreviewAny" in offered  # take a NUMBER (or anything)
    assert "PrimitiveInt" not in offered and "Constant" not in offered  # no input that takes a NUMBER
    page.locator(".ll-search input").type("show")
    page.keyboard.press("Enter")
    settle(page)
    wf = workflow(page)
    (new_id,) = [nid for nid in wf if nid != "1"]
    assert wf[new_id]["class_type"] == "Show" and wf[new_id]["inputs"] == {"value": ["1", 0]}


def test_menus_offer_nothing_the_workflow_format_cannot_hold(page):
    open_editor(page, {"1": {"class_type": "Constant", "inputs": {"value": 1.0}, "_meta": meta((100, 100))}})
    page.mouse.click(*node_body(page, "1"), button="right")
    entries = page.locator(".litemenu-entry").all_inner_texts()
    assert "Title" in entries and "Collapse" in entries
    assert not {"Mode", "Properties", "Properties Panel"} & set(entries)
    assert not any("Subgraph" in e for e in entries)
    page.keyboard.press("Escape")
    page.mouse.click(700, 500)
    page.mouse.click(700, 500, button="right")
    entries = page.locator(".litemenu-entry").all_inner_texts()
    assert "Add Node" in entries and not any("Subgraph" in e for e in entries)


def test_plugin_web_extensions_are_loaded(editor):
    """The example plugin, installed in custom_nodes/, has its web extension imported and set up."""
    assert editor.evaluate("app.extensions") == ["example_plugin"]
