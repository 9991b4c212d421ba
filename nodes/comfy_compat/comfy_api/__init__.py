"""`comfy_api`: ComfyUI's versioned node API for packs; `comfy_api.latest` is the V3 schema (imported only under
that name, see `nodes.comfy_compat`)."""
