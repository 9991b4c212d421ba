"""A local file server for download tests: plain files, a Hugging Face stand-in, Range requests, cut connections.

- `/files/<name>`: the bytes of `server.files[name]` (Range `bytes=N-` answered with 206); names in `server.cut`
  send their headers and half the bytes, then drop the connection (once each); names in `server.chunked` are sent
  without Content-Length; names in `server.slow` wait that many seconds after each 16 KiB.
- `/<org>/<repo>/resolve/<revision>/<path>`: Hugging Face's resolve endpoint: a 302 to `/files/<path>` on the
  other loopback name (`localhost` ↔ `127.0.0.1`, so a token must not follow), with `X-Linked-Etag` (the sha256,
  or `server.linked_etag` to make it lie) and `X-Linked-Size`.
Every request is logged as (path, headers) in `server.requests`.
"""
from __future__ import annotations

import hashlib
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.chunked: set[str] = set()
        self.slow: dict[str, float] = {}
        self.linked_etag: str | None = None
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, dict(self.headers)))
        resolve = re.fullmatch(r"/[^/]+/[^/]+/resolve/[^/]+/(.+)", self.path)
        if resolve:
            return self._resolve(resolve.group(1))
        name = self.path.removeprefix("/files/")
        if not self.path.startswith("/files/") or name not in self.server.files:
            self.send_error(404)
            return
        self._send(name, self.server.files[name])

    def _resolve(self, name: str) -> None:
        data = self.server.files.get(name)
        if data is None:
            self.send_error(404)
            return
        host = self.headers.get("Host", "")
        other = host.replace("127.0.0.1", "localhost") if "127.0.0.1" in host else host.replace("localhost",
                                                                                              "127.0.0.1")
        self.send_response(302)
        self.send_header("Location", f"http://{other}/files/{name}")
        self.send_header("X-Linked-Etag", f'"{self.server.linked_etag or hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, name: str, data: bytes) -> None:
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if name in self.server.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 4096):
                piece = body[i:i + 4096]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if name in self.server.cut and not match:
            self.server.cut.discard(name)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        pause = self.server.slow.get(name)
        for i in range(0, len(body), 16384 if pause else len(body) or 1):
            self.wfile.write(body[i:i + (16384 if pause else len(body))])
            if pause:
                self.wfile.flush()
                time.sleep(pause)
