"""latentloom's example plugin: copy this folder into `<data>/custom_nodes/` and restart the server.

It shows both ways to write nodes: latentloom's typed classes (`nodes.py`) and an unchanged ComfyUI V1 class
(`comfy_style.py`, exported through `NODE_CLASS_MAPPINGS`), plus a web extension (`web/example.js`) that the
editor loads. The guide next to it (`nodes/examples/README.md`) explains each part.
"""
from .comfy_style import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes import BlendImages, JoinLines, ShowText, SplitLines

__version__ = "1.0.0"
WEB_DIRECTORY = "web"
__all__ = ["BlendImages", "JoinLines", "ShowText", "SplitLines", "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS",
           "WEB_DIRECTORY"]
