"""The API describes itself: a valid OpenAPI 3.1 document that the live app keeps to."""

import gzip
import subprocess

import httpx
import pytest
from openapi_spec_validator import validate

from tests.support import BIN, assert_problem
from tests.support.servers import fresh_sqlite_server


def test_the_document_is_valid_openapi_3_1(http):
    document = http.get("/openapi.json").json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert {"/", "/mytable/", "/mytable/{id}", "/__heartbeat__"} <= set(document["paths"])
    row = document["components"]["schemas"]["mytableRow"]
    assert row["properties"]["created_at"] == {
        "type": "string",
        "format": "date-time",
        "readOnly": True,
    }
    create = document["components"]["schemas"]["mytableCreate"]
    assert create["required"] == ["name"]
    assert set(create["properties"]) == {"id", "name", "data"}  # a key may be given
    assert "readOnly" not in create["properties"]["id"]
    patch = document["components"]["schemas"]["mytablePatch"]
    assert set(patch["properties"]) == {"name", "data"}  # but not changed
    operations = document["paths"]["/mytable/{id}"]
    assert {"get", "put", "patch", "delete"} <= set(operations)
    assert "412" in operations["patch"]["responses"]


@pytest.fixture(scope="module")
def schemathesis_server(tmp_path_factory):
    """Its own database: the generated requests write and delete freely."""
    folder = tmp_path_factory.mktemp("schemathesis")
    with fresh_sqlite_server(folder, "writer-secret:read,write", 20) as server:
        yield server


def test_the_document_is_encoded_once_and_names_each_client_s_url(server):
    """It is gzipped from a saved compressor state, its servers spliced in
    per answer: encoding a large schema's document per request was a
    cheap way to busy a worker. The gzip is one valid stream, and the same
    document as the plain answer."""
    raw = {"Accept-Encoding": "identity"}
    with httpx.Client(base_url=server.url) as client:
        plain = client.get("/openapi.json", headers=raw)
        zipped = client.build_request("GET", "/openapi.json", headers={"Accept-Encoding": "gzip"})
        answer = client.send(zipped, stream=True)
        body = b"".join(answer.iter_raw())
        elsewhere = client.get("/openapi.json", headers={**raw, "Host": "api.example:8443"})
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(body) == plain.content
    assert plain.json()["servers"] == [{"url": server.url}]
    assert elsewhere.json()["servers"] == [{"url": "http://api.example:8443"}]
    assert {**elsewhere.json(), "servers": None} == {**plain.json(), "servers": None}


def test_the_root_and_the_document_negotiate_accept(http):
    """As PostgREST's root: the description as JSON or as OpenAPI's own
    media type; the listing as JSON; a 406 for anything else."""
    described = http.get("/openapi.json", headers={"Accept": "application/openapi+json"})
    assert described.headers["content-type"] == "application/openapi+json"
    assert described.json()["openapi"].startswith("3.1")
    assert http.get("/openapi.json").headers["content-type"].startswith("application/json")
    for path in ("/", "/openapi.json"):
        assert http.get(path, headers={"Accept": "application/json, */*"}).status_code == 200
        for accept in ("image/png", "text/csv"):
            refused = http.get(path, headers={"Accept": accept})
            assert assert_problem(refused, 406)["code"] == "PGRST107"


def test_schemathesis_finds_nothing_against_the_live_app(schemathesis_server):
    """Every documented operation, fuzzed and chained (stateful), with every check.

    positive_data_acceptance is left out: it expects 2xx for any request the
    schema allows, but 404, 409 and 412 are the right answers to well-formed
    requests about rows that are gone or have changed.
    """
    result = subprocess.run(
        [
            BIN / "schemathesis",
            "run",
            f"{schemathesis_server.url}/openapi.json",
            "--header",
            "Authorization: Bearer writer-secret",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "40",
            "--workers",
            "1",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:]
