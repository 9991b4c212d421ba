"""A pack in the style of popular ones: ComfyUI's core classes as bases, comfy.samplers lists, node_helpers."""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
