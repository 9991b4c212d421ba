"""A pack in the style of older popular ones: it serves its JavaScript through WEB_DIRECTORY when the server says it
supports that, and would otherwise copy it into the server's own web folder. It also adds a route straight on
PromptServer.instance.app.router at import time."""
import os
import shutil

import server
from aiohttp import web
from server import BinaryEventTypes, PromptServer

HERE = os.path.dirname(os.path.realpath(__file__))

if hasattr(PromptServer.instance, "supports") and "custom_nodes_from_web" in PromptServer.instance.supports:
    WEB_DIRECTORY = "./js"
else:
    target = os.path.join(os.path.dirname(os.path.realpath(server.__file__)), "web", "extensions", "web_pack")
    shutil.copytree(os.path.join(HERE, "js"), target, dirs_exist_ok=True)


async def hello(request):
    return web.json_response({"hello": "web_pack", "preview_event": BinaryEventTypes.PREVIEW_IMAGE})


PromptServer.instance.app.router.add_get("/web_pack/hello", hello)


class Ping:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "ping"})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "ping"
    CATEGORY = "web_pack"

    def ping(self, text):
        return (text,)


NODE_CLASS_MAPPINGS = {"WebPackPing": Ping}
