"""A ComfyUI V1 node, exactly as it would be written for ComfyUI: latentloom adapts it when it loads the plugin."""
import torch


class Posterize:
    """Reduce each colour channel to a few levels."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "levels": ("INT", {"default": 4, "min": 2, "max": 256, "step": 1})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "posterize"
    CATEGORY = "example/image"
    DESCRIPTION = "Reduce each colour channel to a few levels."

    def posterize(self, image, levels):
        steps = levels - 1
        return (torch.floor(image * steps + 0.5) / steps,)


NODE_CLASS_MAPPINGS = {"ExamplePosterize": Posterize}
NODE_DISPLAY_NAME_MAPPINGS = {"ExamplePosterize": "Posterize (ComfyUI style)"}
