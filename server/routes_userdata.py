"""User data routes (protocol §1.2): users, settings and per-user files, with ComfyUI's shapes, as its frontend
uses them to keep settings and saved workflows on the server (storage in server.userdata).

`{file}` is one URL-encoded path segment (`workflows%2Fa.json`); like ComfyUI, a name that still holds a `%` after
routing is decoded once more. Query flags read as ComfyUI reads them: `recurse`, `full_info` and `split` are true
only when `true`, `overwrite` is false only when `false`. Refusals use our error envelope: 400 bad input,
401 an unknown `Comfy-User` (ComfyUI's answer for settings; its frontend then forgets the user and asks again),
403 a path outside the user's folder, 404 missing, 409 the file exists (or a folder has the name). `POST /users`
answers a duplicate name with ComfyUI's `{"error": "Duplicate username."}`.
"""
from __future__ import annotations

import asyncio
import errno
import mimetypes
from pathlib import Path
from typing import Annotated, Any, Callable, TypeVar
from urllib.parse import unquote

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, Field

from nodes.paths import UnsafePathError
from server.api import ApiError, Route, empty_ok, json_response, parse_json, read_model, read_query
from server.state import USERDATA
from server.userdata import DuplicateUserError, UnknownUserError, UserData, file_info

T = TypeVar("T")
#: a name the file system cannot take (too long, a file where a folder should be, bytes it refuses): the client's
BAD_NAME_ERRNOS = (errno.ENAMETOOLONG, errno.ENOTDIR, errno.EINVAL, errno.EILSEQ)
OnlyTrue = Annotated[bool, BeforeValidator(lambda v: str(v).lower() == "true")]
UnlessFalse = Annotated[bool, BeforeValidator(lambda v: str(v).lower() != "false")]


class UsersResponse(BaseModel):
    storage: str = Field(description="always `server`")
    users: dict[str, str] | None = Field(None, description="multi-user: id → name")
    migrated: bool | None = Field(None, description="single user: whether the user folder exists")


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=256)


class ListQuery(BaseModel):
    dir: str = Field(min_length=1, description="folder below the user's folder, e.g. `workflows`")
    recurse: OnlyTrue = Field(False, description="`true`: include subfolders")
    full_info: OnlyTrue = Field(False, description="`true`: {path, size, modified, created} objects")
    split: OnlyTrue = Field(False, description="`true`: [relative path, part, part, …] lists")


class ListV2Query(BaseModel):
    path: str = Field("", description="folder below the user's folder (empty: the user's folder)")


class WriteQuery(BaseModel):
    overwrite: UnlessFalse = Field(True, description="`false`: 409 when the file exists")
    full_info: OnlyTrue = Field(False, description="`true`: answer {path, size, modified, created}")


class FileInfo(BaseModel):
    path: str
    size: int
    modified: float
    created: float


class EntryV2(BaseModel):
    name: str
    path: str
    type: str = Field(description="`file` or `directory`")
    size: int | None = None
    modified: float | None = None


def _store(request: web.Request) -> tuple[UserData, str]:
    store = request.app[USERDATA]
    try:
        return store, store.user_of(request.headers.get("Comfy-User"))
    except UnknownUserError as exc:
        raise ApiError(401, "unknown_user", "Unknown user",
                       f"no user {exc.args[0]!r}: create one with POST /users and send its id as Comfy-User") from None


async def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking storage call in a thread and map its refusals to HTTP errors."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except UnsafePathError as exc:
        raise ApiError(403, "invalid_path", "Path outside the user folder", str(exc)) from None
    except FileNotFoundError as exc:
        raise ApiError(404, "not_found", "Not found", f"no file {exc.args[0]!r}") from None
    except FileExistsError as exc:
        raise ApiError(409, "file_exists", "File already exists",
                       f"{exc.args[0]!r} exists; pass overwrite=true") from None
    except IsADirectoryError as exc:
        raise ApiError(409, "is_directory", "A folder has this name", f"{exc.args[0]!r} is a folder") from None
    except OSError as exc:
        if exc.errno not in BAD_NAME_ERRNOS:
            raise
        raise ApiError(400, "invalid_path", "Invalid file name", exc.strerror or str(exc)) from None


def _file_param(request: web.Request, name: str = "file") -> str:
    value = request.match_info[name]
    return unquote(value) if "%" in value else value


async def get_users(request: web.Request) -> web.Response:
    if request.app[USERDATA].multi_user:  # asked before any user is chosen
        return json_response({"storage": "server", "users": await asyncio.to_thread(request.app[USERDATA].users)})
    store, user = _store(request)
    exists = await _run(lambda: store.user_root(user).is_dir())
    return json_response({"storage": "server", "migrated": exists})


async def post_users(request: web.Request) -> web.Response:
    body = await read_model(request, NewUser)
    store = request.app[USERDATA]
    try:
        return json_response(await asyncio.to_thread(store.add_user, body.username))
    except DuplicateUserError:
        return json_response({"error": "Duplicate username."}, status=400)
    except ValueError as exc:
        raise ApiError(400, "invalid_request", "Invalid username", str(exc)) from None


async def get_settings(request: web.Request) -> web.Response:
    store, user = _store(request)
    return json_response(await _run(store.settings, user))


async def get_setting(request: web.Request) -> web.Response:
    store, user = _store(request)
    return json_response((await _run(store.settings, user)).get(request.match_info["id"]))


async def post_settings(request: web.Request) -> web.Response:
    store, user = _store(request)
    changes = parse_json(await request.read())
    if not isinstance(changes, dict):
        raise ApiError(400, "invalid_request", "Invalid settings", "the body must be a JSON object of settings")
    await _run(store.update_settings, user, changes)
    return empty_ok()


