/**
 * The editor: one litegraph canvas whose node types come from the server's `/object_info`, wired to the
 * server's HTTP routes and websocket, with files, undo, panels and shortcuts around it.
 *
 * Rules: nothing about a node type is written here (see nodes.js); the document the editor saves, keeps in
 * localStorage and undoes through is the API-format workflow the server runs (see workflow.js); every
 * user-visible problem goes to a notice or the error list, never only to the console. `window.app` is the
 * editor, for the browser tests and the curious.
 */
import { LGraph, LGraphCanvas, LGraphGroup, LGraphNode, LiteGraph } from "@comfyorg/litegraph";

import { Api, ApiError } from "./api.js";
import {
  FileProblem, downloadWorkflow, fetchDefaultWorkflow, fitToCheckpoints, pickFile, readWorkflowFile, storeWorkflow,
  storedWorkflow,
} from "./files.js";
import { installKeys, typingInto } from "./keys.js";
import { definitionInputs, registerNodeTypes } from "./nodes.js";
import { ErrorList, Notices, QueuePanel, renderHelp } from "./panels.js";
import { ModelPulls } from "./pulls.js";
import { RunState } from "./run.js";
import { SearchBox } from "./search.js";
import { bindDrop, bindRunStatus, bindToolbar } from "./ui.js";
import { UndoStack } from "./undo.js";
import { ImageUploads } from "./uploads.js";
import { TextAreaLayer, installTypeColours } from "./widgets.js";
import { graphToWorkflow, loadWorkflow } from "./workflow.js";

const $ = (selector) => document.querySelector(selector);
const COMMIT_DELAY_MS = 250;
const FIT_ZOOM = 0.9;
const WIDGET_MIN_SCALE = 0.3;

export class Editor {
  constructor() {
    this.defs = {};
    this.name = "untitled";
    this.commitTimer = null;
    this.loading = false;
  }

  async start() {
    this.api = new Api();
    this.notices = new Notices($("#notices"));
    this.errors = new ErrorList($("#errors"), (id) => this.centreOn(id));
    this.uploads = new ImageUploads(this.api, $("#file-input"), {
      changed: () => this.changed(),
      redraw: () => this.canvas.setDirty(true, true),
      problem: (message) => this.notices.show(message, "error"),
    });
    this.createCanvas();
    this.run = new RunState(this.api, (id) => this.graph.getNodeById(id), () => this.canvas.setDirty(true, true));
    this.run.showPreviews = localStorage.getItem("latentloom.previews") !== "off";
    this.search = new SearchBox(this);
    this.canvas.showSearchBox = (event, options) => this.search.open(event, options);
    this.undo = new UndoStack(() => JSON.stringify(this.toWorkflow()), (state) => this.restore(state));
    this.queuePanel = new QueuePanel($("#queue-panel"), this.api, {
      cancel: (id) => this.cancel(id),
      open: (id, entry) => this.openHistory(id, entry),
    });
    this.pulls = new ModelPulls(this);
    renderHelp($("#help"));
    await this.loadDefinitions();
    await this.openInitialWorkflow();
    bindRunStatus(this);
    bindToolbar(this);
    bindDrop(this);
    installKeys(this);
    await this.loadExtensions();
    this.api.connect();
  }

  /**
   * Plugins' web extensions: each URL of `GET /extensions` is imported; a module whose default export has
   * `setup(app)` gets it called once, with this editor. A broken extension is named and the rest go on.
   */
  async loadExtensions() {
    this.extensions = [];
    let urls = [];
    try {
      urls = await this.api.fetchJson("/extensions");
    } catch (error) {
      this.notices.show(`Cannot list the plugins' extensions: ${error.message}`, "error");
      return;
    }
    for (const url of urls) {
      try {
        const extension = (await import(new URL(url, document.baseURI).href)).default;
        if (typeof extension?.setup === "function") await extension.setup(this);
        this.extensions.push(extension?.name ?? url);
      } catch (error) {
        this.notices.show(`Extension ${url} failed: ${error.message}`, "error", 15000);
      }
    }
  }

