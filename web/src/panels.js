/**
 * Panels around the canvas: queue and history (cancel a pending prompt, open a past run's workflow and
 * images), the error list (the server's messages; a click centres the offending node; a line may carry an
 * action button, e.g. Download for a missing model), the shortcut help and
 * short notices. Plain DOM; text always goes in through textContent.
 */

export const SHORTCUTS = [
  ["Ctrl+Enter", "Queue the workflow (the batch count sets how many times)"],
  ["Ctrl+Shift+Enter", "Queue at the front of the queue"],
  ["Double-click canvas", "Search nodes to add"],
  ["Right-click", "Menu: add node (by category), group, node options"],
  ["Drag from a slot", "Connect (wrong types are refused); drop on empty space: menu, with Shift: search"],
  ["Drag a link onto a widget", "Turn the widget into an input; remove the link to turn it back"],
  ["Ctrl+Z / Ctrl+Y, Ctrl+Shift+Z", "Undo / redo"],
  ["Ctrl+C / Ctrl+V", "Copy / paste selected nodes"],
  ["Ctrl+Shift+V", "Paste keeping input links"],
  ["Delete, Backspace", "Delete selected"],
  ["Ctrl+A", "Select all"],
  ["Ctrl+click, Shift+click, Ctrl+drag", "Multi-select"],
  ["Ctrl+G", "Group selected nodes"],
  ["Click the dot in a link's middle", "Link menu: add a node or a reroute, delete the link"],
  [".", "Fit view to selection (or everything)"],
  ["R", "Reload node types and file lists (e.g. new checkpoints) from the server"],
  ["Space+drag, drag on empty canvas", "Pan"],
  ["Mouse wheel", "Zoom"],
  ["Ctrl+S / Ctrl+O", "Save / open a workflow (.json, or a PNG made by SaveImage)"],
  ["Drop a file", "Open a workflow or PNG; drop an image on LoadImage to upload it"],
  ["Escape", "Close search, menus and panels"],
  ["? or F1", "This help"],
];

export class Notices {
  constructor(element) {
    this.element = element;
  }

  show(text, kind = "info", ms = 5000) {
    const item = document.createElement("div");
    item.className = `ll-notice ll-notice-${kind}`;
    item.textContent = text;
    item.addEventListener("click", () => item.remove());
    this.element.append(item);
    if (ms) setTimeout(() => item.remove(), ms);
    return item;
  }
}

export class ErrorList {
  constructor(element, onPick) {
    this.element = element;
    this.onPick = onPick;
  }

  show(title, lines) {
    this.element.replaceChildren();
    const head = document.createElement("div");
    head.className = "ll-errors-head";
    const heading = document.createElement("strong");
    heading.textContent = title;
    const close = document.createElement("button");
    close.textContent = "×";
    close.title = "Close";
    close.addEventListener("click", () => this.hide());
    head.append(heading, close);
    this.element.append(head);
    for (const { nodeId, text, action } of lines) {
      const line = document.createElement("div");
      line.className = "ll-error-line";
      line.textContent = text;
      if (nodeId != null) {
        line.dataset.node = nodeId;
        line.addEventListener("click", () => this.onPick(nodeId));
      }
      if (action) {
        const button = document.createElement("button");
        button.textContent = action.label;
        button.addEventListener("click", (event) => {
          event.stopPropagation();
          button.disabled = true;
          action.run();
        });
        line.append(" ", button);
      }
      this.element.append(line);
    }
    this.element.hidden = false;
  }

  hide() {
    this.element.hidden = true;
  }
}

export function renderHelp(element) {
  const table = document.createElement("table");
  for (const [keys, what] of SHORTCUTS) {
    const row = table.insertRow();
    const key = row.insertCell();
    key.className = "ll-keys";
    key.textContent = keys;
    row.insertCell().textContent = what;
  }
  const head = document.createElement("div");
  head.className = "ll-panel-head";
  head.innerHTML = "<strong>Keyboard and mouse</strong>";
  const close = document.createElement("button");
  close.textContent = "×";
  close.addEventListener("click", () => (element.hidden = true));
  head.append(close);
  element.replaceChildren(head, table);
}

/**
 * The queue and history panel. `actions`: `cancel(promptId)`, `open(historyEntry)`; it refreshes itself from
 * the server whenever `refresh()` is called (the editor does on every `status` message while it is open).
 */
