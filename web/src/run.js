/**
 * What the editor shows about runs: the running node and its step progress, live previews, each node's
 * results (images, text), and validation/execution errors, all keyed by node id.
 *
 * It listens to the websocket messages of `Api` (ComfyUI's: execution_start, execution_cached, executing,
 * progress, executed, execution_success / _error / _interrupted, binary previews) and to the 400 answer of
 * `POST /prompt` (`node_errors`, each with the failing inputs' names in `extra_info.input_name`). Images load
 * through `/view`; previews are object URLs revoked when replaced.
 */
import { makeRoomForImages } from "./nodes.js";

export class RunState extends EventTarget {
  constructor(api, getNode, redraw) {
    super();
    this.api = api;
    this.getNode = getNode;
    this.redraw = redraw;
    this.promptId = null;
    this.runningNode = null;
    this.progress = null;
    this.queueRemaining = 0;
    this.outputs = new Map();
    this.previews = new Map();
    this.errors = new Map();
    this.imageCache = new Map();
    this.showPreviews = true;
    this.listen();
  }

  listen() {
    const on = (type, fn) => this.api.addEventListener(type, (e) => {
      fn.call(this, e.detail);
      this.redraw();
      this.dispatchEvent(new CustomEvent(type, { detail: e.detail }));
    });
    on("status", (d) => {
      this.queueRemaining = d?.status?.exec_info?.queue_remaining ?? this.queueRemaining;
    });
    on("execution_start", (d) => {
      this.promptId = d.prompt_id;
      this.runningNode = null;
      this.progress = null;
      this.clearExecutionErrors();
    });
    on("execution_cached", () => {});
    on("executing", (d) => {
      this.clearPreview(this.runningNode);
      this.runningNode = d.node == null ? null : String(d.node);
      this.progress = null;
      if (d.node == null) this.promptId = null;
    });
    on("progress", (d) => {
      if (d.node != null) this.runningNode = String(d.node);
      this.progress = { value: d.value, max: d.max };
    });
    on("executed", (d) => this.setOutput(String(d.node), d.output));
    on("execution_success", () => this.finish());
    on("execution_interrupted", () => this.finish());
    on("execution_error", (d) => {
      const message = `${d.exception_type}: ${d.exception_message}`;
      this.errors.set(String(d.node_id), { messages: [message], inputs: [], execution: true });
      this.finish();
    });
    on("preview", (d) => this.setPreview(d.nodeId ?? this.runningNode, d.blob));
  }

  finish() {
    this.clearPreview(this.runningNode);
    this.runningNode = null;
    this.progress = null;
  }

  isRunning(nodeId) {
    return this.runningNode !== null && this.runningNode === String(nodeId);
  }

  progressOf(nodeId) {
    return this.isRunning(nodeId) ? this.progress : null;
  }

  /** `executed` output (ComfyUI's UI dict): images as file locators, text as strings. */
  setOutput(nodeId, output) {
    if (!output) return;
    this.outputs.set(nodeId, output);
    const node = this.getNode(nodeId);
    if (node && output.images?.length) makeRoomForImages(node);
  }

  setPreview(nodeId, blob) {
    if (nodeId == null || !this.showPreviews) return;
    this.clearPreview(nodeId);
    const image = new Image();
    image.src = URL.createObjectURL(blob);
    image.onload = () => this.redraw();
    this.previews.set(String(nodeId), image);
    const node = this.getNode(nodeId);
    if (node) makeRoomForImages(node);
  }

  clearPreview(nodeId) {
    if (nodeId == null) return;
    const image = this.previews.get(String(nodeId));
    if (image) URL.revokeObjectURL(image.src);
    this.previews.delete(String(nodeId));
  }

  image(locator) {
    const url = this.api.viewUrl(locator);
    let image = this.imageCache.get(url);
    if (!image) {
      image = new Image();
      image.onload = () => this.redraw();
      image.src = url;
      this.imageCache.set(url, image);
    }
    return image;
  }

  /** What a node shows: a live preview wins over results; `caption` names single results. */
  display(node, uploadLocator) {
    const id = String(node.id);
    const preview = this.previews.get(id);
    if (preview) return { images: [preview], text: [], caption: "preview" };
    const output = this.outputs.get(id);
    if (output?.images?.length) {
      const images = output.images.map((loc) => this.image(loc));
      const caption = images.length === 1 ? output.images[0].filename : `${images.length} images`;
      return { images, text: [], caption };
    }
    if (uploadLocator) return { images: [this.image(uploadLocator)], text: [], caption: uploadLocator.filename };
    if (output?.text?.length) return { images: [], text: output.text.map(String), caption: null };
    return { images: [], text: [], caption: null };
  }

  /** Show a `POST /prompt` 400 answer on the nodes; returns lines for the error panel. */
  showValidation(body) {
    this.errors.clear();
    const lines = [];
    if (body?.error?.message) lines.push({ nodeId: null, text: body.error.message + (body.error.details ? `: ${body.error.details}` : "") });
    for (const [nodeId, entry] of Object.entries(body?.node_errors ?? {})) {
      const messages = [];
      const inputs = [];
      for (const error of entry.errors ?? []) {
        const text = error.details ? `${error.message}: ${error.details}` : error.message;
        messages.push(text);
        const input = error.extra_info?.input_name;
        if (input) inputs.push(input);
        lines.push({ nodeId, text: `#${nodeId} ${entry.class_type}: ${text}` });
      }
      this.errors.set(String(nodeId), { messages, inputs, execution: false });
    }
    return lines;
  }

  errorsOf(nodeId) {
    return this.errors.get(String(nodeId)) ?? null;
  }

  clearErrors() {
    this.errors.clear();
  }

  clearExecutionErrors() {
    for (const [id, error] of this.errors) {
      if (error.execution) this.errors.delete(id);
    }
  }

  /** Forget everything tied to the graph's nodes (a different workflow was opened). */
  reset() {
    for (const id of [...this.previews.keys()]) this.clearPreview(id);
    this.outputs.clear();
    this.errors.clear();
  }
}
