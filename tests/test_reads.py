"""Reading through the resource tree over real HTTP, on every backend."""

import orjson
import pytest

from tests.conftest import SEEDED_ROWS

PROBLEM = "application/problem+json"


def assert_problem(response, status):
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert "Traceback" not in response.text
    return body


def test_root_lists_the_collections_with_links(http, server):
    response = http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    collection = body["collections"][0]
    assert collection["name"] == "mytable"
    assert collection["href"] == f"{server.url}/mytable/"
    assert list(collection["columns"]) == [
        "id",
        "name",
        "data",
        "version",
        "created_at",
        "updated_at",
    ]
    assert collection["columns"]["name"] == {"type": "string", "maxLength": 255}
    assert collection["columns"]["id"]["readOnly"] is True
    assert body["openapi"] == f"{server.url}/openapi.json"


def test_an_item_is_one_row_as_json(http):
    response = http.get("/mytable/3")
    assert response.status_code == 200
    row = response.json()
    assert row["id"] == 3
    assert row["name"] == "demo 3"
    assert row["data"] == {"n": 3, "tags": ["demo", "odd"]}
    assert row["version"] == 1
    # RFC 3339, UTC, microseconds kept
    assert row["created_at"].endswith("Z")
    assert len(row["created_at"]) == len("2026-01-01T00:00:00.000000Z")


def test_pages_walk_every_row_once_in_key_order(http):
    seen = []
    url = "/mytable/?limit=7"
    while url:
        response = http.get(url)
        assert response.status_code == 200
        page = response.json()
        seen += [row["id"] for row in page["items"]]
        url = page["next"]
        if url:
            assert response.headers["link"] == f'<{url}>; rel="next"'
        else:
            assert "link" not in response.headers
    ids = [i for i in seen if i <= SEEDED_ROWS]
    assert ids == list(range(1, SEEDED_ROWS + 1))
    assert seen == sorted(seen)


def test_the_default_page_is_50_rows(http):
    page = http.get("/mytable/").json()
    assert len(page["items"]) == 50
    assert "cursor=" in page["next"]


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=-1", "limit=abc", "limit=501", "limit=1&limit=2", "cursor=x", "limit=1e3"],
)
def test_bad_paging_parameters_are_400(http, query):
    body = assert_problem(http.get(f"/mytable/?{query}"), 400)
    assert body["parameter"] in query


@pytest.mark.parametrize(
    "path",
    [
        "/mytable/999999",  # no such row
        "/mytable/abc",  # not an integer
        "/mytable/-1",
        "/mytable/01",
        "/mytable/1.5",
        "/mytable/99999999999999999999999",  # beyond BIGINT
        "/nosuchtable/",
        "/nosuchtable/1",
        "/mytable/1/deeper",
        "/mytable/1/deeper/still",
        "/mytable/%00",
        "/mytable/1%20OR%201=1",
    ],
)
def test_what_is_not_there_is_404(http, path):
    body = assert_problem(http.get(path), 404)
    assert "no resource" in body["detail"]


@pytest.mark.parametrize(
    ("path", "method", "allow"),
    [
        ("/", "POST", "GET, HEAD"),
        ("/mytable/", "DELETE", "GET, HEAD, POST"),
        ("/mytable/", "PUT", "GET, HEAD, POST"),
        ("/mytable/1", "POST", "GET, HEAD, PUT, PATCH, DELETE"),
    ],
)
def test_a_wrong_method_is_405_with_allow(http, path, method, allow):
    response = http.request(method, path)
    assert_problem(response, 405)
    assert response.headers["allow"] == allow


def test_head_answers_like_get_without_a_body(http):
    response = http.head("/mytable/1")
    got = http.get("/mytable/1")
    assert response.status_code == 200
    assert response.content == b""
    for header in ("content-type", "content-length", "etag"):
        assert response.headers[header] == got.headers[header]


def test_big_integers_are_exact(http, wsgi_app, backend):
    """A BIGINT beyond 2**53 comes back digit for digit, not as a rounded float."""
    import sqlalchemy as sa

    from api.models import mytable, utcnow

    # Beyond 2**53 a JSON number read as a double loses digits. (Not 2**63 - 1:
    # MariaDB's auto-increment would have nowhere left to go.)
    big = 2**53 + 1

    def insert():
        from api.bridge import await_

        engine = wsgi_app.registry.api_engines.current()

        async def go():
            async with engine.begin() as connection:
                await connection.execute(sa.delete(mytable).where(mytable.c.id == big))
                now = utcnow()
                await connection.execute(
                    sa.insert(mytable).values(
                        id=big, name="big", data={"n": 2**62}, created_at=now, updated_at=now
                    )
                )

        await_(go())

    wsgi_app.run(insert)
    response = http.get(f"/mytable/{big}")
    assert response.status_code == 200
    assert b'"id":9007199254740993' in response.content
    assert orjson.loads(response.content)["data"]["n"] == 2**62


def test_liveness_and_readiness(http):
    assert http.get("/__lbheartbeat__").json() == {"status": "ok"}
    assert http.get("/__heartbeat__").json() == {"status": "ok", "database": "ok"}


def test_the_wsgi_front_door_serves_the_same_api(testapp):
    assert testapp.get("/mytable/2").json["name"] == "demo 2"
    response = testapp.get("/mytable/abc", status=404)
    assert response.content_type == PROBLEM


def test_a_body_over_the_limit_is_413_before_it_is_read(http):
    response = http.post("/mytable/", content=b"x" * (64 * 1024 + 1))
    assert_problem(response, 413)
