"""Safe by default: cross-origin and DNS-rebinding refusal, tokens, exposure rules, body limits, garbage input."""
from __future__ import annotations

import argparse
import random

import pytest
from aiohttp import WSServerHandshakeError

from nodes.registry import Registry
from server.app import create_app, serve
from server.config import AUTH_TOKEN_ENV, ExposureError, ServerConfig
from tests.server.conftest import chain, queue, wait_history


def host(client) -> str:
    return f"{client.server.host}:{client.server.port}"


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:1", "null", "https://127.0.0.1",
                                    "http://localhost:{port}"])
async def test_cross_origin_browser_requests_refused(client, origin):
    origin = origin.format(port=client.server.port)
    for method, path, kwargs in (("POST", "/prompt", {"json": {"prompt": chain()}}), ("GET", "/object_info", {}),
                                 ("GET", "/api/history", {}), ("GET", "/", {})):
        resp = await client.request(method, path, headers={"Origin": origin}, **kwargs)
        assert resp.status == 403, (origin, path)
        assert (await resp.json())["error"]["type"] == "forbidden_origin"
    with pytest.raises(WSServerHandshakeError) as info:
        await client.ws_connect("/ws", headers={"Origin": origin})
    assert info.value.status == 403
    assert (await client.get("/queue")).status == 200
    assert (await (await client.get("/queue")).json())["queue_pending"] == []  # nothing was queued


async def test_same_origin_allowed(client):
    origin = f"http://{host(client)}"
    resp = await client.post("/prompt", json={"prompt": chain()}, headers={"Origin": origin})
    assert resp.status == 200
    ws = await client.ws_connect("/ws", headers={"Origin": origin})
    assert (await ws.receive_json())["type"] == "status"
    await ws.close()


@pytest.mark.parametrize("host_header", ["evil.example", "evil.example:8188", "192.168.1.5:8188", "[::2]:1"])
async def test_dns_rebinding_refused(client, host_header):
    resp = await client.get("/object_info", headers={"Host": host_header})
    assert resp.status == 403 and (await resp.json())["error"]["type"] == "forbidden_host"


@pytest.mark.parametrize("host_header", ["localhost:8188", "127.0.0.2", "[::1]:8188", "LOCALHOST"])
async def test_loopback_names_accepted(client, host_header):
    assert (await client.get("/prompt", headers={"Host": host_header})).status == 200


async def test_options_answered_empty(client):
    resp = await client.options("/prompt")
    assert resp.status == 200 and await resp.read() == b""


async def test_cors_flag_replaces_the_origin_check(make_client):
    client = await make_client(cors_origin="*")
    resp = await client.post("/prompt", json={"prompt": chain()}, headers={"Origin": "http://evil.example"})
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Access-Control-Allow-Methods"] == "POST, GET, DELETE, PUT, OPTIONS"
    assert resp.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"
    assert "Access-Control-Allow-Credentials" not in resp.headers  # never with origin *
    missing = await client.get("/no/such/route", headers={"Origin": "http://evil.example"})
    assert missing.status == 404 and missing.headers["Access-Control-Allow-Origin"] == "*"
    # the DNS-rebinding check stays
    assert (await client.get("/queue", headers={"Host": "evil.example"})).status == 403


async def test_cors_with_a_token_answers_preflights_and_shows_refusals(make_client):
    client = await make_client(cors_origin="https://app.example", auth_token="s3cret")
    origin = {"Origin": "https://app.example"}
    preflight = await client.options("/prompt", headers={**origin, "Access-Control-Request-Method": "POST"})
    assert preflight.status == 200 and preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"  # a named origin may send cookies
    refused = await client.get("/queue", headers=origin)
    assert refused.status == 401 and refused.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert (await client.get("/queue", headers={**origin, "Authorization": "Bearer s3cret"})).status == 200


