"""Access control through traversal (bearer tokens, ACLs), If-Match policy, and CORS."""

import hashlib

import pytest
import webtest

from api.security import parse_tokens
from tests.support import (
    HASHED_WRITER,
    READER,
    WRITER,
    assert_problem,
    make_app,
    race_increments,
)

NEW_ROW = {"name": "secured"}


def test_writes_need_a_token(http):
    response = http.post("/mytable/", json=NEW_ROW)
    assert assert_problem(response, 401)["code"] == "PGRST302"  # PostgREST's: no token at all
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong-secret", "Basic d3JpdGVyLXNlY3JldA==", "Bearer", "bearer writer-secretx"],
)
def test_a_bad_token_is_401(http, authorization):
    response = http.post("/mytable/", json=NEW_ROW, headers={"Authorization": authorization})
    assert assert_problem(response, 401)["code"] == "PGRST301"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_token_without_the_permission_is_403(http):
    assert_problem(http.post("/mytable/", json=NEW_ROW, headers=READER), 403)
    assert_problem(http.delete("/mytable/1", headers=READER), 403)


def test_writer_and_hashed_tokens_may_write(http):
    assert http.post("/mytable/", json=NEW_ROW, headers=WRITER).status_code == 201
    assert http.post("/mytable/", json=NEW_ROW, headers=HASHED_WRITER).status_code == 201


def test_reads_are_open_by_default(http):
    assert http.get("/mytable/1").status_code == 200


def test_a_setting_makes_reads_need_a_token(database_url):
    settings = {"api.tokens": "r:read w:write", "api.read_requires_token": "true"}
    app = webtest.TestApp(make_app(database_url, **settings))
    try:
        assert app.get("/mytable/1", status=401).content_type == "application/problem+json"
        app.get("/mytable/1", headers={"Authorization": "Bearer r"}, status=200)
        # A token grants what it names: write alone does not read.
        app.get("/mytable/1", headers={"Authorization": "Bearer w"}, status=403)
        # A key no row has is refused alike: which keys exist is not told.
        assert app.get("/mytable/999999", status=401).content_type == "application/problem+json"
        app.get("/mytable/999999", headers={"Authorization": "Bearer w"}, status=403)
        app.get("/mytable/999999", headers={"Authorization": "Bearer r"}, status=404)
        app.get("/__lbheartbeat__", status=200)  # health stays open
    finally:
        app.app.close()


def test_a_setting_requires_if_match_on_writes(database_url):
    app = webtest.TestApp(
        make_app(database_url, **{"api.tokens": "w:read,write", "api.require_if_match": "true"})
    )
    auth = {"Authorization": "Bearer w"}
    try:
        created = app.post_json("/mytable/", {"name": "needs if-match"}, headers=auth, status=201)
        url = created.headers["Location"]
        response = app.patch_json(url, {"name": "x"}, headers=auth, status=428)
        assert response.content_type == "application/problem+json"
        app.patch_json(url, {"name": "x"}, headers={**auth, "If-Match": '"1"'}, status=200)
    finally:
        app.app.close()


def test_token_entries_are_parsed_strictly():
    digest = hashlib.sha256(b"s").hexdigest()
    assert parse_tokens(f"a:read b:read,write sha256:{digest}:write") == (
        (hashlib.sha256(b"a").digest(), frozenset({"read"})),
        (hashlib.sha256(b"b").digest(), frozenset({"read", "write"})),
        (bytes.fromhex(digest), frozenset({"write"})),
    )
    for bad in ("nopermission", "a:", "a:admin", ":read", "sha256:abcd:read"):
        with pytest.raises(ValueError):
            parse_tokens(bad)


def test_cors_is_off_by_default(http):
    response = http.get("/mytable/1", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_from_settings(database_url):
    app = webtest.TestApp(make_app(database_url, **{"api.cors_origins": "https://app.example"}))
    try:
        preflight = app.options(
            "/mytable/1",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "PATCH",
                # supabase-js's own headers, and one that is no header name
                "Access-Control-Request-Headers": "authorization, if-match, apikey,"
                "x-client-info, bad name",
            },
            status=204,
        )
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]
        allowed = preflight.headers["Access-Control-Allow-Headers"].split(", ")
        assert {"If-Match", "apikey", "x-client-info"} <= set(allowed)
        assert "bad name" not in allowed
        app.options(
            "/mytable/1",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
            status=403,
        )
        simple = app.get("/mytable/1", headers={"Origin": "https://app.example"})
        assert simple.headers["Access-Control-Allow-Origin"] == "https://app.example"
        exposed = simple.headers["Access-Control-Expose-Headers"].split(", ")
        assert {"ETag", "Content-Range", "Location"} <= set(exposed)
        missing = app.get("/mytable/0", headers={"Origin": "https://app.example"}, status=404)
        assert missing.headers["Access-Control-Allow-Origin"] == "https://app.example"
    finally:
        app.app.close()


@pytest.mark.parametrize("origin", ["https://any.example", "null"])
def test_cors_open_to_every_origin_answers_star_and_never_echoes(database_url, origin):
    app = webtest.TestApp(make_app(database_url, **{"api.cors_origins": "*"}))
    try:
        headers = {"Origin": origin, "Access-Control-Request-Method": "GET"}
        preflight = app.options("/mytable/1", headers=headers, status=204)
        simple = app.get("/mytable/1", headers={"Origin": origin})
        for response in (preflight, simple):
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            assert "Access-Control-Allow-Credentials" not in response.headers
        assert "Origin" not in simple.headers.get("Vary", "")
    finally:
        app.app.close()


# (collection, the body that creates a counter, where its count is, the body that sets it)
COUNTERS = {
    "mytable": (
        {"name": "counter", "data": {"n": 0}},
        ("data", "n"),
        lambda n: {"data": {"n": n}},
    ),
    # no version column: a content ETag, checked under the row lock
    "probe_nullable": ({"score": 0}, ("score",), lambda n: {"score": n}),
}


@pytest.mark.parametrize("collection", sorted(COUNTERS))
def test_racing_increments_lose_nothing(http, server, backend, collection):
    """Many clients increment one counter with read, If-Match and retry: none is lost."""
    if backend != "mysql":
        pytest.skip("the race test runs on MariaDB")
    body, path, setting = COUNTERS[collection]
    created = http.post(f"/{collection}/", json=body, headers=WRITER)
    url = created.headers["location"]
    clients, increments = 16, 10

    def count(row):
        for key in path:
            row = row[key]
        return row

    final, conflicts = race_increments(server.url, url, count, setting, clients, increments)
    assert count(final) == clients * increments
    assert conflicts > 0  # the clients really did race
    if collection == "mytable":
        assert final["version"] == 1 + clients * increments


def test_racing_merge_patches_without_if_match_all_land(http, server, backend):
    """Merge patches of one row, each with a key of its own and no If-Match:
    read without a lock, a writer whose version went stale goes again under
    the lock; every one answers 200 and no key is lost."""
    if backend != "mysql":
        pytest.skip("the race test runs on MariaDB")
    import concurrent.futures

    import httpx

    url = http.post("/mytable/", json={"name": "merged", "data": {}}, headers=WRITER).headers[
        "location"
    ]
    headers = {**WRITER, "Content-Type": "application/merge-patch+json"}

    def patch(n):
        with httpx.Client(timeout=30) as client:
            return client.patch(url, json={"data": {f"k{n}": n}}, headers=headers).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(patch, range(32)))
    assert statuses == [200] * 32
    row = http.get(url).json()
    assert row["data"] == {f"k{n}": n for n in range(32)}
    assert row["version"] == 33
