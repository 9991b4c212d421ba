"""Model downloads into the data folder: `main.py models pull`, `reproduce --pull` and `POST /models/pull`.

The rules:

- **Sources** are an https URL, or a Hugging Face file (`org/repo/path/file.safetensors`, or `org/repo` with a
  file name), turned into a URL by huggingface_hub's scheme against its endpoint (`HF_ENDPOINT`), fetched with its
  token (`HF_TOKEN` or a saved login) and refused in its offline mode (`HF_HUB_OFFLINE`). Plain http only to this
  machine (local mirrors, tests). Every redirect is checked the same way, and the token goes only to the
  endpoint's own host.
- **Streamed** into a hidden `.NAME.part` beside its destination (same file system, so the final rename is atomic;
  model listings skip it). A cut connection is resumed with a Range request, up to `retries` times in one pull,
  and by the next pull of the same URL. Refused downloads (too large, wrong size or sha256) delete their part:
  nothing unverified ever carries a model's name.
- **Verified** against the sha256 and size the caller gives, else against what the server states (Hugging Face's
  `X-Linked-Etag`/`X-Linked-Size` for its large files, Content-Length). The sha256 and the source URL go into the
  model-hash cache (`nodes.identity`), so the first use hashes nothing and SaveImage records where a model came
  from.
- **Names** are the caller's or the URL's last path segment, reduced to safe parts (a plain file name with a model
  extension, optionally below sub-folders of the kind's folder); nothing the remote side sends chooses a path.
- Nothing downloaded is loaded or executed here; `.ckpt`/`.pt` files stay behind `--allow-pickle` in the loaders.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urljoin, urlsplit

import requests

from nodes.identity import ModelHashes, hash_file
from nodes.paths import MODEL_EXTENSIONS, MODEL_FOLDERS, DataPaths, UnsafePathError

CHUNK = 1 << 16      # what a cut connection can lose; the rest of the part is kept for resuming
MAX_REDIRECTS = 10
RETRYABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: (bytes so far, total bytes when known)
Progress = Callable[[int, "int | None"], None]


class PullError(Exception):
    """A download that was refused or failed; the message says why and what to do."""


@dataclass(frozen=True)
class Source:
    """Where to fetch from: the URL, the file name it suggests, and the host a Hugging Face token may go to."""

    url: str
    name: str
    token_host: str | None = None


def resolve_source(source: str, file: str | None = None, revision: str | None = None) -> Source:
    """An https URL as it is, or `org/repo[/path]` (+ `file`) as a Hugging Face file URL."""
    if "://" in source:
        if file:
            raise PullError("--file goes with a Hugging Face repository, not with a URL")
        check_url(source)
        return Source(source, unquote(urlsplit(source).path.rsplit("/", 1)[-1]))
    parts = source.strip("/").split("/")
    if len(parts) < 2 or not all(re.fullmatch(r"[\w.-]+", p) for p in parts[:2]):
        raise PullError(f"{source!r} is neither an https URL nor a Hugging Face reference (org/repo/file)")
    path = "/".join(parts[2:])
    if path and file:
        raise PullError("name the file either in SOURCE (org/repo/path/file) or with --file, not both")
    path = path or file
    if not path:
        raise PullError(f"{source!r} names a repository: add the file (org/repo/path/file or --file FILE)")
    from huggingface_hub import constants, hf_hub_url

    if constants.HF_HUB_OFFLINE:
        raise PullError("HF_HUB_OFFLINE is set: Hugging Face downloads are off (unset it to pull)")
    url = hf_hub_url("/".join(parts[:2]), path, revision=revision, endpoint=constants.ENDPOINT)
    check_url(url)
    return Source(url, path.rsplit("/", 1)[-1], token_host=urlsplit(url).netloc)


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return
    raise PullError(f"refusing {url!r}: only https (plain http only to this machine)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def safe_name(name: str) -> str:
    """`name` as safe relative parts ending in a model file name, or PullError."""
    parts = [re.sub(r"[^\w.+-]", "_", p).lstrip(".") for p in name.replace("\\", "/").split("/")]
    parts = [p for p in parts if p]
    if any(len(p.encode()) > 200 for p in parts):
        raise PullError(f"{name!r} has a part longer than 200 bytes: give a shorter --name")
    if not parts or not parts[-1].lower().endswith(MODEL_EXTENSIONS):
        raise PullError(f"{name!r} is not a model file name (one of {', '.join(MODEL_EXTENSIONS)}): give --name")
    return "/".join(parts)


@dataclass(frozen=True)
class Pulled:
    kind: str
    name: str
    path: Path
    sha256: str
    size: int
    existed: bool = False


@dataclass
class _Stated:
    """What the server said about the file: size and sha256 (None when it did not say)."""

    size: int | None = None
    sha256: str | None = None


def pull(paths: DataPaths, hashes: ModelHashes, kind: str, source: Source, *, name: str | None = None,
         sha256: str | None = None, max_bytes: int | None = None, progress: Progress | None = None,
         retries: int = 3, timeout: float = 30.0) -> Pulled:
    """Fetch `source` into `models/<kind>/<name>`, verified; a present file with the right hash is kept."""
    if kind not in MODEL_FOLDERS:
        raise PullError(f"unknown model kind {kind!r} (one of {', '.join(MODEL_FOLDERS)})")
    if sha256 is not None and not SHA256.match(sha256.lower()):
        raise PullError(f"--sha256 must be 64 hex digits, got {sha256!r}")
    want = sha256.lower() if sha256 else None
    filename = safe_name(name or source.name)
    try:
        target = paths.resolve(paths.models(kind), filename)
    except UnsafePathError as exc:
        raise PullError(str(exc)) from None
    if target.exists():
        digest = hashes.sha256(target)
        if want in (None, digest):
            return Pulled(kind, filename, target, digest, target.stat().st_size, existed=True)
        raise PullError(f"{kind}/{filename} exists with other content (sha256 {digest}): remove it or give --name")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.part")
    stated = _download(source, part, max_bytes=max_bytes, progress=progress, retries=retries, timeout=timeout)
    size = part.stat().st_size
    digest = hash_file(part)
    problem = _mismatch(size, digest, want, stated)
    if problem:
        _discard_part(part)
        raise PullError(f"{source.url}: {problem}; nothing was kept")
    os.replace(part, target)
    _meta_file(part).unlink(missing_ok=True)
    hashes.record(target, digest, source=source.url)
    return Pulled(kind, filename, target, digest, size)


def _mismatch(size: int, digest: str, want: str | None, stated: _Stated) -> str | None:
    if stated.size is not None and size != stated.size:
        return f"got {size} bytes, the server stated {stated.size}"
    if want is not None and digest != want:
        return f"sha256 {digest} is not the expected {want}"
    if want is None and stated.sha256 is not None and digest != stated.sha256:
        return f"sha256 {digest} is not the {stated.sha256} the server stated"
    return None


def _download(source: Source, part: Path, *, max_bytes: int | None, progress: Progress | None, retries: int,
              timeout: float) -> _Stated:
    """Stream into `part`, resuming a part left by an earlier pull of the same URL and after cut connections."""
    meta = _meta_file(part)
    if part.exists() and _read_meta(meta) != source.url:
        _discard_part(part)
    meta.write_text(json.dumps({"url": source.url}), encoding="utf-8")
    token = _token(source)
    with requests.Session() as session:
        for attempt in range(retries + 1):
            try:
                return _fetch(session, source, token, part, max_bytes, progress, timeout)
            except RETRYABLE as exc:
                if attempt == retries:
                    raise PullError(f"{source.url}: the connection failed {retries + 1} times ({exc}); run the "
                                    "same pull again to resume") from None
            except PullError:
                _discard_part(part)
                raise
    raise AssertionError("unreachable")


def _fetch(session: requests.Session, source: Source, token: str | None, part: Path, max_bytes: int | None,
           progress: Progress | None, timeout: float) -> _Stated:
    have = part.stat().st_size if part.exists() else 0
    response, stated = _open(session, source, token, {"Range": f"bytes={have}-"} if have else {}, timeout)
    with response:
        if response.status_code == 206 and _range_start(response) == have:
            mode = "ab"
            total = _range_total(response)
        elif response.status_code == 416 and have and have == stated.size:
            return stated          # the part is already whole
        elif response.status_code == 200:
            mode, have = "wb", 0
            total = _int(response.headers.get("Content-Length"))
        else:
            raise PullError(f"{source.url}: HTTP {response.status_code} {response.reason}")
        stated.size = stated.size if stated.size is not None else total
        if max_bytes is not None and stated.size is not None and stated.size > max_bytes:
            raise PullError(f"{source.url}: {stated.size} bytes is over the {max_bytes}-byte limit")
        with open(part, mode) as f:
            for block in response.iter_content(CHUNK):
                f.write(block)
                have += len(block)
                if max_bytes is not None and have > max_bytes:
                    raise PullError(f"{source.url}: more than the {max_bytes}-byte limit")
                if progress is not None:
                    progress(have, stated.size)
    return stated


def _open(session: requests.Session, source: Source, token: str | None, headers: dict[str, str],
          timeout: float) -> tuple[requests.Response, _Stated]:
    """GET following redirects by hand: each target checked, the token only to the source's own host."""
    url, stated = source.url, _Stated()
    for _ in range(MAX_REDIRECTS + 1):
        sent = dict(headers)
        if token and urlsplit(url).netloc == source.token_host:
            sent["Authorization"] = f"Bearer {token}"
        response = session.get(url, headers=sent, stream=True, allow_redirects=False, timeout=timeout)
        _read_stated(response, stated)
        if not response.is_redirect:
            return response, stated
        response.close()
        url = urljoin(url, response.headers["Location"])
        check_url(url)
    raise PullError(f"{source.url}: more than {MAX_REDIRECTS} redirects")


def _read_stated(response: requests.Response, stated: _Stated) -> None:
    """Hugging Face states the sha256 and size of its large files on the resolve response."""
    etag = (response.headers.get("X-Linked-Etag") or "").strip('"').lower()
    if SHA256.match(etag):
        stated.sha256 = etag
    linked = _int(response.headers.get("X-Linked-Size"))
    if linked is not None:
        stated.size = linked


def _token(source: Source) -> str | None:
    if source.token_host is None:
        return None
    from huggingface_hub import get_token

    return get_token()


def _range_start(response: requests.Response) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _range_total(response: requests.Response) -> int | None:
    match = re.match(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _meta_file(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_meta(meta: Path) -> str | None:
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("url")
    except (OSError, ValueError, AttributeError):
        return None


def _discard_part(part: Path) -> None:
    part.unlink(missing_ok=True)
    _meta_file(part).unlink(missing_ok=True)