async def test_without_the_flag_there_are_no_cors_headers(client):
    resp = await client.get("/queue")
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_compression_flag_gzips_json_only(make_client):
    plain = await make_client()
    resp = await plain.get("/object_info", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in resp.headers
    expected = await resp.json()
    client = await make_client(compress=True)
    resp = await client.get("/object_info", headers={"Accept-Encoding": "gzip"})
    assert resp.headers["Content-Encoding"] == "gzip" and await resp.json() == expected  # aiohttp inflates it
    resp = await client.get("/object_info", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in resp.headers and await resp.json() == expected
    page = await client.get("/", headers={"Accept-Encoding": "gzip"})  # a file: left alone
    assert page.status == 200 and "Content-Encoding" not in page.headers


def test_flags_reach_the_config():
    from main import build_parser

    args = build_parser().parse_args(["serve", "--enable-cors-header", "--enable-compress-response-body"])
    config = ServerConfig.from_args(args)
    assert config.cors_origin == "*" and config.compress
    args = build_parser().parse_args(["serve", "--enable-cors-header", "http://a.example"])
    assert ServerConfig.from_args(args).cors_origin == "http://a.example"
    assert ServerConfig.from_args(build_parser().parse_args(["serve"])).cors_origin is None


async def test_token_required_when_configured(make_client):
    client = await make_client(auth_token="s3cret")
    for headers, params in (({}, {}), ({"Authorization": "Bearer wrong"}, {}), ({}, {"token": "s3cre"}),
                            ({"Authorization": "Basic s3cret"}, {})):
        resp = await client.get("/queue", headers=headers, params=params)
        assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
        assert (await resp.json())["error"]["type"] == "unauthorized"
    resp = await client.post("/prompt", json={"prompt": chain()})
    assert resp.status == 401
    good = {"Authorization": "Bearer s3cret"}
    assert (await client.get("/queue", headers=good)).status == 200
    assert (await client.get("/api/queue", params={"token": "s3cret"})).status == 200
    resp = await client.post("/prompt", json={"prompt": chain()}, headers=good)
    assert resp.status == 200
    with pytest.raises(WSServerHandshakeError) as info:
        await client.ws_connect("/ws")
    assert info.value.status == 401
    ws = await client.ws_connect("/ws", params={"token": "s3cret", "clientId": "t"})
    assert (await ws.receive_json())["data"]["sid"] == "t"
    await ws.close()
    for public in ("/", "/docs", "/openapi.json"):
        assert (await client.get(public)).status == 200, public
    assert (await client.post("/", data=b"x")).status in (401, 405)


async def test_token_server_on_other_hosts(make_client):
    # with a token, the Host check is not needed: a rebinding page cannot know the token
    client = await make_client(auth_token="s3cret")
    resp = await client.get("/queue", headers={"Host": "myserver.lan:8188", "Authorization": "Bearer s3cret"})
    assert resp.status == 200


def test_exposure_rules(tmp_path, monkeypatch):
    with pytest.raises(ExposureError, match="needs a token"):
        create_app(ServerConfig(data_dir=tmp_path, listen="0.0.0.0"), Registry())
    with pytest.raises(ExposureError):
        create_app(ServerConfig(data_dir=tmp_path, listen="127.0.0.1,192.168.0.10"), Registry())
    with pytest.raises(ExposureError, match="empty"):
        create_app(ServerConfig(data_dir=tmp_path, auth_token=" "), Registry())
    create_app(ServerConfig(data_dir=tmp_path, listen="0.0.0.0", auth_token="t"), Registry())
    create_app(ServerConfig(data_dir=tmp_path, listen="0.0.0.0", no_auth=True), Registry())
    create_app(ServerConfig(data_dir=tmp_path, listen="::1,localhost"), Registry())

    args = argparse.Namespace(data_dir=str(tmp_path), listen="0.0.0.0", port=0, preview=False, auth_token=None,
                              no_auth=False)
    monkeypatch.delenv(AUTH_TOKEN_ENV, raising=False)
    assert serve(args) == 2  # refused before anything listens
    monkeypatch.setenv(AUTH_TOKEN_ENV, "from-env")
    assert ServerConfig.from_args(args).auth_token == "from-env"
    args.auth_token = "flag"
    assert ServerConfig.from_args(args).auth_token == "flag"


async def test_body_limit_is_413(make_client):
    client = await make_client(max_upload_size=2000)
    big = {"prompt": chain(), "extra_data": {"pad": "x" * 5000}}
    resp = await client.post("/prompt", json=big)
    assert resp.status == 413 and (await resp.json())["error"]["type"] == "request_too_large"

    async def chunks():
        for _ in range(10):
            yield b" " * 1000

    resp = await client.post("/prompt", data=chunks(), headers={"Content-Type": "application/json"})
    assert resp.status == 413  # no Content-Length: counted while reading
    from aiohttp import FormData

    form = FormData()
    form.add_field("image", b"\0" * 5000, filename="big.png")
    assert (await client.post("/upload/image", data=form)).status == 413
    small = await queue(client, chain())
    await wait_history(client, small["prompt_id"])  # still serving


async def test_features_report_the_limit(make_client):
    client = await make_client(max_upload_size=12345)
    assert await (await client.get("/features")).json() == {"supports_preview_metadata": True,
                                                           "max_upload_size": 12345.0}


async def test_garbage_never_stops_the_server(client):
    rng = random.Random(1234)
    posts = ["/prompt", "/queue", "/history", "/interrupt", "/free", "/upload/image", "/upload/mask"]
    samples = [b"", b"{}", b"null", b"[]", b'"x"', b"1e999", b'{"prompt": []}', b'{"prompt": {"1": 5}}',
               b'{"prompt": {"1": {"class_type": 5}}}', b'{"prompt": {"1": {"class_type": "Show", "inputs": 3}}}',
               b'{"prompt": {"1": {"class_type": "Show", "inputs": {"value": [1, 2, 3]}}}}',
               b'{"prompt": {"1": {"class_type": "Show", "inputs": {"value": ["1", 0]}}}}',
               b'{"delete": "abc"}', b'{"delete": [1, 2]}', b'{"clear": "yes please"}', b'{"prompt_id": 5}',
               b'{"unload_models": []}', b"\x00\x01\x02", "{\"prompt\": \"\u00e9\"}".encode("latin-1")]
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(20)]
    for path in posts:
        for body in samples:
            for ctype in ("application/json", "multipart/form-data; boundary=x", "text/plain"):
                resp = await client.post(path, data=body, headers={"Content-Type": ctype})
                assert resp.status < 500, (path, body, resp.status, await resp.text())
    for path in ("/view?filename=" + "%ff" * 50, "/history?max_items=" + "9" * 5000, "/object_info/" + "x" * 5000,
                 "/models/" + "%00", "/history/" + "%c0"):
        assert (await client.get(path)).status < 500, path
    body = await queue(client, chain())
    assert (await wait_history(client, body["prompt_id"]))["status"]["completed"]
