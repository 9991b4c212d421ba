"""File routes: /view, /upload/image, /upload/mask — and every way a request could try to leave its folder."""
from __future__ import annotations

import io
import os

import pytest
from aiohttp import FormData
from PIL import Image
from PIL.PngImagePlugin import PngInfo


def png(color=(255, 0, 0, 255), size=(4, 4), mode="RGBA", text=None) -> bytes:
    out = io.BytesIO()
    info = None
    if text:
        info = PngInfo()
        for k, v in text.items():
            info.add_text(k, v)
    Image.new(mode, size, color if mode == "RGBA" else color[:3]).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def form(data: bytes, filename="img.png", **fields) -> FormData:
    f = FormData()
    f.add_field("image", data, filename=filename, content_type="image/png")
    for k, v in fields.items():
        f.add_field(k, v)
    return f


async def raw_upload(client, data: bytes, filename: str | bytes, **fields):
    """Multipart written by hand: the file name goes into the header exactly as given (as browsers send it;
    aiohttp's client would percent-encode it)."""
    boundary = "----latentloomtest"
    name = filename if isinstance(filename, bytes) else filename.encode()
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="'.encode() + name
             + b'"\r\nContent-Type: image/png\r\n\r\n' + data + b"\r\n"]
    for k, v in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    resp = await client.post("/upload/image", data=body,
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return resp.status, await resp.json()


async def upload(client, data, filename="img.png", path="/upload/image", **fields):
    resp = await client.post(path, data=form(data, filename, **fields))
    return resp.status, await resp.json()


async def test_upload_naming_rules(client, data_dir):
    red, blue = png(), png((0, 0, 255, 255))
    assert await upload(client, red) == (200, {"name": "img.png", "subfolder": "", "type": "input"})
    assert await upload(client, red) == (200, {"name": "img.png", "subfolder": "", "type": "input"})  # same bytes
    assert (await upload(client, blue))[1]["name"] == "img (1).png"
    assert (await upload(client, blue))[1]["name"] == "img (1).png"
    assert (await upload(client, png((0, 255, 0, 255))))[1]["name"] == "img (2).png"
    assert (await upload(client, blue, overwrite="true"))[1]["name"] == "img.png"
    assert (data_dir / "input" / "img.png").read_bytes() == blue
    status, body = await upload(client, red, subfolder="a/b", type="temp")
    assert (status, body) == (200, {"name": "img.png", "subfolder": "a/b", "type": "temp"})
    assert (data_dir / "temp" / "a" / "b" / "img.png").read_bytes() == red
    assert not list((data_dir / "input").glob(".upload-*"))  # no temporary files left behind


async def test_upload_refusals(client):
    assert (await upload(client, png(), type="models"))[0] == 400
    resp = await client.post("/upload/image", json={"image": "x"})
    assert resp.status == 400
    f = FormData()
    f.add_field("type", "input")
    f.add_field("image", "not a file")
    assert (await client.post("/upload/image", data=f)).status == 400


@pytest.mark.parametrize("filename, fields", [
    ("../escape.png", {}), ("/etc/escape.png", {}), ("a/b.png", {}), ("a\\\\b.png", {}), (b"\xff.png", {}), ("..", {}),
    ("x\x00.png", {}), ("x\u202e.png", {}), ("img.png", {"subfolder": "../.."}), ("img.png", {"subfolder": "/tmp"}),
    ("img.png", {"subfolder": "ok/../../.."}), ("img.png", {"subfolder": "C:\\win"}),
])
async def test_hostile_upload_paths(client, data_dir, tmp_path, filename, fields):
    status, body = await raw_upload(client, png(), filename, **fields)
    assert status == 400, body
    assert body["error"]["type"] in ("invalid_path", "invalid_request")
    assert {p.name for p in tmp_path.rglob("*.png")} == set()


async def test_upload_through_symlink_out_refused(client, data_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (data_dir / "input").mkdir(parents=True, exist_ok=True)
    os.symlink(outside, data_dir / "input" / "link")
    status, _ = await upload(client, png(), subfolder="link")
    assert status == 400 and list(outside.iterdir()) == []
    os.symlink(outside / "target.png", data_dir / "input" / "evil.png")  # a dangling link pointing out
    status, _ = await upload(client, png(), filename="evil.png", overwrite="1")
    assert status == 400 and list(outside.iterdir()) == []


async def test_view_serves_files(client, data_dir):
    (data_dir / "output" / "sub").mkdir(parents=True)
    data = png(text={"prompt": "{}"})
    (data_dir / "output" / "sub" / "a.png").write_bytes(data)
    (data_dir / "input").mkdir(parents=True, exist_ok=True)
    (data_dir / "input" / "in.png").write_bytes(png((0, 0, 255, 128)))
    resp = await client.get("/view", params={"filename": "a.png", "subfolder": "sub"})
    assert resp.status == 200 and await resp.read() == data
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["Content-Disposition"].startswith('filename="a.png"')
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert (await client.get("/api/view", params={"filename": "in.png [input]"})).status == 200
    assert (await client.get("/view", params={"filename": "in.png", "type": "input"})).status == 200
    assert (await client.get("/view", params={"filename": "in.png"})).status == 404  # not in output
    rgb = await client.get("/view", params={"filename": "in.png", "type": "input", "channel": "rgb"})
    assert Image.open(io.BytesIO(await rgb.read())).mode == "RGB"
    alpha = Image.open(io.BytesIO(await (await client.get(
        "/view", params={"filename": "in.png", "type": "input", "channel": "a"})).read()))
    assert alpha.mode == "RGBA" and alpha.getpixel((0, 0)) == (0, 0, 0, 128)
    jpeg = await client.get("/view", params={"filename": "in.png", "type": "input", "preview": "jpeg;80"})
    assert jpeg.headers["Content-Type"] == "image/jpeg" and Image.open(io.BytesIO(await jpeg.read())).format == "JPEG"
    webp = await client.get("/view", params={"filename": "in.png", "type": "input", "preview": "gif;50"})
    assert webp.headers["Content-Type"] == "image/webp"


async def test_view_never_serves_active_content(client, data_dir):
    (data_dir / "output").mkdir(parents=True, exist_ok=True)
    for name in ("x.html", "x.svg", "x.js"):
        (data_dir / "output" / name).write_text("<script>alert(1)</script>")
        resp = await client.get("/view", params={"filename": name})
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/octet-stream"
        assert "sandbox" in resp.headers["Content-Security-Policy"]


@pytest.mark.parametrize("query, status", [
    ("filename=", 400), ("", 400), ("filename=../secret.txt", 400), ("filename=%2e%2e%2fsecret.txt", 400),
    ("filename=/etc/passwd", 400), ("filename=a%00.png", 400), ("filename=%c0%ae%c0%ae%2fsecret.txt", 400),
    ("filename=..%5csecret.txt", 400), ("filename=a.png&type=models", 400), ("filename=a.png&type=..", 400),
    ("filename=secret.txt&subfolder=..", 403), ("filename=secret.txt&subfolder=%2e%2e", 403),
    ("filename=secret.txt&subfolder=/", 403), ("filename=passwd&subfolder=/etc", 403),
    ("filename=secret.txt&subfolder=a/../..", 403), ("filename=a.png&channel=x", 400),
    ("filename=missing.png", 404), ("filename=sub", 404),
])
async def test_hostile_view_requests(client, data_dir, query, status):
    (data_dir / "output" / "sub").mkdir(parents=True, exist_ok=True)
    (data_dir / "secret.txt").write_text("top secret")
    resp = await client.get("/view?" + query)
    assert resp.status == status
    assert "top secret" not in await resp.text()


async def test_view_symlink_out_refused(client, data_dir, tmp_path):
    (tmp_path / "secret.txt").write_text("top secret")
    (data_dir / "output").mkdir(parents=True, exist_ok=True)
    os.symlink(tmp_path / "secret.txt", data_dir / "output" / "link.txt")
    os.symlink(tmp_path, data_dir / "output" / "dirlink")
    for params in ({"filename": "link.txt"}, {"filename": "secret.txt", "subfolder": "dirlink"}):
        resp = await client.get("/view", params=params)
        assert resp.status == 403 and "top secret" not in await resp.text()
    inside = data_dir / "output" / "real.txt"
    inside.write_text("fine")
    os.symlink(inside, data_dir / "output" / "ok-link.txt")  # a link that stays inside is fine
    assert await (await client.get("/view", params={"filename": "ok-link.txt"})).text() == "fine"


async def test_upload_mask_replaces_alpha_and_keeps_text(client, data_dir):
    (data_dir / "input").mkdir(parents=True, exist_ok=True)
    original = Image.new("RGB", (4, 2), (10, 20, 30))
    buf = io.BytesIO()
    info = PngInfo()
    info.add_text("workflow", '{"a": 1}')
    original.save(buf, format="PNG", pnginfo=info)
    (data_dir / "input" / "photo.png").write_bytes(buf.getvalue())
    mask = Image.new("RGBA", (4, 2), (0, 0, 0, 255))
    mask.putpixel((1, 0), (0, 0, 0, 0))
    mbuf = io.BytesIO()
    mask.save(mbuf, format="PNG")
    ref = '{"filename": "photo.png", "subfolder": "", "type": "input"}'
    status, body = await upload(client, mbuf.getvalue(), filename="clipspace-mask.png", path="/upload/mask",
                                original_ref=ref, subfolder="clipspace")
    assert (status, body) == (200, {"name": "clipspace-mask.png", "subfolder": "clipspace", "type": "input"})
    out = Image.open(data_dir / "input" / "clipspace" / "clipspace-mask.png")
    assert out.mode == "RGBA" and out.text == {"workflow": '{"a": 1}'}
    assert out.getpixel((0, 0)) == (10, 20, 30, 255) and out.getpixel((1, 0)) == (10, 20, 30, 0)


@pytest.mark.parametrize("ref, status", [
    ("not json", 400), ('{"filename": "../x.png"}', 400), ('{"filename": "x.png", "subfolder": "../.."}', 403),
    ('{"filename": "missing.png"}', 404), ('{"filename": "x.png", "type": "models"}', 400),
])
async def test_upload_mask_refusals(client, data_dir, ref, status):
    (data_dir / "input").mkdir(parents=True, exist_ok=True)
    (data_dir / "input" / "x.png").write_bytes(png())
    resp = await client.post("/upload/mask", data=form(png(), "m.png", original_ref=ref))
    assert resp.status == status
