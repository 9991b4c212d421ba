"""Plugin and workflow-sharing routes: web extensions, the plugin report, UI-format conversion.

- `GET /extensions`: ComfyUI's list of extension script URLs, one per `.js` file of every loaded plugin's web
  directory (`nodes.plugins`); the editor imports each.
- `GET /extensions/<plugin>/<path>`: those files (no token needed, like the editor's own code; never outside the
  plugin's web directory).
- `GET /plugins`: every plugin seen at start-up with its nodes, version, status and error.
- `POST /workflow/convert`: a UI-format workflow (ComfyUI's `nodes`/`links`) → `{"prompt": <API format>,
  "notes": [...]}` (400 with ComfyUI's error envelope naming unknown node types).
"""
from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from executor.errors import PromptError
from executor.ui_format import ui_to_api
from server.api import PUBLIC, Route, json_response, parse_json, validate_model
from server.state import ENV, PLUGINS, REGISTRY


class UiWorkflow(BaseModel):
    """ComfyUI's UI format (schema 0.4 or 1); every other key is accepted and read by the converter."""

    model_config = ConfigDict(extra="allow")
    nodes: list[dict[str, Any]]
    links: list[Any] = Field(default_factory=list)


class ConvertResponse(BaseModel):
    prompt: dict[str, Any] = Field(description="the API-format workflow, editor data in each node's _meta")
    notes: list[str] = Field(description="what the conversion dropped or could not connect, one line each")


class PluginEntry(BaseModel):
    name: str
    source: str = Field(description="custom_nodes or entry_point")
    location: str
    version: str | None
    status: str = Field(description="loaded, partial (some nodes refused), failed or disabled")
    error: str | None
    nodes: list[str]
    node_errors: dict[str, str]
    web: bool
    seconds: float
    install: str | None = Field(description="when a module the plugin imports is missing: the command installing "
                                            "the plugin's requirements.txt (never run by latentloom)")


async def extensions(request: web.Request) -> web.Response:
    return json_response(request.app[PLUGINS].extension_urls())


async def extension_file(request: web.Request) -> web.StreamResponse:
    path = request.app[PLUGINS].web_file(request.match_info["plugin"], request.match_info["path"])
    if path is None:
        raise web.HTTPNotFound()
    content_type = "text/javascript" if path.suffix in (".js", ".mjs") else None
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    if content_type:
        headers["Content-Type"] = content_type
    return web.FileResponse(path, headers=headers)


async def plugins(request: web.Request) -> web.Response:
    return json_response(request.app[PLUGINS].to_json())


async def convert(request: web.Request) -> web.Response:
    data = parse_json(await request.read())
    validate_model(UiWorkflow, data, "body")
    try:  # off the loop: a large workflow takes a while, and sockets must not wait for it
        conversion = await asyncio.to_thread(ui_to_api, data, request.app[REGISTRY], request.app[ENV])
    except PromptError as exc:
        return json_response(exc.body(), status=400)
    return json_response({"prompt": conversion.prompt, "notes": conversion.notes})


def add_plugin_files(app: web.Application) -> None:
    """The extension files; register before the editor's catch-all route."""
    app.router.add_get("/extensions/{plugin}/{path:.+}", extension_file, name=PUBLIC + "extensions")


ROUTES = [
    Route("GET", "/extensions", extensions, "Extension script URLs of the loaded plugins", "plugins",
          responses={200: ("script URLs", list[str])}),
    Route("GET", "/plugins", plugins, "Every plugin with its nodes, version, status and error", "plugins",
          responses={200: ("plugins", list[PluginEntry])}),
    Route("POST", "/workflow/convert", convert, "Convert a UI-format workflow to the API format", "plugins",
          body=UiWorkflow, responses={200: ("converted", ConvertResponse),
                                      400: ("unknown node types or a malformed file", None)}),
]
