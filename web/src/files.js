/**
 * Workflow files: reading what the user opens or drops, writing what they save, and the copy kept in
 * localStorage so the current workflow survives a page reload.
 *
 * Accepted: our workflow format and ComfyUI's "Export (API)" files (both API format); PNGs made by SaveImage
 * (the `prompt` text chunk holds the API workflow). ComfyUI's UI-format files (`nodes`/`links` arrays, or a PNG
 * carrying only a `workflow` chunk) go through the one converter, which lives on the server (the CLI and
 * `POST /prompt` use it too): the caller passes `convert(doc) → {prompt, notes}` (the `/workflow/convert`
 * route) and gets the converter's notes back with the workflow.
 */
import { readPngText } from "./png.js";
import { detectFormat } from "./workflow.js";

const STORAGE_KEY = "latentloom.workflow";

/** Thrown for a file the editor cannot open; `message` is for the user. */
export class FileProblem extends Error {}

/**
 * Read a workflow from a File. Resolves to `{workflow, name, notes}` (API format; `notes` from the converter
 * for UI-format files); rejects with FileProblem. `convert(doc)` is the server's UI-format converter.
 */
export async function readWorkflowFile(file, convert) {
  const name = file.name.replace(/\.(json|png)$/i, "");
  const bytes = await file.arrayBuffer();
  if (isPng(bytes)) return { ...(await workflowFromPng(bytes, convert)), name };
  let data;
  try {
    data = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new FileProblem(`${file.name} is neither a JSON workflow nor a PNG`);
  }
  return { ...(await checkedWorkflow(data, file.name, convert)), name };
}

async function checkedWorkflow(data, label, convert) {
  const format = detectFormat(data);
  if (format === "api") return { workflow: data, notes: [] };
  if (format === "ui") {
    try {
      const { prompt, notes } = await convert(data);
      return { workflow: prompt, notes };
    } catch (error) {
      const body = error.body?.error;
      throw new FileProblem(body ? `${label}: ${body.message}: ${body.details}` : `${label}: ${error.message}`);
    }
  }
  throw new FileProblem(`${label} is not a workflow (expected {"<id>": {"class_type": …, "inputs": …}})`);
}

function isPng(bytes) {
  const head = new Uint8Array(bytes, 0, Math.min(8, bytes.byteLength));
  return head.length === 8 && head[0] === 0x89 && head[1] === 0x50 && head[2] === 0x4e && head[3] === 0x47;
}

async function workflowFromPng(bytes, convert) {
  const texts = await readPngText(bytes);
  if (texts.prompt) {
    let data;
    try {
      data = JSON.parse(texts.prompt);
    } catch {
      throw new FileProblem("the PNG's prompt chunk is not valid JSON");
    }
    return checkedWorkflow(data, "the PNG's prompt chunk", convert);
  }
  if (texts.workflow) {
    let data;
    try {
      data = JSON.parse(texts.workflow);
    } catch {
      throw new FileProblem("the PNG's workflow chunk is not valid JSON");
    }
    return checkedWorkflow(data, "the PNG's workflow chunk", convert);
  }
  throw new FileProblem("this PNG carries no workflow (no prompt text chunk)");
}

/** Offer the workflow as a download. */
export function downloadWorkflow(workflow, name) {
  const blob = new Blob([JSON.stringify(workflow, null, 2) + "\n"], { type: "application/json" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `${name || "workflow"}.json`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

/** Ask the user for one file. Resolves to the File, or null when cancelled. */
export function pickFile(input, accept) {
  return new Promise((resolve) => {
    input.accept = accept;
    input.value = "";
    input.onchange = () => resolve(input.files?.[0] ?? null);
    input.oncancel = () => resolve(null);
    input.click();
  });
}

export function storeWorkflow(workflow, name, view) {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify({ workflow, name, view }));
  } catch (error) {
    console.warn("latentloom: could not keep the workflow in localStorage:", error.message);
  }
}

/** The workflow kept by `storeWorkflow`, or null. */
export function storedWorkflow() {
  try {
    const data = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "null");
    const workflow = data?.workflow;
    const usable = workflow && typeof workflow === "object" && (!Object.keys(workflow).length || detectFormat(workflow) === "api");
    return usable ? data : null;
  } catch {
    return null;
  }
}

/**
 * The default workflow fitted to this machine's models: a checkpoint loader naming a checkpoint that is not
 * installed gets the first one listed, and EmptyLatentImage's size follows the checkpoint's family
 * (`GET /checkpoint_info`: 64 for the tiny demo, 512 SD1.x, 768 SD2.x v-prediction, 1024 SDXL). Without
 * checkpoints, or when the server cannot tell, the workflow stays as it is. `fetchJson(route)` is the API's.
 */
export async function fitToCheckpoints(workflow, fetchJson) {
  const nodes = Object.values(workflow);
  const loaders = nodes.filter((n) => n.class_type === "CheckpointLoaderSimple");
  if (!loaders.length) return workflow;
  let installed;
  try {
    installed = await fetchJson("/models/checkpoints");
  } catch {
    return workflow;
  }
  if (!installed?.length) return workflow;
  for (const node of loaders) {
    if (!installed.includes(node.inputs.ckpt_name)) node.inputs.ckpt_name = installed[0];
  }
  try {
    const info = await fetchJson(`/checkpoint_info?name=${encodeURIComponent(loaders[0].inputs.ckpt_name)}`);
    for (const node of nodes.filter((n) => n.class_type === "EmptyLatentImage")) {
      node.inputs.width = info.size;
      node.inputs.height = info.size;
    }
  } catch {
    // not a checkpoint the server can read: the sizes stay
  }
  return workflow;
}

/** The default workflow served from the repository's workflows/ folder, or null. */
export async function fetchDefaultWorkflow(path = "workflows/txt2img.json") {
  try {
    const response = await fetch(path);
    if (!response.ok) return null;
    const data = await response.json();
    return detectFormat(data) === "api" ? data : null;
  } catch {
    return null;
  }
}
