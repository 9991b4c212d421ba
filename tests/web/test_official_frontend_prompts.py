"""ComfyUI's own frontend is the oracle for our UI-format converter (issue 9, item 1).

Each UI-format fixture (the classic example workflows, ComfyUI's default graph, seed controls, bypass by type and
by mode, reroutes and primitives, a nested subgraph) is loaded
into the newest official frontend with `app.loadGraphData(doc)`; `(await app.graphToPrompt()).output` is the API
prompt ComfyUI's frontend would queue. `executor.ui_format.ui_to_api` must give the same prompt: the same node ids,
and per node the same `class_type` and `inputs`. The server's data folder holds every model file and input image
the fixtures name (`write_named_files`), so the frontend's combos hold the fixtures' values.

Differences we keep on purpose (`DELIBERATE`, checked to be exactly that): `seed_controls.json` has samplers whose
`widgets_values` lack the control value after the seed (as files from older editors, or with the seed linked, hold
them). The official frontend assigns the values by position over all its widgets, control included, so every later
value shifts (steps ← the old cfg, cfg ← "euler", …) and it would queue a prompt ComfyUI refuses; our converter sees
the list is one short and leaves the control out. `subgraph_nested.json` links a legacy PrimitiveNode on the root
canvas to a subgraph node's promoted `text` widget: the newest frontend does not carry the primitive's value across
the subgraph boundary (the primitive is virtual and its link resolves to nothing), so it queues the inner node's own
text; we give the primitive's value, as the frontend does for a primitive linked to any other node.
`virtual_nodes.json` links a legacy PrimitiveNode to PreviewAny's `source`, a plain input with no widget: the
frontend applies a primitive to widgets only and queues no `source` (which ComfyUI then refuses); we pass the value.
`bypass_mute.json` has an EmptyLatentImage whose `widgets_values` is an object by widget name (as some extensions
write it): the frontend reads only lists and queues the defaults; we read it by name.

Found by this test and fixed in the converter: the newest frontend renumbers subgraph nodes whose ids clash with
another node's when it loads a file (`executor/ui_format/node_ids.py`), so their flattened ids (`10:31`) are its ones.

`official` here is this module's own server (the fixtures' files in its data folder); the `comfy` page fixture
imported from test_official_frontend.py uses it.
"""
from __future__ import annotations

import json

import pytest

from tests.executor.test_ui_format import FILES, write_named_files
from tests.web.test_official_frontend import FRONTENDS, NEW, OfficialServer, comfy, open_app  # noqa: F401

CASES = sorted(p.name for p in FILES.glob("classic_*.json")) + [
    "seed_controls.json", "bypass_by_type.json", "subgraph_nested.json", "bypass_mute.json", "virtual_nodes.json",
    "default_graph.json"]
# (file, node id) → (what the frontend queues there, what we do): see above
DELIBERATE = {
    ("seed_controls.json", "4"): lambda theirs, ours: isinstance(theirs["cfg"], str) and ours["cfg"] == 8,
    ("seed_controls.json", "7"): lambda theirs, ours: isinstance(theirs["cfg"], str) and ours["cfg"] == 8,
    ("subgraph_nested.json", "10:31"): lambda theirs, ours: (theirs["text"], ours["text"]) == (
        "replaced by the primitive outside", "a castle"),
    ("virtual_nodes.json", "6"): lambda theirs, ours: (theirs, ours) == ({}, {"source": "a shared prompt"}),
    ("bypass_mute.json", "7"): lambda theirs, ours: (theirs["width"], ours["width"]) == (512, 64),
}


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    root = FRONTENDS.get(NEW)
    if root is None or not (root / "index.html").is_file():
        pytest.skip("the newest comfyui-frontend-package is not installed (the test extra)")
    from nodes.paths import DataPaths

    data_dir = tmp_path_factory.mktemp("official-prompts")
    write_named_files(DataPaths(data_dir))
    settings = data_dir / "user" / "default" / "comfy.settings.json"  # a returning user: no first-run tour
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    server = OfficialServer(root, data_dir)
    server.start()
    server.release = NEW
    yield server
    server.server.stop()


def frontend_prompt(page, doc: dict) -> dict:
    return page.evaluate("""async (doc) => {
      await app.loadGraphData(doc);
      return (await app.graphToPrompt()).output;
    }""", doc)


def ours(official, doc: dict) -> dict:
    from executor.ui_format import ui_to_api
    from nodes.api import Environment
    from nodes.paths import DataPaths

    prompt = ui_to_api(doc, official.registry, Environment(DataPaths(official.data_dir))).prompt
    return {nid: {"class_type": node["class_type"], "inputs": node["inputs"]} for nid, node in prompt.items()}


def test_our_converter_gives_the_prompt_the_official_frontend_queues(official, comfy):
    open_app(comfy, official.url)
    differences = {}
    for name in CASES:
        doc = json.loads((FILES / name).read_text())
        theirs = {nid: {"class_type": node["class_type"], "inputs": node["inputs"]}
                  for nid, node in frontend_prompt(comfy, json.loads(json.dumps(doc))).items()}
        mine = ours(official, doc)
        for (file, nid), known in DELIBERATE.items():
            if file == name:
                assert known(theirs[nid]["inputs"], mine[nid]["inputs"]), (name, nid, theirs[nid], mine[nid])
                del theirs[nid], mine[nid]
        if theirs != mine:
            differences[name] = {nid: {"frontend": theirs.get(nid), "ours": mine.get(nid)}
                                 for nid in sorted(set(theirs) | set(mine)) if theirs.get(nid) != mine.get(nid)}
    assert differences == {}, json.dumps(differences, indent=1)
