/**
 * Model downloads from the editor: when the server refuses a workflow because a node names a model file that is
 * missing, and the workflow says where to get it (the node's `models` entries — ComfyUI's
 * `properties.models`: name, url, directory — kept in `node.properties.models`), the error list offers a
 * Download button. It asks the server to fetch the file (`POST /models/pull`), follows its `model_pull`
 * websocket messages in a notice, and reloads the node definitions when the file is there so its list has it.
 */

export class ModelPulls {
  constructor(editor) {
    this.editor = editor;
    this.notices = new Map(); // pull_id → notice element
    editor.api.addEventListener("model_pull", (event) => this.onProgress(event.detail));
  }

  /** Error-list lines offering a download for each refused input whose value the node says where to get. */
  offers(body) {
    const lines = [];
    for (const [nodeId, entry] of Object.entries(body?.node_errors ?? {})) {
      const node = this.editor.graph.getNodeById(Number(nodeId)) ?? this.editor.graph.getNodeById(nodeId);
      const models = node?.properties?.models;
      if (!Array.isArray(models)) continue;
      for (const error of entry.errors ?? []) {
        const value = node.widgets?.find((w) => w.name === error.extra_info?.input_name)?.value;
        const model = models.find((m) => m?.name === value && typeof m.url === "string" && m.directory);
        if (!model) continue;
        const host = new URL(model.url, location.href).host;
        lines.push({ nodeId, text: `#${nodeId}: ${model.directory}/${model.name} can be downloaded from ${host}`,
                     action: { label: "Download", run: () => this.pull(model) } });
      }
    }
    return lines;
  }

  async pull(model) {
    const notice = this.editor.notices.show(`Downloading ${model.name}…`, "info", 0);
    try {
      const { pull_id } = await this.editor.api.postJson("/models/pull",
        { source: model.url, kind: model.directory, name: model.name });
      this.notices.set(pull_id, notice);
    } catch (error) {
      notice.remove();
      this.editor.notices.show(`Download refused: ${error.body?.error?.details || error.message}`, "error", 10000);
    }
  }

  onProgress(state) {
    const notice = this.notices.get(state.pull_id);
    if (!notice) return;
    if (state.status === "downloading") {
      const percent = state.max ? ` ${Math.floor((100 * state.value) / state.max)}%` : "";
      notice.textContent = `Downloading ${state.name}…${percent}`;
      return;
    }
    this.notices.delete(state.pull_id);
    notice.remove();
    if (state.status === "done") {
      this.editor.notices.show(`Downloaded ${state.kind}/${state.name}`);
      this.editor.errors.hide();
      this.editor.run.clearErrors();
      this.editor.loadDefinitions();
    } else {
      this.editor.notices.show(`Download of ${state.name} failed: ${state.error}`, "error", 10000);
    }
  }
}
