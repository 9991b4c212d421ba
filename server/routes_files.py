"""File routes: `GET /view`, `POST /upload/image`, `POST /upload/mask` (protocol §1.7).

No request leaves its folder: names and subfolders are refused when empty where a name is needed, absolute,
containing `..`, NUL or any other control/format character, or U+FFFD (what undecodable percent-escapes become);
the final path is resolved (symlinks included) and must still be inside the input/output/temp folder. A bad file
name is 400, a subfolder leaving its folder 403 (ComfyUI's codes), a missing file 404. Files are served with
`nosniff`, and types a browser would execute (HTML, JS, CSS, SVG) as `application/octet-stream`.
Image work (re-encoding, mask composition) runs in a thread, off the event loop.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import mimetypes
import os
import unicodedata
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import FileField

from nodes.paths import DataPaths, UnsafePathError, atomic_write
from server import schemas as s
from server.api import ApiError, Route, json_response, read_query
from server.state import ENV

FOLDERS = ("output", "input", "temp")
EXECUTABLE_TYPES = {"text/html", "application/javascript", "text/javascript", "text/css", "image/svg+xml",
                    "application/xhtml+xml", "text/xml", "application/xml"}


def check_name(value: str, what: str, status: int = 400) -> str:
    """Refuse names a path must never contain (see the module's rules)."""
    bad = next((c for c in value if c == "\ufffd" or unicodedata.category(c).startswith("C")), None)
    if bad is not None:
        raise ApiError(status, "invalid_path", f"Invalid {what}", f"{what} contains the character {bad!r}")
    parts = value.replace("\\", "/").split("/")
    if value.startswith(("/", "\\")) or os.path.isabs(value) or ".." in parts or (len(value) > 1 and value[1] == ":"):
        raise ApiError(status, "invalid_path", f"Invalid {what}", f"{what} must stay inside its folder")
    return value


def folder_of(paths: DataPaths, kind: str) -> Path:
    if kind not in FOLDERS:
        raise ApiError(400, "invalid_type", "Invalid type", f"type must be one of {', '.join(FOLDERS)}")
    return getattr(paths, kind)


def safe_path(paths: DataPaths, kind: str, subfolder: str, name: str) -> Path:
    base = folder_of(paths, kind)
    check_name(subfolder, "subfolder", status=403)
    try:
        return paths.resolve(base, name, subfolder)
    except UnsafePathError as exc:
        raise ApiError(403, "invalid_path", "Path outside its folder", str(exc)) from None


def split_annotation(filename: str, kind: str) -> tuple[str, str]:
    """`"a.png [input]"` selects the folder, as in ComfyUI."""
    for folder in FOLDERS:
        suffix = f" [{folder}]"
        if filename.endswith(suffix):
            return filename[: -len(suffix)], folder
    return filename, kind


def content_disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace("\\", "_").replace('"', "_")
    return f"filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


async def view(request: web.Request) -> web.StreamResponse:
    query = read_query(request, s.ViewQuery)
    paths = request.app[ENV].paths
    filename, kind = split_annotation(query.filename, query.type)
    if not filename:
        raise ApiError(400, "invalid_path", "Invalid filename", "filename is empty")
    check_name(filename, "filename")
    name = os.path.basename(filename)
    path = safe_path(paths, kind, query.subfolder, name)
    if not path.is_file():
        raise web.HTTPNotFound(text=f"{name} not found")
    headers = {"Content-Disposition": content_disposition(name), "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "default-src 'none'; sandbox"}
    if query.preview is None and query.channel == "rgba":
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        headers["Content-Type"] = "application/octet-stream" if ctype in EXECUTABLE_TYPES else ctype
        return web.FileResponse(path, headers=headers)
    try:
        data, ctype = await asyncio.to_thread(reencode, path, query.preview, query.channel)
    except OSError as exc:  # not an image PIL can read
        raise ApiError(400, "invalid_image", "Not an image", str(exc)) from None
    headers["Content-Type"] = ctype
    return web.Response(body=data, headers=headers)


def reencode(path: Path, preview: str | None, channel: str) -> tuple[bytes, str]:
    """`preview=fmt;quality` and `channel=rgb|a` (ComfyUI's /view options)."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        if channel == "rgb":
            img = img.convert("RGB")
        elif channel == "a":
            alpha = img.getchannel("A") if "A" in img.getbands() else Image.new("L", img.size, 255)
            img = Image.new("RGBA", img.size, (0, 0, 0, 0))
            img.putalpha(alpha)
        out = io.BytesIO()
        if preview is None:
            img.save(out, format="PNG")
            return out.getvalue(), "image/png"
        fmt, _, quality = preview.partition(";")
        fmt = "jpeg" if fmt == "jpeg" and channel != "a" else "webp"
        q = int(quality) if quality.isdigit() and 1 <= int(quality) <= 100 else 90
        img = img.convert("RGB") if fmt == "jpeg" else img
        img.save(out, format=fmt.upper(), quality=q)
        return out.getvalue(), f"image/{fmt}"


async def read_upload(request: web.Request) -> tuple[FileField, str, str, bool, dict]:
    """The multipart fields shared by both upload routes."""
    if not request.content_type.startswith("multipart/"):
        raise ApiError(400, "invalid_request", "Invalid request", "send multipart/form-data with an 'image' part")
    try:
        form = await request.post()
    except (ValueError, HttpProcessingError) as exc:
        raise ApiError(400, "invalid_request", "Invalid request", f"unreadable form: {exc}") from None
    image = form.get("image")
    if not isinstance(image, FileField) or not image.filename:
        raise ApiError(400, "invalid_request", "Invalid request", "an 'image' file part is required")
    kind = str(form.get("type") or "input")
    subfolder = str(form.get("subfolder") or "")
    overwrite = str(form.get("overwrite") or "").lower() in ("true", "1")
    return image, kind, subfolder, overwrite, form


def target_path(paths: DataPaths, kind: str, subfolder: str, filename: str) -> Path:
    check_name(filename, "filename")
    if "/" in filename or "\\" in filename or filename in (".", ""):
        raise ApiError(400, "invalid_path", "Invalid filename", "the file name may not contain a folder")
    folder_of(paths, kind)
    check_name(subfolder, "subfolder")
    try:
        return paths.resolve(getattr(paths, kind), filename, subfolder)
    except UnsafePathError as exc:
        raise ApiError(400, "invalid_path", "Path outside its folder", str(exc)) from None


def store_upload(paths: DataPaths, kind: str, subfolder: str, filename: str, data: bytes,
                 overwrite: bool) -> str:
    """Write `data` under a free name (ComfyUI's rule: same content → reuse, else "name (n).ext")."""
    path = target_path(paths, kind, subfolder, filename)
    if not overwrite:
        digest = hashlib.sha256(data).digest()
        stem, ext = os.path.splitext(filename)
        n = 0
        while path.exists():
            if path.is_file() and hashlib.sha256(path.read_bytes()).digest() == digest:
                return path.name
            n += 1
            path = target_path(paths, kind, subfolder, f"{stem} ({n}){ext}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path = target_path(paths, kind, subfolder, path.name)  # again: a folder created above may be a symlink now
    atomic_write(path, data)
    return path.name


async def upload_image(request: web.Request) -> web.Response:
    image, kind, subfolder, overwrite, _ = await read_upload(request)
    paths = request.app[ENV].paths
    data = image.file.read()
    name = await asyncio.to_thread(store_upload, paths, kind, subfolder, image.filename, data, overwrite)
    return json_response({"name": name, "subfolder": subfolder, "type": kind})


def compose_mask(original: Path, mask_bytes: bytes) -> bytes:
    """The original image with its alpha replaced by the uploaded image's alpha; PNG text chunks kept."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    with Image.open(original) as src, Image.open(io.BytesIO(mask_bytes)) as mask:
        info = PngInfo()
        for key, value in (getattr(src, "text", None) or {}).items():
            info.add_text(key, value)
        out_img = src.convert("RGBA")
        alpha = mask.convert("RGBA").getchannel("A")
        if alpha.size != out_img.size:
            alpha = alpha.resize(out_img.size, Image.Resampling.BILINEAR)
        out_img.putalpha(alpha)
        out = io.BytesIO()
        out_img.save(out, format="PNG", pnginfo=info, compress_level=4)
        return out.getvalue()


async def upload_mask(request: web.Request) -> web.Response:
    image, kind, subfolder, overwrite, form = await read_upload(request)
    paths = request.app[ENV].paths
    try:
        ref = s.FileRef.model_validate(json.loads(str(form.get("original_ref") or "")))
    except ValueError as exc:
        raise ApiError(400, "invalid_request", "Invalid request",
                       f"original_ref must be JSON {{filename, subfolder, type}}: {exc}") from None
    check_name(ref.filename, "original_ref filename")
    original = safe_path(paths, ref.type, ref.subfolder, os.path.basename(ref.filename))
    if not original.is_file():
        raise web.HTTPNotFound(text="original image not found")
    try:
        data = await asyncio.to_thread(compose_mask, original, image.file.read())
    except (OSError, ValueError) as exc:
        raise ApiError(400, "invalid_image", "Not an image", str(exc)) from None
    name = await asyncio.to_thread(store_upload, paths, kind, subfolder, image.filename, data, overwrite)
    return json_response({"name": name, "subfolder": subfolder, "type": kind})


NOT_FOUND = (404, ("no such file", None))
ROUTES = [
    Route("GET", "/view", view, "A file from the output, input or temp folder", "files", query=s.ViewQuery,
          content_type="application/octet-stream",
          responses={200: ("the file (or re-encoded image)", None), 400: ("bad name or type", s.ErrorResponse),
                     403: ("path outside its folder", s.ErrorResponse), 404: NOT_FOUND[1]}),
    Route("POST", "/upload/image", upload_image, "Upload an image to the input (or temp/output) folder", "files",
          form=s.UploadForm, responses={200: ("stored", s.UploadResponse), 400: ("refused", s.ErrorResponse),
                                        413: ("body too large", s.ErrorResponse)}),
    Route("POST", "/upload/mask", upload_mask, "Upload a mask: its alpha replaces the original image's alpha",
          "files", form=s.MaskUploadForm,
          responses={200: ("stored", s.UploadResponse), 400: ("refused", s.ErrorResponse),
                     404: NOT_FOUND[1], 413: ("body too large", s.ErrorResponse)}),
]
