"""The editor's files: `web/` at `/` (and always at `/latentloom/`), or another frontend build at `/`.

- `GET /` is `web/index.html`, or a small placeholder page (from here, not from `web/`) until the editor exists.
- `GET /lib/litegraph/<path>` serves `web/node_modules/@comfyorg/litegraph/dist/<path>` when npm installed it.
- `GET /workflows/<name>` serves the repository's example workflows read-only (the editor opens
  `workflows/txt2img.json` on first use).
- Any other `GET /<path>` is a file under `web/` (the route is registered last, so API routes win).
- The same editor routes are served under `/latentloom/`. With `--front-end-root DIR` (ComfyUI's flag; or
  `--front-end official`, the installed `comfyui-frontend-package`) that build owns `/` and its catch-all, and our
  editor is reachable only at `/latentloom/`.
Paths are resolved and must stay inside their folder (no `..`, no symlink out); `.js`, `.css` and `.html` are sent
with `Cache-Control: no-cache` so an updated editor is picked up at once. These routes need no token: they hold
no data, only the editor's code.
"""
from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

from nodes.paths import DataPaths, UnsafePathError
from server.api import PUBLIC
from server.config import REPO_ROOT
from server.state import CONFIG

LITEGRAPH_DIST = Path("node_modules") / "@comfyorg" / "litegraph" / "dist"
LITEGRAPH_URL = "lib/litegraph/"
EDITOR_PREFIX = "/latentloom"
WORKFLOWS = REPO_ROOT / "workflows"
NO_CACHE = (".js", ".mjs", ".css", ".html", ".json", ".map")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/javascript", ".js")

PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>latentloom</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}
code{background:#f3f3f3;padding:.1em .3em;border-radius:3px}</style></head>
<body><h1>latentloom</h1>
<p>The server is running. The graph editor is not installed in <code>web/</code> yet.</p>
<p>The HTTP and websocket API speaks ComfyUI's protocol: <a href="/docs">API documentation</a>,
<a href="/openapi.json">OpenAPI document</a>, <a href="/object_info">node types</a>.</p>
</body></html>
"""


def _send(base: Path, relative: str) -> web.StreamResponse:
    if any(part.startswith(".") for part in relative.split("/")):
        raise web.HTTPNotFound()  # dotfiles (.env, .git) are never the editor's
    try:
        path = DataPaths(base).resolve(base, relative)
    except UnsafePathError:
        raise web.HTTPForbidden() from None
    if path.is_dir():
        path = path / "index.html"
    if not path.is_file():
        raise web.HTTPNotFound()
    headers = {"X-Content-Type-Options": "nosniff"}
    if path.suffix in NO_CACHE:
        headers["Cache-Control"] = "no-cache"
    ctype = mimetypes.guess_type(path.name)[0]
    if ctype:
        headers["Content-Type"] = ctype
    return web.FileResponse(path, headers=headers)


async def index(request: web.Request) -> web.StreamResponse:
    root = request.app[CONFIG].web_root
    if (root / "index.html").is_file():
        return _send(root, "index.html")
    return web.Response(text=PLACEHOLDER, content_type="text/html", headers={"Cache-Control": "no-cache"})


async def litegraph(request: web.Request) -> web.StreamResponse:
    base = request.app[CONFIG].web_root / LITEGRAPH_DIST
    if not base.is_dir():
        raise web.HTTPNotFound(text="the graph library is not installed (npm install in web/)")
    return _send(base, request.match_info["path"])


async def workflow_file(request: web.Request) -> web.StreamResponse:
    return _send(WORKFLOWS, request.match_info["path"])


async def web_file(request: web.Request) -> web.StreamResponse:
    root = request.app[CONFIG].web_root
    if not root.is_dir():
        raise web.HTTPNotFound()
    return _send(root, request.match_info["path"])


async def front_end_index(request: web.Request) -> web.StreamResponse:
    return _send(request.app[CONFIG].front_end_root, "index.html")


async def front_end_file(request: web.Request) -> web.StreamResponse:
    return _send(request.app[CONFIG].front_end_root, request.match_info["path"])


async def editor_redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(EDITOR_PREFIX + "/")  # the editor's URLs are relative to its folder


def _add_editor_routes(app: web.Application, prefix: str) -> None:
    name = PUBLIC + (prefix.strip("/") or "editor") + "."
    app.router.add_get(prefix + "/", index, name=name + "index")
    app.router.add_get(f"{prefix}/{LITEGRAPH_URL}{{path:.+}}", litegraph, name=name + "litegraph")
    app.router.add_get(prefix + "/workflows/{path:.+}", workflow_file, name=name + "workflows")
    app.router.add_get(prefix + "/{path:.+}", web_file, name=name + "web")


def add_static_routes(app: web.Application) -> None:
    """Register after every API route: the catch-all must not shadow them."""
    app.router.add_get(EDITOR_PREFIX, editor_redirect, name=PUBLIC + "latentloom")
    _add_editor_routes(app, EDITOR_PREFIX)
    if app[CONFIG].front_end_root is None:
        _add_editor_routes(app, "")
    else:
        app.router.add_get("/", front_end_index, name=PUBLIC + "front_end.index")
        app.router.add_get("/{path:.+}", front_end_file, name=PUBLIC + "front_end.web")
