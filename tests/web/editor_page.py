"""Driving the editor like a user: open it on a workflow, find slots and widgets on screen, drag with the mouse.

Positions come from the editor's own geometry (litegraph's slot positions converted to screen pixels), so tests
click where a user would see the thing; `window.app` is read only to observe results.
"""
from __future__ import annotations

import base64
import json
from typing import Any

Point = tuple[float, float]

_SEED = """([workflow, view]) => {
  if (sessionStorage.getItem("ll-test-seeded")) return;
  localStorage.setItem("latentloom.workflow", JSON.stringify({workflow, name: "test", view}));
  sessionStorage.setItem("ll-test-seeded", "1");
}"""

_SCREEN = """([x, y]) => {
  const c = app.canvas.ds.convertOffsetToCanvas([x, y]);
  const r = app.canvas.canvas.getBoundingClientRect();
  return [c[0] + r.left, c[1] + r.top];
}"""


def open_editor(page, workflow: dict[str, Any] | None, view: dict[str, Any] | None = None):
    """Load the editor with `workflow` as the kept (localStorage) workflow; None keeps what the browser has.

    `view` defaults to scale 1 at offset 0, so `_meta.pos` is where nodes appear (below the toolbar).
    """
    if workflow is not None:
        seed = json.dumps([workflow, view or {"scale": 1, "offset": [0, 0]}])
        page.add_init_script(f"({_SEED})({seed})")
    page.goto(page.server_url)
    wait_ready(page)
    return page


def wait_ready(page) -> None:
    page.wait_for_function("window.app && window.app.ready")
    page.evaluate("window.app.ready.then(() => true)")
    page.wait_for_function("window.app.api.connected")
    settle(page)


def settle(page, frames: int = 3) -> None:
    """Let a few animation frames pass (litegraph draws in requestAnimationFrame)."""
    page.evaluate(f"new Promise(r => {{ let n = {frames}; const f = () => --n ? requestAnimationFrame(f) : r(); requestAnimationFrame(f); }})")


def workflow(page) -> dict[str, Any]:
    """The workflow the editor would save now."""
    return page.evaluate("app.toWorkflow()")


def to_screen(page, point: Point) -> Point:
    return tuple(page.evaluate(_SCREEN, list(point)))


def slot(page, node_id: str, kind: str, index_or_name: int | str) -> Point:
    """Screen position of an input ("in") or output ("out") slot, by index or name."""
    pos = page.evaluate("""([id, kind, key]) => {
      const node = app.graph.getNodeById(id);
      const slots = kind === "out" ? node.outputs : node.inputs;
      const index = typeof key === "number" ? key : slots.findIndex(s => s.name === key);
      if (index < 0) throw new Error(`no ${kind} slot ${key} on node ${id}`);
      const p = kind === "out" ? node.getOutputPos(index) : node.getInputPos(index);
      return [p[0], p[1]];
    }""", [node_id, kind, index_or_name])
    return to_screen(page, pos)


def widget(page, node_id: str, name: str, x_fraction: float = 0.5) -> Point:
    """Screen position inside a widget (x as a fraction of the node's width)."""
    pos = page.evaluate("""([id, name, fx]) => {
      const node = app.graph.getNodeById(id);
      const w = node.widgets.find(w => w.name === name);
      if (!w) throw new Error(`no widget ${name} on node ${id}`);
      return [node.pos[0] + node.size[0] * fx, node.pos[1] + w.y + 10];
    }""", [node_id, name, x_fraction])
    return to_screen(page, pos)


def node_body(page, node_id: str) -> Point:
    """A point on the node's title bar (for selecting or dragging it)."""
    pos = page.evaluate("""(id) => { const n = app.graph.getNodeById(id); return [n.pos[0] + n.size[0] / 2, n.pos[1] - 15]; }""",
                        node_id)
    return to_screen(page, pos)


def drag(page, start: Point, end: Point, steps: int = 8) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=steps)
    page.mouse.move(*end, steps=steps)
    page.mouse.up()
    settle(page)


def record_events(page) -> None:
    """Keep every websocket message type (and its data) the editor receives in `window.__events`."""
    page.evaluate("""() => {
      window.__events = [];
      for (const type of ["status", "execution_start", "execution_cached", "executing", "progress", "executed",
                          "execution_success", "execution_error", "execution_interrupted", "preview"]) {
        app.api.addEventListener(type, (e) => window.__events.push([type, type === "preview" ? {} : e.detail]));
      }
    }""")


def events(page) -> list[tuple[str, dict]]:
    return [tuple(e) for e in page.evaluate("window.__events")]


def wait_for_event(page, type_: str, timeout_ms: int = 60_000) -> None:
    page.wait_for_function(f"window.__events.some(e => e[0] === {json.dumps(type_)})", timeout=timeout_ms)
    settle(page)


def wait_finished(page, count: int = 1, timeout_ms: int = 120_000) -> None:
    """Wait until `count` prompts have ended (success, error or interrupt)."""
    page.wait_for_function(
        f"window.__events.filter(e => ['execution_success', 'execution_error', 'execution_interrupted'].includes(e[0])).length >= {count}",
        timeout=timeout_ms)
    settle(page)


def drop_file(page, data: bytes, name: str, mime: str, at=(60, 60)) -> None:
    """Drop a file on the canvas the way a browser does (a DragEvent carrying a DataTransfer)."""
    page.evaluate("""([b64, name, mime, x, y]) => {
      const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
      const transfer = new DataTransfer();
      transfer.items.add(new File([bytes], name, {type: mime}));
      const target = document.querySelector("#canvas-wrap");
      const box = target.getBoundingClientRect();
      target.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true,
                                                  clientX: box.left + x, clientY: box.top + y}));
    }""", [base64.b64encode(data).decode(), name, mime, *at])
