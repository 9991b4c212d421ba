/**
 * The page around the canvas: toolbar buttons, the status line (connection, queue size, running node and
 * step), run notices, and files dropped on the canvas (an image on a LoadImage-style node is uploaded into it;
 * anything else is opened as a workflow).
 */

const $ = (selector) => document.querySelector(selector);

export function bindToolbar(editor) {
  const click = (selector, fn) => $(selector).addEventListener("click", fn);
  click("#queue-button", () => editor.queue());
  click("#interrupt-button", () => editor.interrupt());
  click("#open-button", () => editor.open());
  click("#save-button", () => editor.save());
  click("#default-button", () => editor.openDefault());
  click("#clear-button", () => editor.load({}, { name: "untitled" }));
  click("#refresh-button", () => editor.loadDefinitions());
  click("#fit-button", () => editor.fit());
  click("#undo-button", () => editor.undo.undo());
  click("#redo-button", () => editor.undo.redo());
  click("#queue-panel-button", () => editor.queuePanel.toggle());
  click("#help-button", () => ($("#help").hidden = !$("#help").hidden));
  const previews = $("#previews-toggle");
  previews.checked = editor.run.showPreviews;
  previews.addEventListener("change", () => {
    editor.run.showPreviews = previews.checked;
    localStorage.setItem("latentloom.previews", previews.checked ? "on" : "off");
  });
}

export function bindRunStatus(editor) {
  const { api, run } = editor;
  const status = $("#status");
  const update = () => {
    const running = run.runningNode ? editor.graph.getNodeById(run.runningNode) : null;
    const progress = run.progress ? ` ${run.progress.value}/${run.progress.max}` : "";
    const parts = [api.connected ? `queue: ${run.queueRemaining}` : "disconnected"];
    if (running) parts.push(`running: ${running.title}${progress}`);
    status.textContent = parts.join(" · ");
    status.classList.toggle("ll-offline", !api.connected);
  };
  for (const type of ["status", "executing", "progress", "execution_success", "execution_error", "execution_interrupted"]) {
    run.addEventListener(type, update);
  }
  api.addEventListener("connected", update);
  api.addEventListener("disconnected", update);
  api.addEventListener("reconnected", () => {
    update();
    editor.loadDefinitions(); // the server may have restarted with other nodes or files
  });
  run.addEventListener("status", () => editor.queuePanel.refresh());
  run.addEventListener("execution_error", (e) => {
    const d = e.detail;
    const text = `#${d.node_id} ${d.node_type}: ${d.exception_type}: ${d.exception_message}`;
    editor.errors.show("The run failed", [{ nodeId: String(d.node_id), text }]);
  });
  run.addEventListener("execution_interrupted", () => editor.notices.show("Run interrupted"));
}

export function bindDrop(editor) {
  const area = $("#canvas-wrap");
  area.addEventListener("dragover", (e) => {
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  area.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer?.files?.[0];
    if (!file) return;
    const [x, y] = editor.canvas.convertEventToCanvasOffset(e);
    const node = editor.graph.getNodeOnPos(x, y);
    if (node?.uploadInput && file.type.startsWith("image/")) editor.uploads.upload(node, node.uploadInput, file);
    else editor.openFile(file);
  });
}
