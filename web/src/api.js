/**
 * API client: the editor talks to the server exactly as ComfyUI's frontend talks to ComfyUI.
 *
 * HTTP routes are called under the `/api` prefix (every API route is also served there, so they can never be
 * shadowed by a static file of the editor); the websocket `/ws?clientId=` delivers ComfyUI's messages, which
 * are re-dispatched as DOM events named by their `type` (`status`, `executing`, `progress`, …) with the
 * message's `data` as `detail`. Binary preview frames (event 1: image type + encoded image) become a `preview`
 * event whose detail is `{blob}`. The socket reconnects on its own; `reconnected` fires when it does.
 */

const PREVIEW_IMAGE = 1;
const PREVIEW_IMAGE_WITH_METADATA = 4;
const IMAGE_TYPES = { 1: "image/jpeg", 2: "image/png" };

/** An error response of the server: `status` is the HTTP status, `body` the decoded JSON (or text). */
export class ApiError extends Error {
  constructor(status, body, message) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export class Api extends EventTarget {
  /**
   * @param {string} base URL prefix of the API routes (default: `api` relative to the page, or `/api` when the
   *   editor is served at `/latentloom/` because another frontend holds `/`)
   */
  constructor(base = location.pathname.startsWith("/latentloom/") ? "/api" : "api") {
    super();
    this.base = base.replace(/\/$/, "");
    this.clientId = sessionStorage.getItem("latentloom.clientId") || randomId();
    sessionStorage.setItem("latentloom.clientId", this.clientId);
    // A server that listens beyond loopback wants a token: open the editor once as `/?token=…`.
    this.token = new URLSearchParams(location.search).get("token") || sessionStorage.getItem("latentloom.token");
    if (this.token) sessionStorage.setItem("latentloom.token", this.token);
    this.socket = null;
    this.connected = false;
    this._everConnected = false;
    this._closedByUs = false;
  }

  url(route) {
    return `${this.base}${route}`;
  }

  /** A URL for places that cannot send headers (`<img src>`, the websocket): the token rides in the query. */
  urlWithToken(route) {
    if (!this.token) return this.url(route);
    return `${this.url(route)}${route.includes("?") ? "&" : "?"}token=${encodeURIComponent(this.token)}`;
  }

  async fetchJson(route, options = {}) {
    const headers = { ...(options.headers ?? {}) };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const response = await fetch(this.url(route), { ...options, headers });
    const text = await response.text();
    let body = text;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: keep the text (e.g. an aiohttp error page)
    }
    if (!response.ok) {
      const message = body?.error?.message || (typeof body === "string" && body) || response.statusText;
      throw new ApiError(response.status, body, `${route}: ${response.status} ${message}`);
    }
    return body;
  }

  postJson(route, data) {
    return this.fetchJson(route, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(data),
    });
  }

  objectInfo() {
    return this.fetchJson("/object_info");
  }

  /** ComfyUI UI format → `{prompt, notes}` through the server's one converter. */
  convertWorkflow(doc) {
    return this.postJson("/workflow/convert", doc);
  }

  /**
   * Queue an API-format workflow. Resolves to `{prompt_id, number, node_errors}`; a workflow that fails
   * validation rejects with an ApiError whose body is `{error, node_errors}`.
   */
  queuePrompt(prompt, { front = false } = {}) {
    const body = { prompt, client_id: this.clientId };
    if (front) body.front = true;
    return this.postJson("/prompt", body);
  }

  getQueue() {
    return this.fetchJson("/queue");
  }

  deleteQueued(promptIds) {
    return this.postJson("/queue", { delete: promptIds });
  }

  getHistory(maxItems = 50) {
    return this.fetchJson(`/history?max_items=${maxItems}`);
  }

  getHistoryItem(promptId) {
    return this.fetchJson(`/history/${encodeURIComponent(promptId)}`);
  }

  interrupt() {
    return this.postJson("/interrupt", {});
  }

  /** Upload a file into the input folder; resolves to `{name, subfolder, type}`. */
  uploadImage(file, { overwrite = false } = {}) {
    const form = new FormData();
    form.append("image", file, file.name);
    form.append("type", "input");
    if (overwrite) form.append("overwrite", "true");
    return this.fetchJson("/upload/image", { method: "POST", body: form });
  }

  /** URL of an output/input/temp file (`{filename, subfolder, type}` as the server reports it). */
  viewUrl({ filename, subfolder = "", type = "output" }) {
    const query = new URLSearchParams({ filename, subfolder, type });
    return this.urlWithToken(`/view?${query}`);
  }

  connect() {
    this._closedByUs = false;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = new URL(this.urlWithToken(`/ws?clientId=${encodeURIComponent(this.clientId)}`), location.href);
    url.protocol = scheme;
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    let opened = false;
    socket.addEventListener("open", () => {
      opened = true;
      // ask for previews that name their node (binary event 4)
      socket.send(JSON.stringify({ type: "feature_flags", data: { supports_preview_metadata: true } }));
      this.connected = true;
      this.emit(this._everConnected ? "reconnected" : "connected", {});
      this._everConnected = true;
    });
    socket.addEventListener("message", (event) => this.onMessage(event));
    socket.addEventListener("close", () => {
      this.connected = false;
      if (this._closedByUs) return;
      if (opened) this.emit("disconnected", {});
      setTimeout(() => this.connect(), opened ? 300 : 1500);
    });
    this.socket = socket;
  }

  close() {
    this._closedByUs = true;
    this.socket?.close();
  }

  onMessage(event) {
    if (event.data instanceof ArrayBuffer) {
      this.onBinary(new DataView(event.data), event.data);
      return;
    }
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      console.warn("latentloom: ignored a websocket message that is not JSON");
      return;
    }
    if (message?.type) this.emit(message.type, message.data ?? {});
  }

  onBinary(view, buffer) {
    if (view.byteLength < 8) return;
    const kind = view.getUint32(0);
    if (kind === PREVIEW_IMAGE) {
      const mime = IMAGE_TYPES[view.getUint32(4)] || "image/jpeg";
      this.emit("preview", { blob: new Blob([buffer.slice(8)], { type: mime }) });
    } else if (kind === PREVIEW_IMAGE_WITH_METADATA) {
      const length = view.getUint32(4);
      const meta = JSON.parse(new TextDecoder().decode(buffer.slice(8, 8 + length)));
      const blob = new Blob([buffer.slice(8 + length)], { type: meta.image_type || "image/jpeg" });
      this.emit("preview", { blob, nodeId: meta.node_id, promptId: meta.prompt_id });
    }
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function randomId() {
  return crypto.randomUUID ? crypto.randomUUID().replaceAll("-", "") : String(Math.random()).slice(2);
}
