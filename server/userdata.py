"""Per-user files as ComfyUI keeps them: `user/<user>/` in the data folder (settings in `comfy.settings.json`,
saved workflows in `workflows/`, anything else a frontend stores), and the user list `user/users.json`.

Rules:
- Single-user by default: every request is user `default`. With `--multi-user` (ComfyUI's flag) the user is the
  `Comfy-User` request header and must be one created through `POST /users`; an unknown user is refused (401,
  as ComfyUI's settings routes do; its file routes answer 500).
- A path names a file below the user's folder; absolute paths, `..`, NUL and symlinks out of the folder are
  refused (`UnsafePathError`), so no request reaches another user's files or `users.json`.
- Every write is atomic (a temporary file in the same folder, then a rename): a crash leaves the old file or the
  new one. Temporary files start with a dot and listings skip dot-files.
- Settings updates are read-modify-write under one lock, so concurrent `POST /settings/{id}` lose nothing.
The methods block on the file system; routes call them in a thread.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodes.paths import DataPaths, UnsafePathError, atomic_write

log = logging.getLogger(__name__)
DEFAULT_USER = "default"
SETTINGS_FILE = "comfy.settings.json"
USERS_FILE = "users.json"


class UnknownUserError(KeyError):
    """A `Comfy-User` that was never created (multi-user mode)."""


class DuplicateUserError(ValueError):
    """`POST /users` with a name that exists already."""


def file_info(path: Path, root: Path) -> dict[str, Any]:
    """ComfyUI's FileInfo: `{path, size, modified, created}` with `path` relative to `root`."""
    stat = path.stat()
    return {"path": path.relative_to(root).as_posix(), "size": stat.st_size, "modified": stat.st_mtime,
            "created": stat.st_ctime}


@dataclass
class UserData:
    """The `user/` folder of one data folder."""

    root: Path
    multi_user: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    # users

    def users(self) -> dict[str, str]:
        """id → name; single-user mode has only `default`."""
        if not self.multi_user:
            return {DEFAULT_USER: DEFAULT_USER}
        try:
            data = json.loads((self.root / USERS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def add_user(self, name: str) -> str:
        """A new user id for `name` (ComfyUI's form: the name made safe, `_`, a UUID)."""
        name = name.strip()
        if not name:
            raise ValueError("the username is empty")
        with self._lock:
            users = self.users() if self.multi_user else {}
            if name in users.values():
                raise DuplicateUserError(name)
            user_id = f"{re.sub(r'[^a-zA-Z0-9-_]+', '-', name)}_{uuid.uuid4()}"
            users[user_id] = name
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write(self.root / USERS_FILE, json.dumps(users).encode())
        return user_id

    def user_of(self, header: str | None) -> str:
        """The user a request acts as: `default`, or in multi-user mode its `Comfy-User` header."""
        if not self.multi_user:
            return DEFAULT_USER
        user = header or DEFAULT_USER
        if user not in self.users():
            raise UnknownUserError(user)
        return user

    def user_root(self, user: str) -> Path:
        return DataPaths(self.root).resolve(self.root, user)

    def path(self, user: str, relative: str) -> Path:
        """The file `relative` of `user`; raises UnsafePathError for anything outside the user's folder."""
        root = self.user_root(user)
        target = DataPaths(root).resolve(root, relative)
        if target == root:
            raise UnsafePathError("the path names the user folder itself")
        return target

    # files

    def list_files(self, user: str, directory: str, *, recurse: bool) -> tuple[Path, list[Path]] | None:
        """(folder, files in it) for `GET /userdata`, or None when the folder does not exist."""
        folder = self.path(user, directory)
        if not folder.is_dir():
            return None
        pattern = "**/*" if recurse else "*"
        files = sorted(p for p in folder.glob(pattern)
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        return folder, files

    def list_v2(self, user: str, relative: str) -> list[dict[str, Any]] | None:
        """`GET /v2/userdata`: everything below `relative` (the user folder when empty), directories first."""
        root = self.user_root(user)
        folder = self.path(user, relative) if relative.strip("/") else root
        if not folder.is_dir():
            return None
        dirs, files = [], []
        for path in sorted(folder.rglob("*")):
            if any(part.startswith(".") for part in path.relative_to(folder).parts):
                continue
            entry: dict[str, Any] = {"name": path.name, "path": path.relative_to(root).as_posix()}
            if path.is_dir():
                dirs.append({**entry, "type": "directory"})
            elif path.is_file():
                stat = path.stat()
                files.append({**entry, "type": "file", "size": stat.st_size, "modified": stat.st_mtime})
        return dirs + files

    def write(self, user: str, relative: str, data: bytes, *, overwrite: bool) -> Path:
        """Store `data`; FileExistsError when the file exists and `overwrite` is false, IsADirectoryError when a
        folder has that name."""
        path = self.path(user, relative)
        if path.is_dir():
            raise IsADirectoryError(relative)
        if path.exists() and not overwrite:
            raise FileExistsError(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path = self.path(user, relative)  # again: a folder made above may be a symlink by now
        atomic_write(path, data)
        return path

    def move(self, user: str, source: str, dest: str, *, overwrite: bool) -> Path:
        """Rename a file; FileNotFoundError / FileExistsError / IsADirectoryError as `write`."""
        src, dst = self.path(user, source), self.path(user, dest)
        if not src.is_file():
            raise FileNotFoundError(source)
        if dst.is_dir():
            raise IsADirectoryError(dest)
        if dst.exists() and not overwrite:
            raise FileExistsError(dest)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(src, self.path(user, dest))
        return dst

    # settings

    def settings(self, user: str) -> dict[str, Any]:
        """The user's settings; {} when there are none or the file is unreadable (logged, as ComfyUI does)."""
        path = self.path(user, SETTINGS_FILE)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("the settings file %s is unreadable: %s", path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def update_settings(self, user: str, changes: dict[str, Any]) -> None:
        with self._lock:
            settings = {**self.settings(user), **changes}
            path = self.path(user, SETTINGS_FILE)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(settings, indent=4).encode())
