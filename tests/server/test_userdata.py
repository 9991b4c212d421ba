"""User data routes: users, settings and per-user files under user/<user>/ (ComfyUI's shapes), path safety."""
from __future__ import annotations

import json

import pytest


async def test_single_user_settings_persist(make_client, data_dir):
    client = await make_client()
    users = await (await client.get("/api/users")).json()
    assert users == {"storage": "server", "migrated": False}
    assert await (await client.get("/api/settings")).json() == {}
    assert (await client.post("/api/settings", json={"Comfy.A": 1, "Comfy.B": "x"})).status == 200
    assert (await client.post("/api/settings/Comfy.B", json={"nested": [1, 2]})).status == 200
    settings = json.loads((data_dir / "user" / "default" / "comfy.settings.json").read_text())
    assert settings == {"Comfy.A": 1, "Comfy.B": {"nested": [1, 2]}}
    again = await make_client()  # a restart reads the file
    assert await (await again.get("/settings/Comfy.A")).json() == 1
    assert await (await again.get("/settings/Comfy.Missing")).json() is None
    assert (await (await again.get("/users")).json())["migrated"]


async def test_settings_refuse_bad_bodies(client):
    for body in (b"[1, 2]", b"not json"):
        resp = await client.post("/settings", data=body)
        assert resp.status == 400 and (await resp.json())["error"]["type"] in ("invalid_request", "invalid_json")
    assert (await client.post("/settings/x", data=b"{")).status == 400


async def test_userdata_files_as_the_frontend_uses_them(client, data_dir):
    body = b'{"nodes": []}'
    resp = await client.post("/api/userdata/workflows%2Fa.json?overwrite=false&full_info=true", data=body)
    info = await resp.json()
    assert resp.status == 200 and info["path"] == "workflows/a.json" and info["size"] == len(body)
    assert (data_dir / "user" / "default" / "workflows" / "a.json").read_bytes() == body
    assert (await client.post("/api/userdata/workflows%2Fa.json?overwrite=false", data=b"{}")).status == 409
    assert await (await client.post("/api/userdata/workflows%2Fa.json", data=body)).json() == "workflows/a.json"
    got = await client.get("/api/userdata/workflows%2Fa.json")
    assert got.status == 200 and await got.read() == body
    await client.post("/api/userdata/workflows%2Fsub%2Fb.json", data=b"{}")
    listing = await client.get("/api/userdata?dir=workflows&recurse=true&split=false&full_info=true")
    assert sorted(e["path"] for e in await listing.json()) == ["a.json", "sub/b.json"]
    flat = await (await client.get("/userdata?dir=workflows")).json()
    assert flat == ["a.json"]
    split = await (await client.get("/userdata?dir=workflows&recurse=true&split=true")).json()
    assert ["sub/b.json", "sub", "b.json"] in split
    v2 = await (await client.get("/v2/userdata?path=workflows")).json()
    assert [e["type"] for e in v2] == ["directory", "file", "file"] and v2[0]["path"] == "workflows/sub"
    moved = await client.post("/api/userdata/workflows%2Fa.json/move/workflows%2Fc.json?full_info=true")
    assert (await moved.json())["path"] == "workflows/c.json"
    assert (await client.get("/api/userdata/workflows%2Fa.json")).status == 404
    assert (await client.delete("/api/userdata/workflows%2Fc.json")).status == 204
    assert (await client.delete("/api/userdata/workflows%2Fc.json")).status == 404
    assert (await client.get("/userdata?dir=nothing")).status == 404
    assert (await client.get("/userdata")).status == 400


@pytest.mark.parametrize("name", ["..%2F..%2Fsecret.json", "%2Fetc%2Fpasswd", "..%252Fsecret.json",
                                  "sub%2F..%2F..%2Fdefault2%2Fx.json"])
async def test_userdata_paths_stay_in_the_user_folder(client, data_dir, name):
    (data_dir / "secret.json").parent.mkdir(parents=True, exist_ok=True)
    (data_dir / "secret.json").write_text("TOP-SECRET")
    for method in ("GET", "POST", "DELETE"):
        resp = await client.request(method, f"/api/userdata/{name}", data=b"x")
        assert resp.status in (403, 404), (method, name)
        assert "TOP-SECRET" not in await resp.text()
    assert (await client.get(f"/api/userdata?dir={name}")).status in (403, 404)
    assert (data_dir / "secret.json").read_text() == "TOP-SECRET"


async def test_userdata_symlink_out_is_refused(client, data_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (data_dir / "user" / "default").mkdir(parents=True)
    (data_dir / "user" / "default" / "link").symlink_to(outside)
    assert (await client.post("/api/userdata/link%2Fx.json", data=b"x")).status == 403
    assert not (outside / "x.json").exists()


async def test_multi_user(make_client, data_dir):
    client = await make_client(multi_user=True)
    assert await (await client.get("/users")).json() == {"storage": "server", "users": {}}
    alice = await (await client.post("/users", json={"username": "Alice Smith"})).json()
    assert alice.startswith("Alice-Smith_")
    dup = await client.post("/users", json={"username": "Alice Smith"})
    assert dup.status == 400 and await dup.json() == {"error": "Duplicate username."}
    bob = await (await client.post("/users", json={"username": "bob"})).json()
    assert (await (await client.get("/users")).json())["users"] == {alice: "Alice Smith", bob: "bob"}
    await client.post("/settings/Comfy.X", json=1, headers={"Comfy-User": alice})
    await client.post("/userdata/w.json", data=b"alice's", headers={"Comfy-User": alice})
    assert await (await client.get("/settings/Comfy.X", headers={"Comfy-User": bob})).json() is None
    assert (await client.get("/userdata/w.json", headers={"Comfy-User": bob})).status == 404
    assert (await client.get(f"/userdata/..%2F{alice}%2Fw.json", headers={"Comfy-User": bob})).status == 403
    stranger = await client.get("/settings", headers={"Comfy-User": "nobody"})
    assert stranger.status == 401 and (await stranger.json())["error"]["type"] == "unknown_user"
    assert (data_dir / "user" / alice / "w.json").read_bytes() == b"alice's"


async def test_concurrent_setting_updates_lose_nothing(client, data_dir):
    import asyncio

    await asyncio.gather(*(client.post(f"/settings/k{i}", json=i) for i in range(20)))
    assert await (await client.get("/settings")).json() == {f"k{i}": i for i in range(20)}
    leftovers = [p.name for p in (data_dir / "user" / "default").iterdir() if p.name.startswith(".")]
    assert leftovers == []


async def test_a_name_the_file_system_refuses_is_a_client_error(client):
    too_long = "x" * 300 + ".json"
    resp = await client.post(f"/userdata/{too_long}", data=b"{}")
    assert resp.status == 400 and (await resp.json())["error"]["type"] == "invalid_path"
    assert (await client.post("/userdata/a.json", data=b"{}")).status == 200
    resp = await client.post("/userdata/a.json%2Fb.json", data=b"{}")   # a file where a folder should be
    assert resp.status in (400, 409)
