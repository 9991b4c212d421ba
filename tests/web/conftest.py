"""Browser tests of the editor: a real server (the app factory on 127.0.0.1, a free port, in a thread) and Debian's
Chromium driven by Playwright (never a downloaded browser).

The server runs the built-in nodes plus the executor's stub pack (tests/executor/stub_nodes.py: fast arithmetic,
a `Slow` node with step progress, a `Fail` node). Every page blocks requests that leave the loopback interface,
records console errors (each test ends by asserting there were none it did not expect) and leaves a screenshot
under test-artifacts/web/<test>.png.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.web import editor_page

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("LATENTLOOM_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "test-artifacts" / "web"
LITEGRAPH = REPO / "web" / "node_modules" / "@comfyorg" / "litegraph" / "dist" / "litegraph.es.js"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


def _missing_requirement() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install -e '.[test]')"
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing (web/setup.sh --with-browser installs Debian's chromium)"
    if not LITEGRAPH.is_file():
        return "web/node_modules is missing (web/setup.sh runs npm ci)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _missing_requirement()
    if reason is None:
        return
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="package")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("editor-data")


@pytest.fixture(scope="package")
def server_url(data_dir) -> str:
    from nodes.builtin import full_registry
    from nodes.paths import DataPaths
    from server.app import create_app
    from server.background import BackgroundServer
    from server.config import ServerConfig
    from tests.executor import stub_nodes

    # the example plugin (with its web extension) installed the way a user installs one
    shutil.copytree(REPO / "nodes" / "examples" / "example_plugin", data_dir / "custom_nodes" / "example_plugin")
    registry, plugins = full_registry(DataPaths(data_dir), entry_points=False)
    registry.add_module(stub_nodes)
    app = create_app(ServerConfig(data_dir=data_dir, port=0, preview=True), registry, plugins)
    with BackgroundServer(app) as server:
        yield server.url + "/"


@pytest.fixture(scope="package")  # closed with the browser tests: Playwright's loop would block later async tests
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def _block_outside(route) -> None:
    host = urlsplit(route.request.url).hostname or ""
    scheme = urlsplit(route.request.url).scheme
    if scheme in ("data", "blob") or host in LOOPBACK:
        route.continue_()
    else:
        route.abort()


@pytest.fixture
def page(browser, server_url, request):
    """A fresh browser context on the server. Console errors and page errors are collected in
    `page.console_errors`; at the end the test fails on any that do not match a pattern in `page.allowed_errors`
    (tests that provoke an error response declare it there). A screenshot is kept as an artifact."""
    context = browser.new_context(viewport={"width": 1400, "height": 850}, accept_downloads=True)
    context.route("**/*", _block_outside)
    page = context.new_page()
    page.console_errors = []
    page.allowed_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(f"page error: {e}"))
    page.server_url = server_url
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
        unexpected = [e for e in page.console_errors if not any(re.search(p, e) for p in page.allowed_errors)]
        assert not unexpected, f"console errors: {json.dumps(unexpected, indent=2)}"
    finally:
        context.close()


@pytest.fixture
def editor(page):
    """The editor opened on an empty workflow."""
    return editor_page.open_editor(page, {})
