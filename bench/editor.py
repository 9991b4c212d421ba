"""Editor load and pan performance with 1,000 nodes in headless Chromium.

It starts the real server (the app factory on 127.0.0.1, a free port, a temporary data folder), builds a
workflow of copies of the default txt2img graph laid out in a grid (7 nodes and 9 links each; about 1,000 nodes),
stores it as the editor's kept workflow and opens the editor in Debian's Chromium (headless, software rendering)
through Playwright. It prints:

- time to first draw: from navigation start to the end of the first frame that shows the loaded graph, with
  the parts that make it up (reading /object_info, building the graph from the workflow, drawing one frame);
- frame time while panning: the cost of drawing one frame (median and 95th percentile over a pan of 120
  frames), zoomed to fit everything (1,000 nodes visible, litegraph's low-quality mode) and at 100 % zoom (a
  screenful of nodes in full detail); and the frame rate of a real mouse-drag pan.

Reference, in the same run: the same measurements for a 100-node workflow (so the growth factor shows how the
cost scales), and the 16.7 ms frame budget of 60 fps.

    .venv/bin/python bench/editor.py [--nodes 1000] [--reference 100] [--repeat 3] [--chromium /usr/bin/chromium]

Each measurement is repeated (a fresh page each time) and the best run is reported, as timings on a shared
machine only ever get slower from interference.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.app import create_app  # noqa: E402
from server.background import BackgroundServer  # noqa: E402
from server.config import ServerConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FRAME_BUDGET_MS = 1000 / 60


def tiled_workflow(count: int) -> dict:
    """Copies of workflows/txt2img.json in a grid until there are at least `count` nodes (ids renumbered)."""
    base = json.loads((REPO / "workflows" / "txt2img.json").read_text())
    xs = [n["_meta"]["pos"][0] for n in base.values()]
    ys = [n["_meta"]["pos"][1] for n in base.values()]
    width, height = max(xs) - min(xs) + 500, max(ys) - min(ys) + 400
    copies = -(-count // len(base))
    columns = max(1, round(copies ** 0.5))
    workflow: dict = {}
    for copy in range(copies):
        offset = copy * 100
        dx, dy = (copy % columns) * width, (copy // columns) * height
        for nid, entry in base.items():
            inputs = {k: [str(int(v[0]) + offset), v[1]] if isinstance(v, list) else v for k, v in entry["inputs"].items()}
            meta = dict(entry["_meta"], pos=[entry["_meta"]["pos"][0] + dx, entry["_meta"]["pos"][1] + dy])
            workflow[str(int(nid) + offset)] = {"class_type": entry["class_type"], "inputs": inputs, "_meta": meta}
    return workflow


MEASURE_LOAD = """async () => {
  await app.ready;
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const paint = performance.now();
  const { loadWorkflow } = await import("./src/workflow.js");
  const workflow = app.toWorkflow();
  const t0 = performance.now();
  loadWorkflow(app.graph, workflow);
  const t1 = performance.now();
  app.canvas.draw(true, true);
  const t2 = performance.now();
  app.toWorkflow();
  const t3 = performance.now();
  const objectInfo = performance.getEntriesByType("resource").find(e => e.name.includes("/object_info"));
  return {firstDraw: paint, objectInfo: objectInfo ? objectInfo.duration : null, build: t1 - t0, draw: t2 - t1,
          save: t3 - t2, nodes: app.graph._nodes.length, links: app.graph._links.size};
}"""

MEASURE_PAN = """async ([frames, scale]) => {
  const ds = app.canvas.ds;
  if (scale === "fit") app.fit(false); else { ds.scale = scale; ds.offset = [0, 0]; }
  app.canvas.draw(true, true);
  const times = [];
  for (let i = 0; i < frames; i++) {
    ds.offset[0] -= 2 / ds.scale;  // 2 screen pixels a frame: the view keeps (nearly) the same nodes
    ds.offset[1] -= 1 / ds.scale;
    const t = performance.now();
    app.canvas.draw(true, true);
    times.push(performance.now() - t);
  }
  return {times, visible: app.canvas.visible_nodes.length, lowQuality: app.canvas.low_quality};
}"""

RECORD_FRAMES = """() => { window.__frames = []; const f = (t) => { window.__frames.push(t);
  if (window.__frames.length < 100000) requestAnimationFrame(f); }; requestAnimationFrame(f); }"""


def measure(browser, url: str, workflow: dict) -> dict:
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    context.route("**/*", lambda route: route.continue_() if "127.0.0.1" in route.request.url
                  or route.request.url.startswith(("data:", "blob:")) else route.abort())
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    seed = json.dumps({"workflow": workflow, "name": "bench"})
    page.add_init_script(f"localStorage.setItem('latentloom.workflow', {json.dumps(seed)})")
    page.goto(url)
    load = page.evaluate(MEASURE_LOAD)
    fit = page.evaluate(MEASURE_PAN, [120, "fit"])
    full = page.evaluate(MEASURE_PAN, [120, 1])
    page.evaluate("app.canvas.ds.scale = 1; app.canvas.ds.offset = [0, 0]; app.canvas.setDirty(true, true)")
    page.evaluate(RECORD_FRAMES)
    page.mouse.move(1200, 700)
    page.mouse.down()
    page.mouse.move(300, 200, steps=120)
    page.mouse.up()
    stamps = page.evaluate("window.__frames")
    context.close()
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"load": load, "fit": fit, "full": full, "drag_fps": 1000 / statistics.mean(intervals) if intervals else 0,
            "errors": errors}


def best_of(runs: list[dict]) -> dict:
    """The fastest of repeated runs, per figure (load parts by minimum, pans by lowest median)."""
    best = dict(runs[0])
    best["load"] = {k: min(r["load"][k] for r in runs) if isinstance(runs[0]["load"][k], float) else runs[0]["load"][k]
                    for k in runs[0]["load"]}
    for key in ("fit", "full"):
        best[key] = min((r[key] for r in runs), key=lambda pan: statistics.median(pan["times"]))
    best["drag_fps"] = max(r["drag_fps"] for r in runs)
    best["errors"] = [e for r in runs for e in r["errors"]]
    return best


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def report(label: str, result: dict) -> None:
    load, fit, full = result["load"], result["fit"], result["full"]
    print(f"{label}: {load['nodes']} nodes, {load['links']} links")
    print(f"  time to first draw      {load['firstDraw']:8.1f} ms  (object_info {load['objectInfo'] or 0:.1f} ms, "
          f"graph from workflow {load['build']:.1f} ms, one full frame {load['draw']:.1f} ms)")
    print(f"  workflow from graph     {load['save']:8.1f} ms  (what save, undo and the kept copy cost per change)")
    for name, pan in (("pan, fit to view", fit), ("pan, 100% zoom", full)):
        median = statistics.median(pan["times"])
        print(f"  {name:<22} {median:8.2f} ms/frame median, {p95(pan['times']):.2f} ms p95 "
              f"({pan['visible']} nodes visible{', low quality' if pan['lowQuality'] else ''}; "
              f"{FRAME_BUDGET_MS / median:.1f}x the 60 fps budget)")
    print(f"  mouse-drag pan          {result['drag_fps']:8.1f} frames/s (requestAnimationFrame rate)")
    if result["errors"]:
        print(f"  console errors: {result['errors']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--reference", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        server = BackgroundServer(create_app(ServerConfig(data_dir=Path(tmp), port=0))).start()
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        try:
            small, large = tiled_workflow(args.reference), tiled_workflow(args.nodes)
            reference = best_of([measure(browser, server.url + "/", small) for _ in range(args.repeat)])
            result = best_of([measure(browser, server.url + "/", large) for _ in range(args.repeat)])
        finally:
            browser.close()
            server.stop()
    report("reference", reference)
    report("measured", result)
    growth = result["load"]["nodes"] / reference["load"]["nodes"]
    print(f"growth for {growth:.0f}x the nodes: time to first draw x{result['load']['firstDraw'] / reference['load']['firstDraw']:.2f}, "
          f"graph from workflow x{result['load']['build'] / max(reference['load']['build'], 1e-3):.1f}, "
          f"fit-to-view frame x{statistics.median(result['fit']['times']) / statistics.median(reference['fit']['times']):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