async def post_setting(request: web.Request) -> web.Response:
    store, user = _store(request)
    value = parse_json(await request.read())
    await _run(store.update_settings, user, {request.match_info["id"]: value})
    return empty_ok()


async def list_userdata(request: web.Request) -> web.Response:
    store, user = _store(request)
    query = read_query(request, ListQuery)
    listed = await _run(store.list_files, user, query.dir, recurse=query.recurse)
    if listed is None:
        raise ApiError(404, "not_found", "Directory not found", f"no folder {query.dir!r}")
    folder, files = listed
    if query.full_info:
        return json_response(await _run(lambda: [file_info(f, folder) for f in files]))
    relative = [f.relative_to(folder).as_posix() for f in files]
    if query.split:
        return json_response([[rel, *rel.split("/")] for rel in relative])
    return json_response(relative)


async def list_userdata_v2(request: web.Request) -> web.Response:
    store, user = _store(request)
    path = read_query(request, ListV2Query).path
    entries = await _run(store.list_v2, user, unquote(path))
    if entries is None:
        raise ApiError(404, "not_found", "Requested path not found", f"no folder {path!r}")
    return json_response(entries)


async def get_userdata(request: web.Request) -> web.StreamResponse:
    store, user = _store(request)
    path = await _run(store.path, user, _file_param(request))
    if not path.is_file():
        raise ApiError(404, "not_found", "Not found", f"no file {_file_param(request)!r}")
    return _file_response(path)


def _file_response(path: Path) -> web.FileResponse:
    # `sandbox`: a stored HTML or SVG file opened as a page runs no script on this origin
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
               "Content-Security-Policy": "sandbox"}
    ctype = mimetypes.guess_type(path.name)[0]
    if ctype:
        headers["Content-Type"] = ctype
    return web.FileResponse(path, headers=headers)


async def _saved(store: UserData, user: str, path: Path, full_info: bool) -> web.Response:
    root = store.user_root(user)
    if full_info:
        return json_response(await _run(file_info, path, root))
    return json_response(path.relative_to(root).as_posix())


async def post_userdata(request: web.Request) -> web.Response:
    store, user = _store(request)
    query = read_query(request, WriteQuery)
    data = await request.read()
    path = await _run(store.write, user, _file_param(request), data, overwrite=query.overwrite)
    return await _saved(store, user, path, query.full_info)


async def delete_userdata(request: web.Request) -> web.Response:
    store, user = _store(request)
    path = await _run(store.path, user, _file_param(request))
    if not path.is_file():
        raise ApiError(404, "not_found", "Not found", f"no file {_file_param(request)!r}")
    await _run(path.unlink)
    return web.Response(status=204)


async def move_userdata(request: web.Request) -> web.Response:
    store, user = _store(request)
    query = read_query(request, WriteQuery)
    path = await _run(store.move, user, _file_param(request), _file_param(request, "dest"),
                      overwrite=query.overwrite)
    return await _saved(store, user, path, query.full_info)


REFUSED = {400: ("bad input", None), 401: ("unknown Comfy-User", None), 403: ("path outside the user folder", None)}
ROUTES = [
    Route("GET", "/users", get_users, "The user list (multi-user) or whether the user folder exists", "users",
          responses={200: ("users", UsersResponse)}),
    Route("POST", "/users", post_users, "Create a user; answers its id", "users", body=NewUser,
          responses={200: ("the new user id", str), 400: ("empty or duplicate name", None)}),
    Route("GET", "/settings", get_settings, "The user's settings (comfy.settings.json)", "users",
          responses={200: ("settings", dict[str, Any]), **REFUSED}),
    Route("GET", "/settings/{id}", get_setting, "One setting's value (null when unset)", "users",
          responses={200: ("the value", Any), **REFUSED}),
    Route("POST", "/settings", post_settings, "Merge a JSON object into the user's settings", "users",
          responses={200: ("saved", None), **REFUSED}),
    Route("POST", "/settings/{id}", post_setting, "Set one setting to the JSON body", "users",
          responses={200: ("saved", None), **REFUSED}),
    Route("GET", "/userdata", list_userdata, "Files of a folder of the user's data", "users", query=ListQuery,
          responses={200: ("paths, FileInfo objects or split paths", list[str] | list[FileInfo] | list[list[str]]),
                     404: ("no such folder", None), **REFUSED}),
    Route("GET", "/v2/userdata", list_userdata_v2, "Files and folders below a folder of the user's data", "users",
          query=ListV2Query, responses={200: ("entries, folders first", list[EntryV2]),
                                        404: ("no such folder", None), **REFUSED}),
    Route("GET", "/userdata/{file}", get_userdata, "A file of the user's data (path URL-encoded)", "users",
          content_type="application/octet-stream",
          responses={200: ("the file", None), 404: ("no such file", None), **REFUSED}),
    Route("POST", "/userdata/{file}", post_userdata, "Store the raw body as a file of the user's data", "users",
          query=WriteQuery, responses={200: ("the relative path, or FileInfo", str | FileInfo),
                                       409: ("exists and overwrite=false", None), **REFUSED}),
    Route("DELETE", "/userdata/{file}", delete_userdata, "Delete a file of the user's data", "users",
          responses={204: ("deleted", None), 404: ("no such file", None), **REFUSED}),
    Route("POST", "/userdata/{file}/move/{dest}", move_userdata, "Rename a file of the user's data", "users",
          query=WriteQuery, responses={200: ("the new relative path, or FileInfo", str | FileInfo),
                                       404: ("no such file", None), 409: ("exists and overwrite=false", None),
                                       **REFUSED}),
]
