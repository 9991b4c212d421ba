"""A test pack written the way real ComfyUI packs are: it imports ComfyUI's module names at import time.

`folder_paths`, `server.PromptServer`, `comfy.utils`, `comfy.model_management` and `nodes.MAX_RESOLUTION`, as
packs do; a model folder of its own (`models/surface`); HTTP routes on `PromptServer.instance.routes` (a file
listing, and the "continue" button of a node that waits for the user, like image-picker packs); websocket
messages with `send_sync`; an on-prompt handler.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F401
from . import routes  # noqa: F401  (registers the routes)

__version__ = "0.2.0"
WEB_DIRECTORY = None