  createCanvas() {
    LiteGraph.release_link_on_empty_shows_menu = true;
    LiteGraph.middle_click_slot_add_default_node = true;
    LiteGraph.catch_exceptions = true;
    this.graph = new LGraph();
    const element = $("#graph-canvas");
    this.canvas = new LGraphCanvas(element, this.graph);
    this.canvas.allow_searchbox = true;
    this.canvas.render_canvas_border = false;
    this.canvas.show_info = false;
    this.canvas.low_quality_zoom_threshold = 0.45;
    // Below this zoom widgets are a few pixels tall and unreadable; not drawing them keeps an overview of
    // thousands of nodes fluid (bench/editor.py). drawNodeWidgets is litegraph's hook for this.
    const drawWidgets = this.canvas.drawNodeWidgets;
    this.canvas.drawNodeWidgets = function (node, y, ctx) {
      if (this.ds.scale >= WIDGET_MIN_SCALE) drawWidgets.call(this, node, y, ctx);
    };
    installTypeColours(this.canvas, LGraphCanvas);
    hideUnsavableMenuEntries(this.canvas);
    this.textAreas = new TextAreaLayer($("#widget-layer"), () => this.changed());
    this.canvas.onRender = () => this.textAreas.beginFrame();
    this.canvas.onDrawOverlay = () => this.textAreas.endFrame();
    const notify = () => this.changed();
    this.graph.onNodeAdded = notify;
    this.graph.onNodeRemoved = notify;
    this.graph.on_change = notify; // litegraph calls it after edits made through its menus and keys
    this.graph.onAfterChange = notify;
    // a finished gesture is one undo step, however fast the next one follows
    const gestureDone = (e) => {
      if (!typingInto(e.target)) this.changed(0); // typing settles through the text field's input events
    };
    element.addEventListener("pointerdown", () => element.focus());
    // capture on window: litegraph stops some events from propagating; the commit itself waits a turn
    window.addEventListener("pointerup", gestureDone, true);
    window.addEventListener("keyup", gestureDone, true);
    new ResizeObserver(() => this.resize()).observe(element.parentElement);
    this.resize();
    window.addEventListener("pagehide", () => this.commit());
  }

  /** Size the canvas to its box in device pixels, as litegraph expects. */
  resize() {
    const element = this.canvas.canvas;
    const box = element.parentElement.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    element.width = Math.max(1, Math.round(box.width * ratio));
    element.height = Math.max(1, Math.round(box.height * ratio));
    element.style.width = `${box.width}px`;
    element.style.height = `${box.height}px`;
    this.canvas.bgcanvas.width = element.width;
    this.canvas.bgcanvas.height = element.height;
    element.getContext("2d").setTransform(ratio, 0, 0, ratio, 0, 0);
    this.canvas.setDirty(true, true);
  }

  nodeEnv() {
    return {
      textAreas: this.textAreas,
      isRunning: (node) => this.run.isRunning(node.id),
      progressOf: (node) => this.run.progressOf(node.id),
      errorsOf: (node) => this.run.errorsOf(node.id),
      display: (node) => this.display(node),
      pickAndUpload: (node, name) => this.uploads.pick(node, name),
      upload: (node, name, file) => this.uploads.upload(node, name, file),
      changed: () => this.changed(),
    };
  }

  /** Fetch `/object_info` and (re-)register node types; existing nodes get their combo lists refreshed. */
  async loadDefinitions() {
    try {
      this.defs = await this.api.objectInfo();
    } catch (error) {
      const hint = error.status === 401 ? " — this server needs a token: open the editor as /?token=YOUR_TOKEN" : "";
      this.notices.show(`Cannot read the node list from the server: ${error.message}${hint}`, "error", 0);
      return;
    }
    registerNodeTypes(this.defs, this.nodeEnv());
    for (const node of this.graph._nodes) {
      const def = this.defs[node.type];
      if (!def) continue;
      for (const input of definitionInputs(def)) {
        const widget = input.type === "COMBO" && node.widgets?.find((w) => w.name === input.name);
        if (widget) widget.options.values = input.values;
      }
    }
    this.canvas.setDirty(true, true);
  }

  async openInitialWorkflow() {
    const stored = storedWorkflow();
    if (stored) {
      this.load(stored.workflow, { name: stored.name, view: stored.view });
      return;
    }
    await this.openDefault();
  }

  async openDefault() {
    const workflow = await fetchDefaultWorkflow();
    const fetchJson = (route) => this.api.fetchJson(route);
    if (workflow) this.load(await fitToCheckpoints(workflow, fetchJson), { name: "txt2img" });
    else this.load({}, { name: "untitled" });
  }

