/**
 * Node types from `/object_info`: one litegraph class per entry, nothing about any node hard-coded.
 *
 * Inputs are built in `input_order` (required, then optional): widget types get a widget plus a widget socket,
 * every other type a typed socket (litegraph refuses a link whose types do not match, with ComfyUI's rules:
 * "*" matches anything, comma-separated types match any member). Optional sockets are drawn hollow, list
 * outputs as a grid. Aliases are registered (workflows using them open) but hidden from menus and search.
 *
 * A node draws what the editor knows about it: its results (images, text) and previews, its input image
 * (inputs declared with `image_upload`), the running highlight with step progress, and validation or
 * execution errors with the server's messages. That state lives in the editor (`env`), keyed by node id, so
 * it survives undo and reload of the graph.
 */
import { LGraphNode, LiteGraph, RenderShape } from "@comfyorg/litegraph";

import { addInputWidget, describeInput } from "./widgets.js";

const IMAGE_MIN_HEIGHT = 220;
const TEXT_LINE = 14;

/** Register (or replace) a node class for every `/object_info` entry. */
export function registerNodeTypes(defs, env) {
  for (const [name, def] of Object.entries(defs)) {
    const cls = makeNodeClass(name, def, env);
    LiteGraph.registerNodeType(name, cls);
    // registerNodeType derives the category from a "/" in the type name; ours are plain names
    cls.category = def.category || "sd";
    cls.title = def.display_name || name;
    cls.skip_list = Boolean(def.alias_of || def.deprecated);
  }
}

/** The inputs of a definition in declaration order: `[{name, required, ...describeInput(spec)}]`. */
export function definitionInputs(def) {
  const result = [];
  for (const section of ["required", "optional"]) {
    const specs = def.input?.[section] ?? {};
    const order = def.input_order?.[section] ?? Object.keys(specs);
    for (const name of order) {
      if (specs[name] !== undefined) result.push({ name, required: section === "required", ...describeInput(specs[name]) });
    }
  }
  return result;
}

function makeNodeClass(name, def, env) {
  const inputs = definitionInputs(def);
  return class extends LGraphNode {
    static nodeDef = def;
    static comfyClass = name;

    constructor(title) {
      super(title ?? def.display_name ?? name, name);
      this.comfyClass = name;
      this.serialize_widgets = true;
      this.description = def.description;
      for (const input of inputs) {
        if (input.widget) {
          addInputWidget(this, input.name, input, env);
        } else {
          const extra = { tooltip: input.options.tooltip };
          if (!input.required) extra.shape = RenderShape.HollowCircle;
          this.addInput(input.name, input.type, extra);
        }
        const upload = input.options.image_upload;
        if (upload && input.type === "COMBO") addUploadButton(this, input.name, env);
      }
      (def.output ?? []).forEach((type, i) => {
        const extra = { tooltip: def.output_tooltips?.[i] ?? undefined };
        if (def.output_is_list?.[i]) extra.shape = RenderShape.GRID;
        this.addOutput(def.output_name?.[i] ?? type, type, extra);
      });
      const size = this.computeSize();
      const minWidth = this.widgets?.length ? 280 : 200;
      const extra = this.widgets?.some((w) => w.type === "textarea") ? 60 : 0;
      this.size = [Math.max(size[0], minWidth), Math.max(size[1] + extra, def.output_node ? 100 : 0)];
      installDisplay(this, env);
    }
  };
}

/** LoadImage-style inputs: a button that uploads a file into the input folder and selects it. */
function addUploadButton(node, inputName, env) {
  const button = node.addWidget("button", "choose file to upload", null, () => {
    env.pickAndUpload(node, inputName);
  }, {});
  button.serialize = false;
  node.uploadInput = inputName;
}

/** Drawing hooks shared by every node: results, previews, input image, running state, errors. */
export function installDisplay(node, env) {
  node.strokeStyles.running = function () {
    if (env.isRunning(this)) return { color: "#3ddc84", lineWidth: 3, padding: 8 };
  };
  node.strokeStyles.failed = function () {
    if (env.errorsOf(this)) return { color: LiteGraph.NODE_ERROR_COLOUR, lineWidth: 4, padding: 10 };
  };
  node.onDrawBackground = function (ctx) {
    const progress = env.progressOf(this);
    this.progress = progress && progress.max ? progress.value / progress.max : undefined; // litegraph's bar
    const errors = env.errorsOf(this);
    for (const slot of this.inputs) slot.hasErrors = Boolean(errors?.inputs.includes(slot.name));
    if (this.flags.collapsed) return;
    const display = env.display(this);
    const top = contentTop(this);
    if (display.images.length) drawImages(ctx, this, display.images, top, display.caption);
    else if (display.text.length) drawText(ctx, this, display.text, top);
  };
  node.onDrawForeground = function (ctx) {
    if (this.flags.collapsed) return;
    const progress = env.progressOf(this);
    if (progress) drawProgressLabel(ctx, this, progress);
    const errors = env.errorsOf(this);
    if (errors) drawErrors(ctx, this, errors);
  };
  node.onWidgetChanged = () => env.changed();
  node.onConnectionsChange = () => env.changed();
  node.onRemoved = function () {
    for (const widget of this.widgets ?? []) widget.onRemove?.();
  };
  node.onDropFile = function (file) {
    if (this.uploadInput && file.type.startsWith("image/")) env.upload(this, this.uploadInput, file);
  };
}

