"""Middlewares: errors as JSON, who may talk to the server (see server.config for the policy), and optional
response compression.

`errors` (outermost): an `ApiError` becomes ComfyUI's error envelope; a body over the size limit becomes 413 (also
answered up front from `Content-Length`, before anything is read); anything unexpected is logged and answered
500 — no request can stop the server.

`access`, in order:
1. Host: a loopback-only server without a token answers only requests addressed to a loopback name or address
   (a DNS-rebinding page reaches 127.0.0.1 under its own host name). 403.
2. Origin: when the Host is a loopback name, a browser request whose `Origin` is another host:port is refused
   (ComfyUI's anti-CSRF rule; `Origin: null` counts as another site). 403. With `--enable-cors-header [ORIGIN]`
   (ComfyUI's flag; `*` when no origin is given) this check is replaced by CORS headers on every response —
   errors included, so a page can read why it was refused — as ComfyUI does.
3. `OPTIONS` is answered 200 with an empty body (ComfyUI's behaviour), before the token check: a CORS preflight
   never carries credentials.
4. Token: when one is configured, every route except the public ones (the editor's files, the API document)
   needs `Authorization: Bearer <token>` or `?token=<token>`, compared in constant time. 401.

`compress` (with `--enable-compress-response-body`): JSON and text responses are gzip-encoded for clients that
accept it; files, images and websockets are left alone.
"""
from __future__ import annotations

import hmac
import logging

from aiohttp import web
from yarl import URL

from server.api import PUBLIC, ApiError
from server.config import ServerConfig, is_loopback_host

log = logging.getLogger(__name__)
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
CORS_HEADERS = {"Access-Control-Allow-Methods": "POST, GET, DELETE, PUT, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type, Authorization"}
COMPRESSIBLE = ("application/json", "text/")


def split_host(host: str, scheme: str) -> tuple[str, int | None]:
    """`"[::1]:8188"` → ("::1", 8188); a missing port is the scheme's default."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif host.count(":") == 1:
        name, _, port = host.partition(":")
    else:
        name, port = host, ""
    if port and not port.isdigit():
        return name, None
    return name, int(port) if port else DEFAULT_PORTS.get(scheme)


def origin_matches(origin: str, host: str, scheme: str) -> bool:
    try:
        url = URL(origin)
    except (ValueError, TypeError):
        return False
    if not url.scheme or not url.host:
        return False  # "null" and other opaque origins
    return (url.host.lower().strip("[]"), url.port) == split_host(host, scheme)


def token_of(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("token")


def cors_headers_for(origin: str) -> dict[str, str]:
    """CORS headers for `--enable-cors-header ORIGIN`. Credentials are allowed for a named origin only: with `*`
    any site could make a logged-in browser's requests and read the answers (browsers refuse the pair anyway)."""
    headers = {"Access-Control-Allow-Origin": origin, **CORS_HEADERS}
    if origin != "*":
        headers["Access-Control-Allow-Credentials"] = "true"
    return headers


def make_middlewares(config: ServerConfig) -> list:
    token = config.auth_token
    enforce_host = config.loopback_only and token is None
    cors = cors_headers_for(config.cors_origin) if config.cors_origin else None

    @web.middleware
    async def cors_headers(request: web.Request, handler):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(cors)
            raise
        if not response.prepared:  # a websocket or a streamed file has sent its headers already
            response.headers.update(cors)
        return response

    @web.middleware
    async def compress(request: web.Request, handler):
        response = await handler(request)
        if (type(response) is web.Response and not response.prepared
                and response.content_type.startswith(COMPRESSIBLE)
                and "gzip" in request.headers.get("Accept-Encoding", "").lower()):
            response.enable_compression(web.ContentCoding.gzip)
        return response

    @web.middleware
    async def errors(request: web.Request, handler):
        length = request.content_length
        if length is not None and length > config.max_upload_size:
            return too_large(config.max_upload_size)
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except web.HTTPRequestEntityTooLarge:
            return too_large(config.max_upload_size)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return ApiError(500, "internal_error", "Internal server error", "see the server log").response()

    @web.middleware
    async def access(request: web.Request, handler):
        host = request.headers.get("Host", "")
        name, _ = split_host(host, request.scheme)
        if enforce_host and not is_loopback_host(name):
            raise ApiError(403, "forbidden_host", "Forbidden",
                           "this server answers only requests addressed to localhost or a loopback address")
        origin = request.headers.get("Origin")
        if (cors is None and origin is not None and is_loopback_host(name)
                and not origin_matches(origin, host, request.scheme)):
            raise ApiError(403, "forbidden_origin", "Forbidden", "cross-origin requests are refused")
        if request.method == "OPTIONS":
            return web.Response(status=200)
        if token is not None and not _public(request):
            given = token_of(request)
            if given is None or not hmac.compare_digest(given.encode(), token.encode()):
                response = ApiError(401, "unauthorized", "Unauthorized",
                                    "send Authorization: Bearer <token> (or ?token= for websockets)").response()
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
        return await handler(request)

    return [*([cors_headers] if cors else []), errors, access, *([compress] if config.compress else [])]


def too_large(limit: int) -> web.Response:
    return ApiError(413, "request_too_large", "Request body too large",
                    f"the limit is {limit} bytes").response()


def _public(request: web.Request) -> bool:
    name = request.match_info.route.name
    return name is not None and name.startswith(PUBLIC) and request.method in ("GET", "HEAD")
