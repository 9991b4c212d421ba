/**
 * The node search box (double-click on the canvas, or drop a link on empty space with Shift): fuzzy search
 * over every node's display name, type name and category from `/object_info`, results grouped by category.
 * When opened from a dragged link it lists only nodes that can take (or give) that link's type and connects
 * the new node.
 */
import { LiteGraph } from "@comfyorg/litegraph";

import { definitionInputs } from "./nodes.js";

const MAX_RESULTS = 60;

/**
 * Score `text` against one query token: prefix of a word beats substring beats subsequence; null = no match.
 */
export function tokenScore(token, text) {
  const haystack = text.toLowerCase();
  const at = haystack.indexOf(token);
  if (at === 0) return 100 - haystack.length * 0.1;
  if (at > 0) return (/[\s_/.\-]/.test(haystack[at - 1]) || /[a-z][A-Z]/.test(text.slice(at - 1, at + 1)) ? 80 : 60) - at * 0.5;
  let pos = 0;
  let gaps = 0;
  for (const char of token) {
    const next = haystack.indexOf(char, pos);
    if (next < 0) return null;
    gaps += next - pos;
    pos = next + 1;
  }
  return Math.max(1, 40 - gaps);
}

/** Every token must match the name, display name or category; the best field counts per token. */
export function nodeScore(query, name, def) {
  const tokens = query.toLowerCase().split(/\s+/).filter(Boolean);
  if (!tokens.length) return 1;
  const fields = [[def.display_name || name, 1], [name, 0.95], [def.category || "", 0.5]];
  let total = 0;
  for (const token of tokens) {
    let best = null;
    for (const [text, weight] of fields) {
      const s = tokenScore(token, text);
      if (s !== null && (best === null || s * weight > best)) best = s * weight;
    }
    if (best === null) return null;
    total += best;
  }
  return total;
}

/**
 * Search node definitions. `accepts`: only nodes with an input of a type compatible with it; `gives`: only
 * nodes with such an output. Returns `[{category, items: [{name, def, score}]}]`, best first.
 */
export function searchNodes(defs, query, { accepts, gives } = {}) {
  const hits = [];
  for (const [name, def] of Object.entries(defs)) {
    if (def.alias_of || def.deprecated) continue;
    if (accepts && !definitionInputs(def).some((i) => LiteGraph.isValidConnection(accepts, i.type))) continue;
    if (gives && !(def.output ?? []).some((t) => LiteGraph.isValidConnection(t, gives))) continue;
    const score = nodeScore(query, name, def);
    if (score !== null) hits.push({ name, def, score });
  }
  hits.sort((a, b) => b.score - a.score || a.name.localeCompare(b.name));
  const groups = new Map();
  for (const hit of hits.slice(0, MAX_RESULTS)) {
    const category = hit.def.category || "sd";
    if (!groups.has(category)) groups.set(category, []);
    groups.get(category).push(hit);
  }
  return [...groups].map(([category, items]) => ({ category, items }));
}

export class SearchBox {
  constructor(editor) {
    this.editor = editor;
    this.element = null;
  }

  /** litegraph calls this as `canvas.showSearchBox(event, options)`. */
  open(event, options = {}) {
    this.close();
    const box = document.createElement("div");
    box.className = "ll-search";
    box.innerHTML = `<input type="text" placeholder="Search nodes…" aria-label="Search nodes"><div class="ll-search-results" role="listbox"></div>`;
    document.body.append(box);
    const x = event?.clientX ?? window.innerWidth / 2;
    const y = event?.clientY ?? window.innerHeight / 3;
    box.style.left = `${Math.min(x, window.innerWidth - 340)}px`;
    box.style.top = `${Math.min(y, window.innerHeight - 300)}px`;
    this.element = box;
    this.event = event;
    this.options = options;
    const input = box.querySelector("input");
    input.addEventListener("input", () => this.render(input.value));
    input.addEventListener("keydown", (e) => this.onKey(e));
    this.outside = (e) => {
      if (!box.contains(e.target)) this.close();
    };
    setTimeout(() => document.addEventListener("pointerdown", this.outside, true), 0);
    this.render("");
    input.focus();
    return box;
  }

  close() {
    if (!this.element) return;
    document.removeEventListener("pointerdown", this.outside, true);
    this.element.remove();
    this.element = null;
    this.editor.canvas.canvas.focus();
  }

  filter() {
    const { node_from: from, slot_from: fromSlot, node_to: to, slot_to: toSlot } = this.options;
    if (from && fromSlot) return { accepts: fromSlot.type };
    if (to && (toSlot || fromSlot)) return { gives: (toSlot || fromSlot).type };
    return {};
  }

  render(query) {
    const results = this.element.querySelector(".ll-search-results");
    results.replaceChildren();
    for (const { category, items } of searchNodes(this.editor.defs, query, this.filter())) {
      const header = document.createElement("div");
      header.className = "ll-search-category";
      header.textContent = category;
      results.append(header);
      for (const { name, def } of items) {
        const item = document.createElement("div");
        item.className = "ll-search-item";
        item.dataset.type = name;
        item.setAttribute("role", "option");
        item.innerHTML = `<span class="ll-search-title"></span><span class="ll-search-type"></span>`;
        item.firstChild.textContent = def.display_name || name;
        item.lastChild.textContent = name === def.display_name ? "" : name;
        item.title = def.description || "";
        item.addEventListener("click", () => this.choose(name));
        results.append(item);
      }
    }
    this.select(results.querySelector(".ll-search-item"));
  }

  select(item) {
    this.element.querySelector(".ll-search-item.selected")?.classList.remove("selected");
    if (!item) return;
    item.classList.add("selected");
    item.scrollIntoView({ block: "nearest" });
  }

  onKey(e) {
    const current = this.element.querySelector(".ll-search-item.selected");
    const items = [...this.element.querySelectorAll(".ll-search-item")];
    const index = items.indexOf(current);
    if (e.key === "ArrowDown") this.select(items[Math.min(index + 1, items.length - 1)]);
    else if (e.key === "ArrowUp") this.select(items[Math.max(index - 1, 0)]);
    else if (e.key === "Enter" && current) this.choose(current.dataset.type);
    else if (e.key === "Escape") this.close();
    else return;
    e.preventDefault();
    e.stopPropagation();
  }

  choose(type) {
    const { canvas, graph } = this.editor;
    const area = canvas.visible_area;
    const position = this.event ? canvas.convertEventToCanvasOffset(this.event) : [area[0] + area[2] / 3, area[1] + area[3] / 3];
    const { node_from: from, slot_from: fromSlot, node_to: to, slot_to: toSlot } = this.options;
    this.close();
    graph.beforeChange();
    const node = LiteGraph.createNode(type);
    if (node) {
      node.pos = [position[0], position[1]];
      graph.add(node);
      if (from && fromSlot) from.connectByType(from.outputs.indexOf(fromSlot), node, fromSlot.type);
      const slot = toSlot || fromSlot;
      if (to && slot) to.connectByTypeOutput(to.inputs.indexOf(slot), node, slot.type);
      canvas.selectNode(node);
    }
    graph.afterChange();
    this.editor.changed();
  }
}