/** Where a node's free body starts (below its slots and widgets), in node coordinates. */
export function contentTop(node) {
  const plainInputs = node.inputs.filter((input) => !input.widget).length;
  let y = Math.max(plainInputs, node.outputs.length) * LiteGraph.NODE_SLOT_HEIGHT + 8;
  for (const w of node.widgets ?? []) {
    if (w.hidden || w.y == null) continue;
    y = Math.max(y, w.y + (w.computedHeight ?? LiteGraph.NODE_WIDGET_HEIGHT + 4));
  }
  return y;
}

/** Grow a node so its body can show images (called when results arrive, never while drawing). */
export function makeRoomForImages(node) {
  const needed = contentTop(node) + IMAGE_MIN_HEIGHT;
  if (node.size[1] < needed) node.setSize([Math.max(node.size[0], 256), needed]);
}

function drawImages(ctx, node, images, top, caption) {
  const loaded = images.filter((img) => img.complete && img.naturalWidth);
  if (!loaded.length) return;
  const width = node.size[0] - 16;
  const height = node.size[1] - top - 8 - (caption ? TEXT_LINE : 0);
  if (height < 16) return;
  const columns = Math.ceil(Math.sqrt(loaded.length));
  const rows = Math.ceil(loaded.length / columns);
  const cellW = width / columns;
  const cellH = height / rows;
  loaded.forEach((img, i) => {
    const scale = Math.min(cellW / img.naturalWidth, cellH / img.naturalHeight);
    const w = img.naturalWidth * scale;
    const h = img.naturalHeight * scale;
    const x = 8 + (i % columns) * cellW + (cellW - w) / 2;
    const y = top + Math.floor(i / columns) * cellH + (cellH - h) / 2;
    ctx.drawImage(img, x, y, w, h);
  });
  if (caption) {
    ctx.fillStyle = LiteGraph.NODE_TEXT_COLOR;
    ctx.font = "11px sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(caption, node.size[0] / 2, node.size[1] - 6);
  }
}

function drawText(ctx, node, texts, top) {
  ctx.save();
  ctx.font = "12px monospace";
  ctx.fillStyle = "#ddd";
  ctx.textAlign = "left";
  const width = node.size[0] - 20;
  const maxLines = Math.max(1, Math.floor((node.size[1] - top - 6) / TEXT_LINE));
  const lines = wrapLines(ctx, texts.join("\n"), width).slice(0, maxLines);
  lines.forEach((line, i) => ctx.fillText(line, 10, top + TEXT_LINE * (i + 1)));
  ctx.restore();
}

function wrapLines(ctx, text, width) {
  const out = [];
  for (const paragraph of text.split("\n")) {
    let line = "";
    for (const char of paragraph) {
      if (ctx.measureText(line + char).width > width && line) {
        out.push(line);
        line = "";
      }
      line += char;
    }
    out.push(line);
  }
  return out;
}

function drawProgressLabel(ctx, node, { value, max }) {
  ctx.save();
  ctx.font = "bold 12px sans-serif";
  ctx.fillStyle = "#3ddc84";
  ctx.textAlign = "right";
  ctx.fillText(`${value}/${max}`, node.size[0] - 10, -LiteGraph.NODE_TITLE_HEIGHT * 0.5 + 4);
  ctx.restore();
}

/** Red outline on each failing widget, and the server's messages in a box above the node. */
function drawErrors(ctx, node, { messages, inputs }) {
  ctx.save();
  ctx.strokeStyle = LiteGraph.NODE_ERROR_COLOUR;
  ctx.lineWidth = 2;
  for (const name of inputs) {
    const widget = node.widgets?.find((w) => w.name === name);
    if (widget && widget.y != null && !widget.hidden) {
      ctx.strokeRect(12, widget.y, node.size[0] - 24, LiteGraph.NODE_WIDGET_HEIGHT);
    }
  }
  ctx.font = "12px sans-serif";
  const width = Math.max(node.size[0], 200);
  const lines = messages.flatMap((m) => wrapLines(ctx, m, width - 12)).slice(0, 8);
  const height = lines.length * TEXT_LINE + 8;
  const y0 = -LiteGraph.NODE_TITLE_HEIGHT - height - 6;
  ctx.fillStyle = "rgba(120, 0, 0, 0.9)";
  ctx.fillRect(0, y0, width, height);
  ctx.fillStyle = "#fff";
  ctx.textAlign = "left";
  lines.forEach((line, i) => ctx.fillText(line, 6, y0 + TEXT_LINE * (i + 1)));
  ctx.restore();
}

/**
 * A stand-in for a node type the server does not know: it keeps the workflow entry so saving loses nothing,
 * and shows sockets for the links it had so they stay visible.
 */
export function makeMissingNode(id, entry) {
  const node = new LGraphNode(`${entry.class_type} (missing)`);
  node.type = entry.class_type;
  node.missingEntry = entry;
  node.color = "#a00";
  node.bgcolor = "#400";
  for (const [name, value] of Object.entries(entry.inputs ?? {})) {
    if (Array.isArray(value) && value.length === 2) node.addInput(name, "*");
  }
  return node;
}
