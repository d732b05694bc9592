"""What the API tells of itself, as it runs in production (pserve
production.ini, gunicorn with two workers): a JSON access log line per
request, X-Request-ID, metrics summed over the workers, the version, and
gzip for the clients that take it."""

import gzip
import json
import os
import shutil
import socket
import subprocess
import time

import httpx
import pytest
import webtest

from api.observe import SERVICE
from api.resources import Root
from tests.support import BIN, ROOT, make_app
from tests.support.servers import free_port, serving

TOKEN = "metrics-secret-1"


@pytest.fixture(scope="module")
def production(tmp_path_factory):
    """pserve production.ini, two workers, on a SQLite file of 300 rows; its
    access log (stdout) and the folder of its metrics."""
    folder = tmp_path_factory.mktemp("production")
    shutil.copy(ROOT / "production.ini", folder / "production.ini")
    metrics_dir = folder / "metrics"
    metrics_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{folder}/prod.sqlite",
        GUNICORN_CMD_ARGS="--workers 2",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        API_METRICS_TOKEN=TOKEN,
    )
    ini = folder / "production.ini"
    subprocess.run([BIN / "alembic", "-c", ini, "upgrade", "head"], env=env, check=True)
    subprocess.run([BIN / "api-seed", ini, "300"], env=env, check=True, capture_output=True)
    port = free_port()
    with serving([BIN / "pserve", ini, f"http_port={port}"], folder, env, port) as server:
        yield f"http://127.0.0.1:{port}", server, metrics_dir


def test_each_request_has_an_id_and_a_json_access_log_line(production):
    url, server, _ = production
    mine = httpx.get(f"{url}/mytable/1", headers={"X-Request-ID": "client-chose-this"})
    assert mine.headers["x-request-id"] == "client-chose-this"
    made = httpx.get(f"{url}/mytable/?access_token=hunter2&limit=1")
    made_id = made.headers["x-request-id"]
    assert len(made_id) == 32
    refused = httpx.get(f"{url}/mytable/1", headers={"X-Request-ID": "x" * 500})
    assert refused.headers["x-request-id"] != "x" * 500  # too long: one is made
    lines = _access_log_until(server, made_id)
    entry = lines[made_id]
    assert entry["method"] == "GET" and entry["status"] == made.status_code == 400
    assert entry["path"] == "/mytable/?access_token=[redacted]&limit=1"
    assert entry["bytes"] == len(made.content) and entry["duration_ms"] > 0
    assert "hunter2" not in json.dumps(list(lines.values()))
    assert lines["client-chose-this"]["path"] == "/mytable/1"


def test_a_client_gone_before_its_answer_is_logged_499_not_as_a_server_error(production):
    """nginx's 499: a body cut off by its client is no 5xx on a dashboard."""
    url, server, _ = production
    head = (
        b"POST /mytable/ HTTP/1.1\r\nHost: t\r\nX-Request-ID: gone-mid-body\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"name'
    )
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(head)
        time.sleep(0.2)  # the head is read; then the client goes
    entry = _access_log_until(server, "gone-mid-body")["gone-mid-body"]
    assert (entry["method"], entry["status"], entry["bytes"]) == ("POST", 499, 0)


def _access_log_until(server, request_id):
    """The access log's lines read until ``request_id``'s, by request id."""
    lines = {}
    deadline = time.monotonic() + 10
    while request_id not in lines and time.monotonic() < deadline:
        line = server.stdout.readline()
        if line.startswith("{"):
            entry = json.loads(line)
            lines[entry["request_id"]] = entry
    return lines


def test_metrics_are_summed_over_the_workers_and_need_their_token(production):
    url, _, metrics_dir = production
    for n in range(60):  # a connection each: both workers take some
        assert httpx.get(f"{url}/mytable/{n + 1}").status_code == 200
    assert httpx.get(f"{url}/metrics").status_code == 401
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    served = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('api_requests_total{method="GET",route="/{collection}/{key}"')
        and 'status="200"' in line
    ]
    assert sum(served) >= 60
    # What scanners try makes no series of its own: it is counted as a collection's 404.
    scanned = ["/wp-login.php", "/.env", "/_ignition/execute-solution", "/x.php"]
    for path in scanned:
        assert httpx.get(f"{url}{path}").status_code == 404
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert not [line for line in text.splitlines() if any(p in line for p in scanned)]
    assert 'route="/{collection}",status="404"' in text
    assert "api_request_duration_seconds_bucket" in text
    assert "api_coalesced_batch_size_count" in text
    assert "api_db_connections_in_use" in text
    workers = {path.name.rsplit("_", 1)[1] for path in metrics_dir.glob("counter_*.db")}
    assert len(workers) == 2, workers  # both workers counted, one file each


def test_the_version_and_openapi_say_what_runs(production):
    url, _, _ = production
    version = httpx.get(f"{url}/__version__").json()
    assert version["name"] == "pyramid-postgrest-mysql" and version["version"] == "0.1.0"
    assert version["commit"]
    assert httpx.get(f"{url}/openapi.json").json()["info"]["version"] == version["version"]


def test_large_responses_are_gzipped_for_clients_that_take_it(production):
    url, _, _ = production
    with httpx.Client(base_url=url) as http:  # httpx asks for gzip and decodes it
        plain = http.get("/mytable/", headers={"Accept-Encoding": "identity"})
        page = http.get("/mytable/", headers={"Accept-Encoding": "gzip"})
        assert page.headers["content-encoding"] == "gzip"
        assert "Accept-Encoding" in page.headers["vary"]
        assert page.json() == plain.json() and "content-encoding" not in plain.headers
        small = http.get("/mytable/1", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in small.headers  # too small to be worth it
        raw = httpx.get(
            f"{url}/mytable/",
            headers={"Accept-Encoding": "gzip", "Accept": "application/x-ndjson"},
        )
        assert raw.headers["content-encoding"] == "gzip"
        assert len(raw.text.splitlines()) == 300
    with httpx.stream("GET", f"{url}/mytable/", headers={"Accept-Encoding": "gzip"}) as response:
        body = b"".join(response.iter_raw())
    assert json.loads(gzip.decompress(body)) == plain.json()
    for refused in ("gzip;q=0", "br, gzip; q=0.0", "gzip;q=nonsense"):
        page = httpx.get(f"{url}/mytable/", headers={"Accept-Encoding": refused})
        assert "content-encoding" not in page.headers, refused
        assert page.json() == plain.json()
    weighed = httpx.get(f"{url}/mytable/", headers={"Accept-Encoding": "br;q=1, gzip;q=0.5"})
    assert weighed.headers["content-encoding"] == "gzip"


def test_metrics_can_be_turned_off(tmp_path):
    app = make_app(f"sqlite+aiosqlite:///{tmp_path}/off.sqlite", **{"api.metrics": "false"})
    try:
        webtest.TestApp(app).get("/metrics", status=404)
    finally:
        app.close()


def test_each_path_of_the_api_s_own_is_a_series_of_its_own(tmp_path):
    """observe.SERVICE names every view named on the root, and nothing else."""
    app = make_app(f"sqlite+aiosqlite:///{tmp_path}/named.sqlite")
    try:
        views = app.registry.introspector.get_category("views")
        named = {
            v["introspectable"]["name"] for v in views if v["introspectable"]["context"] is Root
        }
        assert named - {""} == SERVICE
    finally:
        app.close()