export class QueuePanel {
  constructor(element, api, actions) {
    this.element = element;
    this.api = api;
    this.actions = actions;
    this.pending = null;
    this.stale = false;
  }

  get open() {
    return !this.element.hidden;
  }

  toggle() {
    this.element.hidden = !this.element.hidden;
    if (this.open) this.refresh();
  }

  /**
   * Re-read the queue and history. Calls that arrive while a read is in flight are coalesced into one more read
   * after it: that read may have been answered before the change that caused the call.
   */
  async refresh() {
    if (!this.open) return;
    if (this.pending) {
      this.stale = true;
      return this.pending;
    }
    this.stale = false;
    this.pending = Promise.all([this.api.getQueue(), this.api.getHistory(30)])
      .then(([queue, history]) => this.render(queue, history))
      .catch((error) => this.render(null, null, error))
      .finally(() => {
        this.pending = null;
        if (this.stale) this.refresh();
      });
    return this.pending;
  }

  render(queue, history, error) {
    const parts = [];
    const head = document.createElement("div");
    head.className = "ll-panel-head";
    head.innerHTML = "<strong>Queue</strong>";
    const close = document.createElement("button");
    close.textContent = "×";
    close.addEventListener("click", () => this.toggle());
    head.append(close);
    parts.push(head);
    if (error) {
      parts.push(textDiv("ll-muted", `Could not read the queue: ${error.message}`));
      this.element.replaceChildren(...parts);
      return;
    }
    const running = queue.queue_running ?? [];
    const pending = [...(queue.queue_pending ?? [])].sort((a, b) => a[0] - b[0]);
    if (!running.length && !pending.length) parts.push(textDiv("ll-muted", "Nothing queued."));
    for (const item of running) parts.push(this.queueRow(item, true));
    for (const item of pending) parts.push(this.queueRow(item, false));
    parts.push(textDiv("ll-panel-subhead", "History"));
    const entries = Object.entries(history ?? {}).reverse();
    if (!entries.length) parts.push(textDiv("ll-muted", "No finished runs yet."));
    for (const [promptId, entry] of entries) parts.push(this.historyRow(promptId, entry));
    this.element.replaceChildren(...parts);
  }

  queueRow(item, running) {
    const [number, promptId, prompt] = item;
    const row = document.createElement("div");
    row.className = "ll-queue-item";
    row.dataset.promptId = promptId;
    const label = textDiv("", `${running ? "running" : `#${number}`} · ${Object.keys(prompt ?? {}).length} nodes · ${promptId.slice(0, 8)}`);
    row.append(label);
    if (!running) {
      const cancel = document.createElement("button");
      cancel.className = "ll-cancel";
      cancel.textContent = "Cancel";
      cancel.addEventListener("click", () => this.actions.cancel(promptId));
      row.append(cancel);
    }
    return row;
  }

  historyRow(promptId, entry) {
    const row = document.createElement("div");
    row.className = "ll-history-item";
    row.dataset.promptId = promptId;
    const status = historyStatus(entry);
    row.append(textDiv(`ll-status-${status}`, `${status} · ${promptId.slice(0, 8)}`));
    const open = document.createElement("button");
    open.textContent = "Open";
    open.title = "Open this run's workflow and results";
    open.addEventListener("click", () => this.actions.open(promptId, entry));
    row.append(open);
    const images = Object.values(entry.outputs ?? {}).flatMap((output) => output.images ?? []);
    if (images.length) {
      const thumbs = document.createElement("div");
      thumbs.className = "ll-thumbs";
      for (const image of images.slice(0, 6)) {
        const img = document.createElement("img");
        img.src = this.api.viewUrl(image);
        img.alt = image.filename;
        img.title = image.filename;
        thumbs.append(img);
      }
      row.append(thumbs);
    }
    return row;
  }
}

/** "success", "error" or "interrupted" (ComfyUI records an interrupt as an error whose last message says so). */
function historyStatus(entry) {
  const messages = entry.status?.messages ?? [];
  if (messages.at(-1)?.[0] === "execution_interrupted") return "interrupted";
  return entry.status?.status_str ?? "unknown";
}

function textDiv(className, text) {
  const div = document.createElement("div");
  if (className) div.className = className;
  div.textContent = text;
  return div;
}
