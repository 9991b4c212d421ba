/**
 * Workflow files: reading what the user opens or drops, writing what they save, and the copy kept in
 * localStorage so the current workflow survives a page reload.
 *
 * Accepted: our workflow format and ComfyUI's "Export (API)" files (both API format); PNGs made by SaveImage
 * (the `prompt` text chunk holds the API workflow). ComfyUI's UI-format files (`nodes`/`links` arrays) need
 * the one converter, which lives on the server (the CLI and the API use it too); until its route exists
 * they are refused with a message saying so.
 *
 * NOTE for the issue that adds the converter route: `checkedWorkflow` (JSON files) and `workflowFromPng` (a PNG
 * with only a `workflow` chunk) are the two places that raise UI_FORMAT_MESSAGE; make them POST the UI-format
 * document to the route and open the API-format answer (keeping `_meta` positions the converter fills in).
 */
import { readPngText } from "./png.js";
import { detectFormat } from "./workflow.js";

const STORAGE_KEY = "latentloom.workflow";
export const UI_FORMAT_MESSAGE =
  "This is a ComfyUI UI-format workflow (nodes/links). Opening it needs the server-side converter, which " +
  "is not available yet: export it from ComfyUI with \"Export (API)\", or open a PNG made by SaveImage.";

/** Thrown for a file the editor cannot open; `message` is for the user. */
export class FileProblem extends Error {}

/**
 * Read a workflow from a File. Resolves to `{workflow, name}` (API format); rejects with FileProblem.
 */
export async function readWorkflowFile(file) {
  const name = file.name.replace(/\.(json|png)$/i, "");
  const bytes = await file.arrayBuffer();
  if (isPng(bytes)) return { workflow: await workflowFromPng(bytes), name };
  let data;
  try {
    data = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new FileProblem(`${file.name} is neither a JSON workflow nor a PNG`);
  }
  return { workflow: checkedWorkflow(data, file.name), name };
}

export function checkedWorkflow(data, label) {
  const format = detectFormat(data);
  if (format === "api") return data;
  if (format === "ui") throw new FileProblem(UI_FORMAT_MESSAGE);
  throw new FileProblem(`${label} is not a workflow (expected {"<id>": {"class_type": …, "inputs": …}})`);
}

function isPng(bytes) {
  const head = new Uint8Array(bytes, 0, Math.min(8, bytes.byteLength));
  return head.length === 8 && head[0] === 0x89 && head[1] === 0x50 && head[2] === 0x4e && head[3] === 0x47;
}

async function workflowFromPng(bytes) {
  const texts = await readPngText(bytes);
  if (texts.prompt) {
    let data;
    try {
      data = JSON.parse(texts.prompt);
    } catch {
      throw new FileProblem("the PNG's prompt chunk is not valid JSON");
    }
    return checkedWorkflow(data, "the PNG's prompt chunk");
  }
  if (texts.workflow) throw new FileProblem(UI_FORMAT_MESSAGE);
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