  toWorkflow() {
    return graphToWorkflow(this.graph);
  }

  /**
   * Open a workflow. `view`: `{scale, offset}` to restore (else fit to view); `keepResults`: keep the shown
   * results (undo/redo, history).
   */
  load(workflow, { name = this.name, view = null, keepResults = false } = {}) {
    this.search.close();
    this.loading = true;
    try {
      if (!keepResults) this.run.reset();
      const report = loadWorkflow(this.graph, workflow);
      this.name = name || "untitled";
      if (view) this.setView(view);
      else this.fit(false);
      if (report.missing.length) {
        const names = [...new Set(report.missing)].join(", ");
        this.notices.show(`Unknown node types (not on this server): ${names}`, "error", 0);
      }
      for (const problem of report.problems) this.notices.show(problem, "error", 15000);
    } finally {
      this.loading = false;
    }
    this.undo.reset();
    this.commit(true);
    document.title = `${this.name} · latentloom`;
  }

  /** Put an undo/redo state back, keeping view and results. */
  restore(state) {
    const view = this.view();
    this.loading = true;
    try {
      loadWorkflow(this.graph, JSON.parse(state));
      this.setView(view);
    } finally {
      this.loading = false;
    }
    this.store();
  }

  view() {
    return { scale: this.canvas.ds.scale, offset: [...this.canvas.ds.offset] };
  }

  setView({ scale, offset }) {
    if (Number.isFinite(scale) && scale > 0) this.canvas.ds.scale = scale;
    if (Array.isArray(offset)) this.canvas.ds.offset = [Number(offset[0]) || 0, Number(offset[1]) || 0];
    this.canvas.setDirty(true, true);
  }

  /**
   * Something may have changed: record it for undo and keep it. Typing and other bursts settle for
   * `delay` ms first; the end of a pointer or key gesture passes 0 (after litegraph has handled the event).
   */
  changed(delay = COMMIT_DELAY_MS) {
    if (this.loading) return;
    if (this.commitTimer !== null && this.commitSoon) return; // a gesture's commit is due: it takes this too
    clearTimeout(this.commitTimer);
    this.commitSoon = delay === 0;
    this.commitTimer = setTimeout(() => this.commit(), delay);
  }

  commit(force = false) {
    clearTimeout(this.commitTimer);
    this.commitTimer = null;
    if (this.undo.check() || force) this.store();
  }

  store() {
    storeWorkflow(JSON.parse(this.undo.current ?? "{}"), this.name, this.view());
  }

  /** Fit the view to the selection, or to everything; animated unless asked otherwise. */
  fit(animated = true) {
    const selected = [...this.canvas.selectedItems];
    const bounds = graphBounds(selected.length ? selected : [...this.graph.positionableItems()]);
    if (!bounds) return;
    const ds = this.canvas.ds;
    if (animated) {
      ds.animateToBounds(bounds, () => this.canvas.setDirty(true, true), { zoom: FIT_ZOOM });
      return;
    }
    const ratio = window.devicePixelRatio || 1;
    const [width, height] = [this.canvas.canvas.width / ratio, this.canvas.canvas.height / ratio];
    const scale = Math.min(FIT_ZOOM * width / bounds[2], FIT_ZOOM * height / bounds[3], 1);
    ds.scale = scale;
    ds.offset = [-bounds[0] - bounds[2] / 2 + width / scale / 2, -bounds[1] - bounds[3] / 2 + height / scale / 2];
    this.canvas.setDirty(true, true);
  }

  centreOn(nodeId) {
    const node = this.graph.getNodeById(nodeId);
    if (!node) return;
    this.canvas.centerOnNode(node);
    this.canvas.selectNode(node);
  }

  groupSelection() {
    const items = this.canvas.selectedItems;
    if (!items.size) return;
    const group = new LGraphGroup("Group");
    group.resizeTo(items);
    this.graph.add(group);
    this.changed();
  }

  async queue({ front = false } = {}) {
    const count = Math.max(1, Math.min(100, Number($("#batch-count").value) || 1));
    this.commit();
    this.run.clearErrors();
    this.errors.hide();
    for (let i = 0; i < count; i++) {
      const workflow = this.toWorkflow();
      try {
        const result = await this.api.queuePrompt(workflow, { front });
        this.afterQueued(result);
      } catch (error) {
        this.queueFailed(error);
        break;
      }
    }
    this.canvas.setDirty(true, true);
  }

