"""Server settings and the exposure rule: who may reach the server, and with what.

Safe by default: the server binds 127.0.0.1 and answers only requests addressed to a loopback name (so a web
page cannot reach it through DNS rebinding) and not sent by a page of another site (`Origin`). Binding any other
address needs a token (`--auth-token` or `LATENTLOOM_AUTH_TOKEN`), sent as `Authorization: Bearer <token>` or,
where a header cannot be set (websockets, `<img src>`), as the `token` query parameter — unless the operator
waives it explicitly with `--no-auth`. A configured token is required on every bind, loopback included.
"""
from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from executor.queue import HISTORY_MAX
from nodes.model_paths import read_extra_model_paths
from nodes.paths import DataPaths, ExtraFolder
from nodes.precision import Precision

log = logging.getLogger(__name__)
AUTH_TOKEN_ENV = "LATENTLOOM_AUTH_TOKEN"
DEFAULT_MAX_UPLOAD = 100 * 1024 * 1024  # ComfyUI's --max-upload-size default (100 MB)
REPO_ROOT = Path(__file__).resolve().parent.parent


class ExposureError(ValueError):
    """Settings that would expose the server without a token."""


class FrontEndError(ValueError):
    """A frontend build that cannot be served (missing folder, package not installed)."""


def front_end_root(args) -> Path | None:
    """The build `serve` puts at `/`: `--front-end-root DIR`, or `--front-end official` (the static folder of the
    installed `comfyui-frontend-package`); None for our own editor."""
    if getattr(args, "front_end_root", None):
        root = Path(args.front_end_root).resolve()
    elif getattr(args, "front_end", "latentloom") == "official":
        try:
            import comfyui_frontend_package
        except ImportError:
            raise FrontEndError("--front-end official needs the comfyui-frontend-package package: "
                                "pip install 'latentloom[frontend]'") from None
        root = Path(comfyui_frontend_package.__file__).resolve().parent / "static"
    else:
        return None
    if not (root / "index.html").is_file():
        raise FrontEndError(f"{root} holds no frontend build (no index.html)")
    return root


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP literals (brackets allowed around IPv6)."""
    host = host.strip().lower().strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_addresses(listen: str) -> list[str]:
    """`--listen` may name several addresses separated by commas (ComfyUI's form)."""
    return [a.strip() for a in listen.split(",") if a.strip()] or ["127.0.0.1"]


@dataclass
class ServerConfig:
    """Everything `create_app` needs; `from_args` maps the `serve` command line onto it."""

    data_dir: Path | None = None
    listen: str = "127.0.0.1"
    port: int = 8188
    preview: bool = False  # live JPEG previews while sampling (off by default, as in ComfyUI)
    preview_size: int = 512
    auth_token: str | None = None
    no_auth: bool = False
    max_upload_size: int = DEFAULT_MAX_UPLOAD  # bytes; bigger request bodies get 413
    interrupted_prompts: Literal["requeue", "fail"] = "requeue"  # what a restart does with a prompt that was running
    history_max: int = HISTORY_MAX
    shutdown_grace: float = 5.0  # seconds a running prompt may take to finish on shutdown before it is re-queued
    cache_bytes: int | None = None  # the executor's memory cache budget (None: the executor's default)
    disk_cache_bytes: int = 0  # --disk-cache GB: outputs also kept under <data>/cache/outputs (0: off)
    web_root: Path = REPO_ROOT / "web"
    front_end_root: Path | None = None  # --front-end-root / --front-end official: this build at /, ours at /latentloom/
    wipe_temp: bool = True  # ComfyUI empties temp/ at start (previews written by PreviewImage)
    allow_pickle: bool = False  # loaders may unpickle .ckpt/.pt model files (--allow-pickle)
    plugins: bool = True  # load custom_nodes/ and installed entry-point plugins (--disable-plugins: none)
    cors_origin: str | None = None  # --enable-cors-header [ORIGIN]: CORS headers instead of the origin check
    compress: bool = False  # --enable-compress-response-body: gzip JSON and text responses
    ray_address: str | None = None  # --ray ADDRESS ("local" starts Ray here): run prompts on Ray worker actors
    ray_workers: int | None = None  # --ray-workers N (default: one per GPU of the cluster)
    ray_worker_data_dir: str | None = None  # --ray-worker-data-dir TEMPLATE, "{worker}" → w0, w1, …
    allow_model_pull: bool = False  # --allow-model-pull: POST /models/pull beyond loopback (with a token)
    multi_user: bool = False  # --multi-user: user data per `Comfy-User` header instead of one `default` user
    extra_models: dict[str, list[ExtraFolder]] = field(default_factory=dict)  # --extra-model-paths FILE
    precision: Precision = field(default_factory=Precision)  # --precision and the per-model dtype flags
    compile: str | None = None  # --compile: the torch.compile backend for UNets and VAE decoding (None: eager)

    def data_paths(self) -> DataPaths:
        return DataPaths(self.data_dir, self.extra_models)

    @property
    def loopback_only(self) -> bool:
        return all(is_loopback_host(a) for a in listen_addresses(self.listen))

    def check_exposure(self) -> None:
        """Refuse to serve beyond loopback without a token unless waived."""
        if self.auth_token is not None and not self.auth_token.strip():
            raise ExposureError("the auth token is empty")
        if not self.loopback_only and self.auth_token is None and not self.no_auth:
            raise ExposureError(
                f"listening on {self.listen} needs a token: pass --auth-token TOKEN or set {AUTH_TOKEN_ENV} "
                "(or --no-auth to serve without one, which lets anyone who can reach the port run workflows "
                "and read your outputs)")

    @classmethod
    def from_args(cls, args) -> ServerConfig:
        token = args.auth_token if getattr(args, "auth_token", None) else os.environ.get(AUTH_TOKEN_ENV) or None
        return cls(
            data_dir=Path(args.data_dir) if getattr(args, "data_dir", None) else None,
            listen=args.listen, port=args.port, preview=bool(getattr(args, "preview", False)),
            auth_token=token, no_auth=bool(getattr(args, "no_auth", False)),
            max_upload_size=int(getattr(args, "max_upload_size", DEFAULT_MAX_UPLOAD / 2**20) * 2**20),
            interrupted_prompts=getattr(args, "interrupted_prompts", "requeue"),
            preview_size=int(getattr(args, "preview_size", 512)),
            plugins=not getattr(args, "disable_plugins", False),
            allow_pickle=bool(getattr(args, "allow_pickle", False)),
            disk_cache_bytes=int(getattr(args, "disk_cache", 0.0) * 2**30),
            cors_origin=getattr(args, "enable_cors_header", None),
            compress=bool(getattr(args, "enable_compress_response_body", False)),
            ray_address=getattr(args, "ray", None),
            ray_workers=getattr(args, "ray_workers", None),
            ray_worker_data_dir=getattr(args, "ray_worker_data_dir", None),
            allow_model_pull=bool(getattr(args, "allow_model_pull", False)),
            front_end_root=front_end_root(args),
            multi_user=bool(getattr(args, "multi_user", False)),
            extra_models=extra_models(getattr(args, "extra_model_paths", None)),
            precision=Precision.from_args(args), compile=getattr(args, "compile", None),
        )


def extra_models(file: Path | None) -> dict[str, list[ExtraFolder]]:
    """The folders an `extra_model_paths.yaml` adds (none without one); raises `ModelPathsError`."""
    if file is None:
        return {}
    extra = read_extra_model_paths(Path(file))
    for note in extra.notes:
        log.warning("%s: %s", file, note)
    return extra.folders
