"""latentloom's HTTP and websocket server (see ARCHITECTURE.md; the app factory is `server.app.create_app`).

This package is also the `server` that ComfyUI packs import: `from server import PromptServer` gives
`server.comfy_server.PromptServer` (its `instance` has the route table packs decorate, `send_sync`, …), and
`BinaryEventTypes`. The names are provided lazily (module `__getattr__`), so importing this package stays cheap and has no side effects.
"""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("PromptServer", "BinaryEventTypes"):
        from server import comfy_server

        return getattr(comfy_server, name)
    raise AttributeError(f"module 'server' has no attribute {name!r}")
