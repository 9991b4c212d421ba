"""The pack's HTTP routes, registered at import time on the server's route table."""
from aiohttp import web

import folder_paths
from server import PromptServer

from .nodes import CONTINUE

routes = PromptServer.instance.routes


@routes.get("/surface_pack/files")
async def files(request):
    kind = request.query.get("kind", "checkpoints")
    name = request.query.get("name")
    return web.json_response({"files": folder_paths.get_filename_list(kind),
                              "full_path": folder_paths.get_full_path(kind, name) if name else None,
                              "folders": folder_paths.get_folder_paths(kind)})


@routes.post("/surface_pack/continue")
async def resume(request):
    CONTINUE.set()
    return web.json_response({"ok": True})
