"""The route table's building blocks: one `Route` per endpoint, shared by the router and the OpenAPI document.

Every API route is served at its path and again under `/api` (ComfyUI's alias; its frontend calls the `/api`
form). Handlers raise `ApiError` for a refusal; the error middleware turns it into ComfyUI's error envelope
`{"error": {type, message, details, extra_info}, "node_errors": {}}`. Request bodies and query strings are
validated with the pydantic models named in the route, so what is documented is what is enforced.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from executor.errors import PromptError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)
API_PREFIX = "/api"
PUBLIC = "public:"  # route-name prefix of routes that need no token (the editor's static files, the docs)


class ApiError(PromptError):
    """A refused request: HTTP `status` with ComfyUI's error envelope (executor.errors.PromptError)."""

    def __init__(self, status: int, type: str, message: str, details: str = "",
                 extra_info: dict[str, Any] | None = None, node_errors: dict[str, Any] | None = None) -> None:
        super().__init__(type, message, details, extra_info, node_errors)
        self.status = status

    def response(self) -> web.Response:
        return json_response(self.body(), status=self.status)


@dataclass(frozen=True)
class Route:
    """One endpoint. `body`/`query`/`form` name the models that validate the request; `responses` maps a status
    to (description, model or type or None) for the document."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    form: type[BaseModel] | None = None
    responses: dict[int, tuple[str, Any]] = field(default_factory=dict)
    content_type: str = "application/json"  # of the 200 response
    alias: bool = True  # also under /api


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json")


def empty_ok() -> web.Response:
    """ComfyUI's bare 200 for control routes."""
    return web.Response(status=200)


def parse_json(raw: bytes) -> Any:
    """A request body as JSON; Python's extensions `NaN`, `Infinity` and `-Infinity` are refused, as JSON does."""
    try:
        return json.loads(raw, parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        detail = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
        raise ApiError(400, "invalid_json", "Invalid JSON", f"the request body is not JSON: {detail}") from None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value (numbers must be finite)")


async def read_model(request: web.Request, model: type[M], *, required: bool = True) -> M:
    """The JSON body validated by `model`; an empty body is `{}` when the body is optional."""
    raw = await request.read()  # over client_max_size: aiohttp raises 413
    if not raw.strip():
        if required:
            raise ApiError(400, "invalid_json", "Invalid JSON", "the request body is empty")
        data: Any = {}
    else:
        data = parse_json(raw)
    return validate_model(model, data, "body")


def validate_model(model: type[M], data: Any, where: str) -> M:
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "Invalid request",
                       f"the {where} must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid_request", "Invalid request", _describe(exc, where)) from None
    except RecursionError:
        raise ApiError(400, "invalid_request", "Invalid request", f"the {where} is nested too deeply") from None


def read_query(request: web.Request, model: type[M]) -> M:
    data = {k: v for k, v in request.query.items() if k in model.model_fields}
    return validate_model(model, data, "query")


def _describe(exc: ValidationError, where: str) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or where
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def add_routes(app: web.Application, routes: list[Route]) -> None:
    for route in routes:
        paths = [route.path] + ([API_PREFIX + route.path] if route.alias else [])
        for path in paths:
            app.router.add_route(route.method, path, route.handler)
