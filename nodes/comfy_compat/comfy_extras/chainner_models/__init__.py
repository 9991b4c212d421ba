"""`comfy_extras.chainner_models`: ComfyUI's old upscale-model loader, now spandrel's."""
