/**
 * Graph ↔ workflow: the editor saves exactly the document the server runs.
 *
 * A workflow is ComfyUI's API format, `{"<id>": {"class_type", "inputs", "_meta"}}`. An input is a link
 * `["<source id>", <output index>]` or a constant (a constant that is itself a 2-element list is written
 * `{"__value__": [a, b]}`). Everything only the editor needs lives in `_meta`:
 *
 *   title                   the node's title (ComfyUI writes it too)
 *   pos, size               [x, y], [w, h] in graph units, rounded to whole units
 *   collapsed, color, bgcolor   only when set
 *   control_after_generate  {"<input>": "fixed"|"increment"|"decrement"|"randomize"} for seed-like inputs;
 *                           the server resolves it when the prompt is queued
 *   reroutes                {"<input>": [[x, y], ...]} the reroute points of that input's link, from the source
 *                           towards the node (shared points are merged again on load)
 *   groups                  [{"title", "bounding": [x, y, w, h], "color"?}] the groups whose area holds the node
 *   models                  [{"name", "url", "directory"}] where to get the model files the node names (ComfyUI's
 *                           `properties.models`; kept in node.properties.models, offered for download)
 *
 * Loading never trusts the file: unknown node types become visible stand-ins that keep their entry, links
 * that litegraph refuses (type mismatch, missing slot) are reported, and nodes without positions are laid
 * out automatically (ComfyUI's "Export (API)" files have none).
 */
import { LGraphGroup, LiteGraph } from "@comfyorg/litegraph";

import { definitionInputs, makeMissingNode } from "./nodes.js";
import { CONTROL_VALUES, controlWidget } from "./widgets.js";

export function isLink(value) {
  return Array.isArray(value) && value.length === 2 && (typeof value[0] === "string" || typeof value[0] === "number")
    && typeof value[1] === "number";
}

/** "api" (our format and ComfyUI's API export), "ui" (ComfyUI's nodes/links format) or null. */
export function detectFormat(data) {
  if (!data || typeof data !== "object" || Array.isArray(data)) return null;
  if (Array.isArray(data.nodes) && (Array.isArray(data.links) || data.version !== undefined)) return "ui";
  const entries = Object.values(data);
  if (entries.length && entries.every((e) => e && typeof e === "object" && typeof e.class_type === "string")) {
    return "api";
  }
  return null;
}

const round = (v) => Math.round(v);

/** Serialise the graph as an API-format workflow with the editor's data in `_meta`. */
export function graphToWorkflow(graph) {
  const workflow = {};
  const groups = graph._groups.map((group) => ({ group, meta: groupMeta(group) }));
  const nodes = [...graph._nodes].sort(compareIds);
  for (const node of nodes) {
    const inputs = node.missingEntry ? missingInputs(node) : {};
    const meta = nodeMeta(node);
    const def = node.constructor.nodeDef;
    for (const input of def ? definitionInputs(def) : []) {
      const link = linkOf(graph, node, input.name);
      if (link) {
        inputs[input.name] = [String(link.origin_id), link.origin_slot];
        addReroutes(graph, link, meta, input.name);
      } else if (input.widget) {
        const widget = node.widgets?.find((w) => w.name === input.name);
        if (widget) inputs[input.name] = constant(widget.value);
      }
      // "fixed" is what the server assumes when no mode is given, so files without modes round-trip unchanged
      const control = controlWidget(node, input.name);
      if (control && control.value !== "fixed") (meta.control_after_generate ??= {})[input.name] = control.value;
    }
    const inside = groups.filter(({ group }) => containsCentre(group._bounding, nodeRect(node)));
    if (inside.length) meta.groups = inside.map(({ meta: m }) => m);
    workflow[String(node.id)] = { inputs, class_type: node.type, _meta: meta };
  }
  return workflow;
}

function nodeMeta(node) {
  const meta = { title: node.title, pos: Array.from(node.pos, round), size: Array.from(node.size, round) };
  if (node.flags?.collapsed) meta.collapsed = true;
  if (node.color && !node.missingEntry) meta.color = node.color;
  if (node.bgcolor && !node.missingEntry) meta.bgcolor = node.bgcolor;
  if (Array.isArray(node.properties?.models)) meta.models = node.properties.models;
  return meta;
}

