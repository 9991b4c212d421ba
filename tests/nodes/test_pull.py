"""Model downloads (`nodes.pull`) against a local file server and Hugging Face stand-in (tests/http_files.py)."""
import hashlib
import os

import pytest

from nodes.identity import ModelHashes, hash_file
from nodes.paths import DataPaths
from nodes.pull import PullError, pull, resolve_source, safe_name
from tests.http_files import FileServer

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def server():
    with FileServer() as srv:
        srv.files["model.safetensors"] = DATA
        yield srv


@pytest.fixture
def paths(tmp_path):
    return DataPaths(tmp_path / "data")


@pytest.fixture
def hashes(paths):
    return ModelHashes(paths.root / "cache" / "model-hashes.json")


def point_hub_at(url, monkeypatch):
    """What HF_ENDPOINT=url and HF_HUB_OFFLINE=0 do when set before huggingface_hub is imported."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub(server, monkeypatch):
    """huggingface_hub pointed at the stand-in, online, with a token."""
    point_hub_at(server.url, monkeypatch)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    return server


def leftovers(paths, kind="checkpoints"):
    return sorted(p.name for p in paths.models(kind).iterdir())


def test_url_pull_streams_verifies_and_records_hash_and_source(server, paths, hashes):
    seen = []
    url = f"{server.url}/files/model.safetensors"
    pulled = pull(paths, hashes, "checkpoints", resolve_source(url), progress=lambda done, total: seen.append(
        (done, total)))
    target = paths.models("checkpoints") / "model.safetensors"
    assert pulled.path == target and target.read_bytes() == DATA and pulled.sha256 == SHA and not pulled.existed
    assert leftovers(paths) == ["model.safetensors"]
    assert seen[-1] == (len(DATA), len(DATA)) and all(t == len(DATA) for _, t in seen)
    # the hash cache knows it without reading it again, and where it came from
    assert ModelHashes(hashes.cache_file).sha256(target) == SHA
    assert ModelHashes(hashes.cache_file).source(target) == url
    # a second pull keeps the file
    again = pull(paths, hashes, "checkpoints", resolve_source(url))
    assert again.existed and len(server.requests) == 1


def test_hugging_face_reference_is_verified_by_its_stated_hash_and_the_token_stays_on_its_host(hub, paths, hashes):
    pulled = pull(paths, hashes, "loras", resolve_source("org/repo/model.safetensors"))
    assert pulled.sha256 == SHA and (paths.models("loras") / "model.safetensors").read_bytes() == DATA
    (resolve_path, resolve_headers), (file_path, file_headers) = hub.requests
    assert resolve_path == "/org/repo/resolve/main/model.safetensors"
    assert resolve_headers.get("Authorization") == "Bearer hf_secret"
    assert file_path == "/files/model.safetensors" and "Authorization" not in file_headers
    same = resolve_source("org/repo", file="model.safetensors", revision="v1")
    assert same.url == f"{hub.url}/org/repo/resolve/v1/model.safetensors"


def test_a_lying_server_hash_leaves_nothing(hub, paths, hashes):
    hub.linked_etag = "0" * 64
    with pytest.raises(PullError, match="not the 0000"):
        pull(paths, hashes, "checkpoints", resolve_source("org/repo/model.safetensors"))
    assert leftovers(paths) == []


def test_expected_sha256_mismatch_leaves_nothing(server, paths, hashes):
    with pytest.raises(PullError, match="is not the expected"):
        pull(paths, hashes, "checkpoints", resolve_source(f"{server.url}/files/model.safetensors"), sha256="a" * 64)
    assert leftovers(paths) == []
    with pytest.raises(PullError, match="64 hex"):
        pull(paths, hashes, "checkpoints", resolve_source(f"{server.url}/files/model.safetensors"), sha256="xyz")


def test_a_cut_connection_resumes_with_a_range_request(server, paths, hashes):
    server.cut.add("model.safetensors")
    pulled = pull(paths, hashes, "checkpoints", resolve_source(f"{server.url}/files/model.safetensors"), sha256=SHA)
    assert pulled.sha256 == SHA and pulled.path.read_bytes() == DATA
    first, second = server.requests
    assert "Range" not in first[1] and second[1]["Range"].startswith("bytes=")
    assert 0 < int(second[1]["Range"][6:-1]) <= len(DATA) // 2      # what arrived before the cut is kept


def test_the_next_pull_resumes_a_part_left_by_a_failed_one(server, paths, hashes):
    server.cut.add("model.safetensors")
    url = f"{server.url}/files/model.safetensors"
    with pytest.raises(PullError, match="run the same pull again to resume"):
        pull(paths, hashes, "checkpoints", resolve_source(url), retries=0)
    assert paths.model_files("checkpoints") == []          # the part is hidden from listings
    kept = (paths.models("checkpoints") / ".model.safetensors.part").stat().st_size
    assert 0 < kept <= len(DATA) // 2
    pulled = pull(paths, hashes, "checkpoints", resolve_source(url))
    assert pulled.path.read_bytes() == DATA and server.requests[-1][1]["Range"] == f"bytes={kept}-"
    assert leftovers(paths) == ["model.safetensors"]


def test_oversized_downloads_are_refused_with_or_without_a_stated_size(server, paths, hashes):
    with pytest.raises(PullError, match="over the 1000-byte limit"):
        pull(paths, hashes, "checkpoints", resolve_source(f"{server.url}/files/model.safetensors"), max_bytes=1000)
    server.chunked.add("model.safetensors")
    with pytest.raises(PullError, match="more than the 100000-byte limit"):
        pull(paths, hashes, "checkpoints", resolve_source(f"{server.url}/files/model.safetensors"),
             max_bytes=100_000)
    assert leftovers(paths) == []


def test_only_https_or_loopback_http(server, paths, hashes):
    for url in ("http://example.com/model.safetensors", "ftp://127.0.0.1/x.safetensors",
                "file:///etc/passwd", "http://10.0.0.1/model.safetensors"):
        with pytest.raises(PullError, match="only https"):
            resolve_source(url)
    assert resolve_source("https://example.com/a/b/model.safetensors").name == "model.safetensors"
    assert resolve_source("http://localhost:1/m.safetensors").name == "m.safetensors"
    assert len(server.requests) == 0


def test_a_redirect_to_plain_http_elsewhere_is_refused(server, paths, hashes, monkeypatch):
    from tests import http_files

    def redirect_away(handler, name):
        handler.send_response(302)
        handler.send_header("Location", "http://example.com/model.safetensors")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    monkeypatch.setattr(http_files._Handler, "_resolve", redirect_away)
    point_hub_at(server.url, monkeypatch)
    with pytest.raises(PullError, match="only https"):
        pull(paths, hashes, "checkpoints", resolve_source("org/repo/model.safetensors"))
    assert leftovers(paths) == []


def test_names_stay_in_their_folder(server, paths, hashes):
    assert safe_name("../../etc/evil.safetensors") == "etc/evil.safetensors"
    assert safe_name("..\\a b\\.hidden.ckpt") == "a_b/hidden.ckpt"
    with pytest.raises(PullError, match="not a model file name"):
        safe_name("model.exe")
    with pytest.raises(PullError, match="longer than 200 bytes"):
        safe_name("x" * 300 + ".safetensors")
    server.files["..%2F..%2Fevil.safetensors"] = DATA
    pulled = pull(paths, hashes, "checkpoints", resolve_source(f"{server.url}/files/..%2F..%2Fevil.safetensors"))
    assert pulled.path == paths.models("checkpoints") / "evil.safetensors"
    pulled = pull(paths, hashes, "vae", resolve_source(f"{server.url}/files/model.safetensors"),
                  name="/sub/../mine.safetensors")
    assert pulled.path == paths.models("vae") / "sub" / "mine.safetensors"


def test_a_different_file_of_the_same_name_is_not_replaced(server, paths, hashes):
    target = paths.models("checkpoints") / "model.safetensors"
    target.write_bytes(b"mine")
    with pytest.raises(PullError, match="exists with other content"):
        pull(paths, hashes, "checkpoints", resolve_source(f"{server.url}/files/model.safetensors"), sha256=SHA)
    assert target.read_bytes() == b"mine" and hash_file(target) != SHA


def test_hugging_face_offline_mode_and_bad_references(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PullError, match="HF_HUB_OFFLINE"):
        resolve_source("org/repo/model.safetensors")
    for bad, message in (("org", "neither"), ("org/repo", "add the file"), ("https://x.org/m.safetensors", "--file")):
        with pytest.raises(PullError, match=message):
            resolve_source(bad, file="m.safetensors" if bad.startswith("https") else None)