  /** A queued prompt's answer: outputs dropped by validation are still shown on their nodes. */
  afterQueued(result) {
    if (Object.keys(result?.node_errors ?? {}).length) {
      const lines = this.run.showValidation({ node_errors: result.node_errors });
      this.errors.show("Queued, but some outputs failed validation and were left out", lines);
    }
  }

  queueFailed(error) {
    if (error instanceof ApiError && error.status === 400 && error.body && typeof error.body === "object") {
      const lines = this.run.showValidation(error.body);
      this.errors.show("The server refused the workflow", [...lines, ...this.pulls.offers(error.body)]);
    } else {
      this.notices.show(`Queueing failed: ${error.message}`, "error", 10000);
    }
  }

  async cancel(promptId) {
    try {
      await this.api.deleteQueued([promptId]);
    } catch (error) {
      this.notices.show(`Cancel failed: ${error.message}`, "error");
    }
    this.queuePanel.refresh();
  }

  openHistory(promptId, entry) {
    const workflow = entry.prompt?.[2];
    if (!workflow) return;
    this.load(workflow, { name: `run ${promptId.slice(0, 8)}` });
    for (const [nodeId, output] of Object.entries(entry.outputs ?? {})) this.run.setOutput(nodeId, output);
    this.canvas.setDirty(true, true);
  }

  async interrupt() {
    try {
      await this.api.interrupt();
    } catch (error) {
      this.notices.show(`Interrupt failed: ${error.message}`, "error");
    }
  }

  save() {
    this.commit();
    downloadWorkflow(this.toWorkflow(), this.name);
  }

  async open() {
    const file = await pickFile($("#file-input"), ".json,.png,application/json,image/png");
    if (file) await this.openFile(file);
  }

  async openFile(file) {
    try {
      const { workflow, name, notes } = await readWorkflowFile(file, (doc) => this.api.convertWorkflow(doc));
      this.load(workflow, { name });
      for (const note of notes) this.notices.show(`Converted from ComfyUI's UI format: ${note}`, "info", 15000);
    } catch (error) {
      const message = error instanceof FileProblem ? error.message : `Could not open ${file.name}: ${error.message}`;
      this.notices.show(message, "error", 15000);
    }
  }

  /** What a node shows in its body (see RunState.display). */
  display(node) {
    return this.run.display(node, this.uploads.locator(node));
  }
}

/**
 * litegraph's menus offer things the workflow format cannot hold: subgraphs, node modes (mute/bypass: the
 * server would still run the node) and litegraph's own node properties. Offering them would let a user make a
 * graph that saves differently from what it shows, so they are left out.
 */
const UNSAVABLE_ENTRIES = new Set(["Convert to Subgraph 🆕", "Mode", "Properties", "Properties Panel"]);

function hideUnsavableMenuEntries(canvas) {
  const keep = (entries) => entries.filter((entry) => !UNSAVABLE_ENTRIES.has(entry?.content));
  const nodeMenu = canvas.getNodeMenuOptions.bind(canvas);
  const canvasMenu = canvas.getCanvasMenuOptions.bind(canvas);
  canvas.getNodeMenuOptions = (node) => keep(nodeMenu(node));
  canvas.getCanvasMenuOptions = () => keep(canvasMenu());
}

/**
 * Bounds of nodes, groups and reroutes from their positions and sizes (litegraph's own bounding rectangles
 * are only measured while drawing, so they are empty right after a load).
 */
function graphBounds(items) {
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const item of items) {
    const [x, y] = item.pos;
    const [w, h] = item.size ?? [0, 0];
    const title = item instanceof LGraphNode ? LiteGraph.NODE_TITLE_HEIGHT : 0;
    x0 = Math.min(x0, x);
    y0 = Math.min(y0, y - title);
    x1 = Math.max(x1, x + w);
    y1 = Math.max(y1, y + h);
  }
  const pad = 20;
  return Number.isFinite(x0) ? [x0 - pad, y0 - pad, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad] : null;
}

const editor = new Editor();
window.app = editor;
editor.ready = editor.start().catch((error) => {
  editor.notices?.show(`The editor failed to start: ${error.message}`, "error", 0);
  throw error;
});