function missingInputs(node) {
  const inputs = {};
  for (const [name, value] of Object.entries(node.missingEntry.inputs ?? {})) {
    if (isLink(value)) {
      const link = linkOf(node.graph, node, name);
      if (link) inputs[name] = [String(link.origin_id), link.origin_slot];
    } else {
      inputs[name] = value;
    }
  }
  return inputs;
}

function linkOf(graph, node, name) {
  const slot = node.inputs.find((s) => s.name === name);
  return slot?.link != null ? graph._links.get(slot.link) : undefined;
}

function constant(value) {
  return Array.isArray(value) && value.length === 2 ? { __value__: value } : value;
}

function addReroutes(graph, link, meta, name) {
  const points = [];
  for (let id = link.parentId; id != null; id = graph.reroutes.get(id)?.parentId) {
    const reroute = graph.reroutes.get(id);
    if (!reroute || points.length > 1000) break;
    points.unshift(Array.from(reroute.pos, round));
  }
  if (points.length) (meta.reroutes ??= {})[name] = points;
}

function groupMeta(group) {
  const meta = { title: group.title, bounding: Array.from(group._bounding, round) };
  if (group.color) meta.color = group.color;
  return meta;
}

/** A node's rectangle with its title bar, from position and size (litegraph measures its own only when drawing). */
function nodeRect(node) {
  const title = LiteGraph.NODE_TITLE_HEIGHT;
  return [node.pos[0], node.pos[1] - title, node.size[0], node.size[1] + title];
}

function containsCentre(outer, inner) {
  const cx = inner[0] + inner[2] / 2;
  const cy = inner[1] + inner[3] / 2;
  return cx >= outer[0] && cx <= outer[0] + outer[2] && cy >= outer[1] && cy <= outer[1] + outer[3];
}

function compareIds(a, b) {
  const x = Number(a.id);
  const y = Number(b.id);
  if (Number.isFinite(x) && Number.isFinite(y)) return x - y;
  return String(a.id).localeCompare(String(b.id));
}

/**
 * Replace the graph's content with a workflow. Returns `{missing, problems, laidOut}`: unknown node types,
 * human-readable notes about links that could not be made, and whether positions were computed.
 */
export function loadWorkflow(graph, workflow) {
  graph.clear();
  const report = { missing: [], problems: [], laidOut: false };
  const ids = Object.keys(workflow).sort((a, b) => compareIds({ id: a }, { id: b }));
  const nodes = new Map();
  for (const id of ids) nodes.set(id, createNode(graph, id, workflow[id], report));
  const reroutes = new Map();
  for (const id of ids) connectInputs(graph, nodes, reroutes, id, workflow[id], report);
  restoreGroups(graph, ids.map((id) => workflow[id]._meta?.groups ?? []).flat());
  const unplaced = ids.filter((id) => !Array.isArray(workflow[id]._meta?.pos));
  if (unplaced.length) {
    autoLayout(graph, nodes, workflow, new Set(unplaced));
    report.laidOut = true;
  }
  graph.updateExecutionOrder();
  graph.setDirtyCanvas(true, true);
  return report;
}

function createNode(graph, id, entry, report) {
  let node = LiteGraph.createNode(entry.class_type);
  if (!node) {
    node = makeMissingNode(id, entry);
    report.missing.push(entry.class_type);
  }
  node.id = /^\d+$/.test(id) ? Number(id) : id;
  const meta = entry._meta ?? {};
  if (typeof meta.title === "string") node.title = meta.title;
  if (!node.missingEntry) setWidgetValues(node, entry, meta);
  if (Array.isArray(meta.pos)) node.pos = [Number(meta.pos[0]) || 0, Number(meta.pos[1]) || 0];
  if (Array.isArray(meta.size)) node.size = [Number(meta.size[0]) || node.size[0], Number(meta.size[1]) || node.size[1]];
  if (meta.color) node.color = meta.color;
  if (meta.bgcolor) node.bgcolor = meta.bgcolor;
  if (meta.collapsed) node.flags.collapsed = true;
  if (Array.isArray(meta.models)) node.properties.models = meta.models;
  graph.add(node, true);
  return node;
}

function setWidgetValues(node, entry, meta) {
  for (const [name, raw] of Object.entries(entry.inputs ?? {})) {
    if (isLink(raw)) continue;
    const widget = node.widgets?.find((w) => w.name === name);
    if (!widget) continue;
    const value = raw && typeof raw === "object" && "__value__" in raw ? raw.__value__ : raw;
    widget.value = widget.type === "number" ? Number(value) : widget.type === "toggle" ? Boolean(value) : value;
  }
  // absent means "fixed" to the server (executor/seeds.py); a bare string is the mode of every controlled input
  const control = meta.control_after_generate;
  for (const widget of node.widgets ?? []) {
    if (!widget.controls) continue;
    const mode = typeof control === "string" ? control : control && typeof control === "object" ? control[widget.controls] : null;
    widget.value = CONTROL_VALUES.includes(mode) ? mode : "fixed";
  }
}

