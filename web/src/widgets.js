/**
 * Widgets: the in-node editors of constant inputs, chosen from each input's `/object_info` declaration.
 *
 * `[type, options]` → INT/FLOAT number (min/max/step, values snapped to the step and clamped), STRING text
 * (`multiline` → a real <textarea> laid over the canvas), BOOLEAN toggle, COMBO list (an options array in the
 * type slot, or V3's `["COMBO", {options}]`). Every widget input also gets a widget socket, so dragging a link
 * onto the widget turns it into an input, and removing the link turns it back. An input declared with
 * `control_after_generate` gets a companion "control after generate" list (fixed / increment / decrement /
 * randomize) whose value the server applies at queue time (see workflow.js).
 */
export const WIDGET_TYPES = new Set(["INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"]);
export const CONTROL_VALUES = ["fixed", "increment", "decrement", "randomize"];
export const CONTROL_SUFFIX = "_control_after_generate";

/**
 * Classify one input declaration.
 * @returns {{type: string, options: object, values?: string[], widget: boolean}}
 */
export function describeInput(spec) {
  const [typeSlot, options = {}] = Array.isArray(spec) ? spec : [spec, {}];
  if (Array.isArray(typeSlot)) {
    return { type: "COMBO", options, values: typeSlot.map(String), widget: !options.forceInput };
  }
  if (typeSlot === "COMBO") {
    return { type: "COMBO", options, values: (options.options ?? []).map(String), widget: !options.forceInput };
  }
  const type = String(typeSlot);
  return { type, options, widget: WIDGET_TYPES.has(type) && !options.forceInput };
}

/** Add the widget (and its widget socket) for input `name` to `node`; returns the widget. */
export function addInputWidget(node, name, input, env) {
  const { type, options } = input;
  const tooltip = options.tooltip;
  let widget;
  if (type === "INT" || type === "FLOAT") {
    widget = addNumberWidget(node, name, type, options);
  } else if (type === "BOOLEAN") {
    widget = node.addWidget("toggle", name, Boolean(options.default ?? false), () => {}, {
      on: options.label_on ?? "true",
      off: options.label_off ?? "false",
    });
  } else if (type === "COMBO") {
    const values = input.values;
    const fallback = options.default !== undefined ? String(options.default) : values[0] ?? "";
    widget = node.addWidget("combo", name, fallback, () => {}, { values });
  } else if (options.multiline) {
    widget = env.textAreas.add(node, name, String(options.default ?? ""), options.placeholder ?? name);
  } else {
    widget = node.addWidget("text", name, String(options.default ?? ""), () => {}, {});
  }
  widget.tooltip = tooltip;
  node.addInput(name, type, { widget: { name }, tooltip });
  // the server resolves seeds of INT inputs only (executor/seeds.py)
  if (options.control_after_generate && type === "INT") addControlWidget(node, name);
  return widget;
}

function addNumberWidget(node, name, type, options) {
  const isInt = type === "INT";
  const step = Number(options.step ?? (isInt ? 1 : 0.01)) || (isInt ? 1 : 0.01);
  const round = isInt ? Math.max(1, Math.round(step)) : Number(options.round ?? 0) || 0;
  const precision = isInt ? 0 : decimals(round || step);
  const fallback = Math.min(Math.max(0, options.min ?? -Infinity), options.max ?? Infinity);
  const widget = node.addWidget("number", name, options.default ?? fallback, (value) => {
    widget.value = snapNumber(value, { isInt, round, precision, min: options.min, max: options.max });
  }, {
    min: options.min,
    max: options.max,
    // litegraph steps by `step2`, or by a tenth of the legacy `step`
    step2: step,
    step: step * 10,
    precision,
    round: round || undefined,
  });
  return widget;
}

/** Snap a number to the widget's grid (integers, or `round`) and clamp it to [min, max]. */
export function snapNumber(value, { isInt, round, precision, min, max }) {
  let v = Number(value);
  if (!Number.isFinite(v)) v = 0;
  if (isInt) v = Math.round(v / round) * round;
  else if (round) v = Math.round(v / round) * round;
  if (!isInt) v = Number(v.toFixed(Math.min(precision + 2, 12)));
  if (min != null && v < min) v = min;
  if (max != null && v > max) v = max;
  return v;
}

