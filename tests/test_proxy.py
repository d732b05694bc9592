"""Behind a reverse proxy: served under a path prefix (root_path), every
link carries it; from a trusted proxy (forwarded_allow_ips), links carry the
client's scheme and host. pserve on a development.ini of its own."""

import os
import pathlib
import subprocess
import sys

import httpx
import pytest

from tests.support import ROOT
from tests.support.servers import free_port, serving

BIN = pathlib.Path(sys.executable).parent
DEV_TOKEN = {"Authorization": "Bearer dev-token"}  # development.ini's


def served(tmp_path, trusted):
    """pserve of development.ini with ``root_path = /api``, on a fresh database."""
    text = (ROOT / "development.ini").read_text()
    text = text.replace(
        "[server:main]", f"[server:main]\nroot_path = /api\nforwarded_allow_ips = {trusted}"
    )
    ini = tmp_path / "proxied.ini"
    ini.write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    subprocess.run([BIN / "alembic", "-c", ini, "upgrade", "head"], env=env, check=True)
    subprocess.run([BIN / "api-seed", ini, "3"], env=env, check=True, capture_output=True)
    port = free_port()
    return serving([BIN / "pserve", ini, f"http_port={port}"], tmp_path, env, port), port


@pytest.fixture
def prefixed(tmp_path):
    server, port = served(tmp_path, "127.0.0.1")
    with server:
        yield f"http://127.0.0.1:{port}"


def test_a_path_prefix_is_stripped_and_every_link_carries_it(prefixed):
    with httpx.Client(base_url=prefixed) as http:
        assert http.get("/api/mytable/2").json()["name"] == "demo 2"
        page = http.get("/api/mytable/", params={"limit": 1})
        assert page.headers["link"].startswith(f"<{prefixed}/api/mytable/?")
        created = http.post("/api/mytable/", json={"name": "behind"}, headers=DEV_TOKEN)
        assert created.headers["location"].startswith(f"{prefixed}/api/mytable/")
        assert http.get(created.headers["location"]).json()["name"] == "behind"
        assert http.get("/api/openapi.json").json()["servers"] == [{"url": f"{prefixed}/api"}]
        hrefs = [c["href"] for c in http.get("/api/").json()["collections"]]
        assert f"{prefixed}/api/mytable/" in hrefs


def test_a_trusted_proxy_gives_the_client_s_scheme_and_host(prefixed):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.org"}
    page = httpx.get(f"{prefixed}/api/mytable/", params={"limit": 1}, headers=forwarded)
    assert page.headers["link"].startswith("<https://api.example.org/api/mytable/?")


def test_an_untrusted_peer_s_forwarded_headers_are_ignored(tmp_path):
    server, port = served(tmp_path, "10.9.8.7")
    with server:
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
        page = httpx.get(f"http://127.0.0.1:{port}/api/mytable/?limit=1", headers=forwarded)
        assert page.headers["link"].startswith(f"<http://127.0.0.1:{port}/api/mytable/?")