function connectInputs(graph, nodes, rerouteIndex, id, entry, report) {
  const node = nodes.get(id);
  for (const [name, value] of Object.entries(entry.inputs ?? {})) {
    if (!isLink(value)) continue;
    const source = nodes.get(String(value[0]));
    const targetSlot = node.findInputSlot(name);
    if (!source) {
      report.problems.push(`node ${id} (${entry.class_type}): input ${name} links to node ${value[0]}, which is not in the workflow`);
      continue;
    }
    if (targetSlot < 0) {
      report.problems.push(`node ${id} (${entry.class_type}) has no input ${name}`);
      continue;
    }
    if (source.missingEntry) {
      while (source.outputs.length <= value[1]) source.addOutput(`output ${source.outputs.length}`, "*");
    }
    if (value[1] >= source.outputs.length) {
      report.problems.push(`node ${id}: input ${name} links to output ${value[1]} of node ${value[0]}, which has ${source.outputs.length}`);
      continue;
    }
    const link = source.connect(value[1], node, targetSlot);
    if (!link) {
      report.problems.push(`node ${id}: ${source.outputs[value[1]].type} output of node ${value[0]} cannot connect to input ${name} (${node.inputs[targetSlot].type})`);
      continue;
    }
    restoreReroutes(graph, rerouteIndex, link, entry._meta?.reroutes?.[name]);
  }
}

/** Rebuild a link's reroute chain; points equal in position and parent are one shared reroute. */
function restoreReroutes(graph, index, link, points) {
  if (!Array.isArray(points) || !points.length) return;
  let parentId;
  for (const point of points) {
    const key = `${parentId ?? ""}|${point[0]},${point[1]}`;
    let reroute = index.get(key);
    if (!reroute) {
      reroute = graph.setReroute({ parentId, pos: [Number(point[0]), Number(point[1])], linkIds: [] });
      index.set(key, reroute);
    }
    reroute.linkIds.add(link.id);
    parentId = reroute.id;
  }
  link.parentId = parentId;
}

function restoreGroups(graph, metas) {
  const seen = new Set();
  for (const meta of metas) {
    if (!meta || !Array.isArray(meta.bounding)) continue;
    const key = JSON.stringify([meta.title, meta.bounding, meta.color]);
    if (seen.has(key)) continue;
    seen.add(key);
    const group = new LGraphGroup(String(meta.title ?? "Group"));
    group.configure({ id: -1, title: group.title, bounding: meta.bounding.map(Number), color: meta.color, font_size: 24, flags: {} });
    graph.add(group);
  }
}

/**
 * Lay out nodes that have no position: columns by depth (longest path from a node without inputs), rows by
 * id within a column, to the right of anything already placed.
 */
export function autoLayout(graph, nodes, workflow, unplaced) {
  const depth = new Map();
  const visiting = new Set();
  const depthOf = (id) => {
    if (depth.has(id)) return depth.get(id);
    if (visiting.has(id)) return 0; // a cycle: validation reports it, layout just breaks it
    visiting.add(id);
    let d = 0;
    for (const value of Object.values(workflow[id]?.inputs ?? {})) {
      if (isLink(value) && workflow[String(value[0])]) d = Math.max(d, depthOf(String(value[0])) + 1);
    }
    visiting.delete(id);
    depth.set(id, d);
    return d;
  };
  const columns = [];
  for (const id of unplaced) (columns[depthOf(id)] ??= []).push(id);
  let x = 0;
  for (const node of graph._nodes) {
    if (!unplaced.has(String(node.id))) x = Math.max(x, node.pos[0] + node.size[0] + 80);
  }
  for (const column of columns) {
    if (!column) continue;
    let y = 0;
    let width = 0;
    for (const id of column) {
      const node = nodes.get(id);
      node.pos = [x, y + LiteGraph.NODE_TITLE_HEIGHT];
      y += node.size[1] + LiteGraph.NODE_TITLE_HEIGHT + 40;
      width = Math.max(width, node.size[0]);
    }
    x += width + 80;
  }
}