function decimals(x) {
  const text = String(x);
  if (text.includes("e-")) return Number(text.split("e-")[1]);
  const dot = text.indexOf(".");
  return dot < 0 ? 0 : Math.min(text.length - dot - 1, 6);
}

function addControlWidget(node, name) {
  const widget = node.addWidget("combo", name + CONTROL_SUFFIX, "randomize", () => {}, { values: CONTROL_VALUES });
  widget.label = "control after generate";
  widget.controls = name;
  return widget;
}

/** The "control after generate" widget of input `name`, if it has one. */
export function controlWidget(node, name) {
  return node.widgets?.find((w) => w.controls === name);
}

/**
 * Multi-line text widgets as real <textarea> elements over the canvas (prompts need editing, scrolling and
 * the clipboard). Each frame the canvas draws, the areas of visible widgets are re-positioned; those not drawn
 * (node off-screen, collapsed, removed) are hidden.
 */
export class TextAreaLayer {
  constructor(container, onChange) {
    this.container = container;
    this.onChange = onChange;
    this.entries = new Set();
    this.drawn = new Set();
  }

  add(node, name, value, placeholder) {
    const element = document.createElement("textarea");
    element.className = "ll-textarea";
    element.placeholder = placeholder;
    element.spellcheck = false;
    element.value = value;
    element.dataset.input = name;
    element.style.display = "none";
    this.container.append(element);
    const layer = this;
    const widget = {
      type: "textarea",
      name,
      options: {},
      y: 0,
      element,
      node,
      get value() {
        return element.value;
      },
      set value(v) {
        element.value = v ?? "";
      },
      computeLayoutSize: () => ({ minHeight: 56, maxHeight: 10000, minWidth: 200 }),
      draw(ctx, drawnNode, width, y) {
        layer.place(this, drawnNode, width, y);
      },
      onRemove() {
        element.remove();
        layer.entries.delete(widget);
      },
    };
    element.addEventListener("input", () => this.onChange(node, widget));
    element.addEventListener("pointerdown", (e) => e.stopPropagation());
    this.entries.add(widget);
    node.addCustomWidget(widget);
    return widget;
  }

  /** Called from the widget's draw: put the element over the widget's area in screen space. */
  place(widget, node, width, y) {
    const canvas = node.graph?.list_of_graphcanvas?.[0];
    if (!canvas) return;
    const { scale, offset } = canvas.ds;
    const margin = 10;
    const height = Math.max(40, (widget.computedHeight ?? 60) - 4);
    const style = widget.element.style;
    const linked = node.getSlotFromWidget?.(widget)?.link != null;
    style.display = scale < 0.5 || linked ? "none" : "block";
    style.left = `${(node.pos[0] + margin + offset[0]) * scale}px`;
    style.top = `${(node.pos[1] + y + offset[1]) * scale}px`;
    style.width = `${width - 2 * margin}px`;
    style.height = `${height}px`;
    style.transform = `scale(${scale})`;
    this.drawn.add(widget);
  }

  beginFrame() {
    this.drawn.clear();
  }

  endFrame() {
    for (const widget of this.entries) {
      if (!widget.node.graph) {
        widget.onRemove();
      } else if (!this.drawn.has(widget)) {
        widget.element.style.display = "none";
      }
    }
  }
}

/** litegraph's link colours by type, so links read at a glance (unknown types keep the default). */
export const TYPE_COLOURS = {
  MODEL: "#B39DDB",
  CLIP: "#FFD500",
  VAE: "#FF6E6E",
  CONDITIONING: "#FFA931",
  LATENT: "#FF9CF9",
  IMAGE: "#64B5F6",
  MASK: "#81C784",
  INT: "#29699c",
  FLOAT: "#7a9c29",
  STRING: "#9c8a29",
  BOOLEAN: "#9c2929",
};

export function installTypeColours(canvas, CanvasClass) {
  for (const [type, colour] of Object.entries(TYPE_COLOURS)) {
    canvas.default_connection_color_byType[type] = colour;
    CanvasClass.link_type_colors[type] = colour;
  }
}
