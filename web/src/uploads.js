/**
 * Input images of LoadImage-style nodes (inputs declared with `image_upload`): upload a file into the server's
 * input folder (`POST /upload/image`), select it in the node's list, and tell the node which file to show.
 * The list entry is `subfolder/name` as the server lists input files.
 */
import { pickFile } from "./files.js";
import { makeRoomForImages } from "./nodes.js";

export class ImageUploads {
  /**
   * @param {import("./api.js").Api} api
   * @param {HTMLInputElement} fileInput the hidden file input used for the picker
   * @param {{changed: () => void, redraw: () => void, problem: (message: string) => void}} hooks
   */
  constructor(api, fileInput, hooks) {
    this.api = api;
    this.fileInput = fileInput;
    this.hooks = hooks;
  }

  widget(node, name) {
    return node.widgets?.find((w) => w.name === name);
  }

  /** The file a node shows as its input image (`{filename, subfolder, type: "input"}`), or null. */
  locator(node) {
    if (!node.uploadInput) return null;
    const value = this.widget(node, node.uploadInput)?.value;
    if (!value || typeof value !== "string") return null;
    const at = value.lastIndexOf("/");
    return { filename: value.slice(at + 1), subfolder: at < 0 ? "" : value.slice(0, at), type: "input" };
  }

  async pick(node, name) {
    const file = await pickFile(this.fileInput, "image/*");
    if (file) await this.upload(node, name, file);
  }

  async upload(node, name, file) {
    try {
      const result = await this.api.uploadImage(file);
      const value = result.subfolder ? `${result.subfolder}/${result.name}` : result.name;
      const widget = this.widget(node, name);
      if (!widget.options.values.includes(value)) widget.options.values.push(value);
      widget.value = value;
      makeRoomForImages(node);
      this.hooks.changed();
      this.hooks.redraw();
    } catch (error) {
      this.hooks.problem(`Upload failed: ${error.message}`);
    }
  }
}
