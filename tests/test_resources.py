"""The resource tree: the root, collections and items, 404 and 405, and no cycles."""

import asyncio
import uuid

import pytest

from api.bridge import run_in_greenlet
from api.bridge.asgi import ASGIApp
from api.resources import _segments_as_encoded
from tests.support import WRITER, WRITER_ONE, assert_problem, create


def test_root_lists_the_collections_with_links(http, server):
    response = http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
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


def test_an_item_with_a_query_string_is_shaped_by_it(http):
    """An item URL took no query: GET /mytable/3?select=name answered the
    whole row, and a filter the row fails was ignored. It now reads as its
    collection does, by the row's key: one object, or 404."""
    assert http.get("/mytable/3", params={"select": "n:name,data->tags"}).json() == {
        "n": "demo 3",
        "tags": ["demo", "odd"],
    }
    assert http.get("/mytable/3", params={"name": "eq.demo 3", "select": "id"}).json() == {"id": 3}
    assert_problem(http.get("/mytable/3", params={"name": "eq.demo 4"}), 404)
    problem = assert_problem(http.get("/mytable/3", params={"select": "nope"}), 400)
    assert problem["code"] == "42703"
    assert (
        http.get("/mytable/3", params={"select": "id"})
        .headers["Content-Type"]
        .startswith("application/json")
    )


def test_an_item_of_sakila_embeds_what_its_keys_relate(sakila):
    film = sakila.get(
        "/film/1", params={"select": "title,language!language_id(name),film_actor(count)"}
    )
    assert film.json() == {
        "title": "ACADEMY DINOSAUR",
        "language": {"name": "English"},
        "film_actor": [{"count": 10}],
    }
    staff = sakila.get("/staff/1", params={"select": "username"})
    assert staff.json() == {"username": "Mike"}


def test_an_item_answers_in_a_media_type_the_client_takes_or_406_before_writing(http):
    row = create(http).json()
    url = f"/mytable/{row['id']}"
    for accept in ("application/json", "*/*", "application/*, text/html;q=0.5"):
        got = http.get(url, headers={"Accept": accept})
        assert (got.status_code, got.headers["content-type"]) == (
            200,
            "application/json; charset=utf-8",
        )
    singular = http.get(url, headers={"Accept": "application/vnd.pgrst.object+json"})
    assert singular.headers["content-type"] == "application/vnd.pgrst.object+json"
    assert singular.json() == row
    for accept in ("image/png", "text/csv", "application/vnd.pgrst.array+json"):
        assert assert_problem(http.get(url, headers={"Accept": accept}), 406)["code"] == "PGRST107"
    # A write whose answer the client cannot take is refused, and writes nothing.
    png = {**WRITER, "Accept": "image/png", "If-Match": http.get(url).headers["etag"]}
    assert_problem(http.patch(url, json={"name": "not written"}, headers=png), 406)
    assert_problem(http.put(url, json={"name": "not written"}, headers=png), 406)
    assert http.get(url).json() == row
    patched = http.patch(url, json={"name": "written"}, headers=WRITER_ONE)
    assert patched.headers["content-type"] == "application/vnd.pgrst.object+json"
    assert patched.json()["name"] == "written"


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


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "POST", "OPTIONS"])
@pytest.mark.parametrize("segment", ["999999", "abc"])  # a key no row has; not a key
def test_a_segment_that_names_no_row_is_404_whatever_the_method(http, method, segment):
    name = f"nowhere {uuid.uuid4()}"
    response = http.request(method, f"/mytable/{segment}", json={"name": name}, headers=WRITER)
    body = assert_problem(response, 404)
    assert body["detail"] == f"There is no resource at /mytable/{segment}"
    assert body["title"] == "Not Found"
    assert http.get("/mytable/", params={"name": f"eq.{name}"}).json() == []  # nothing written
    head = http.head(f"/mytable/{segment}")
    assert (head.status_code, head.content) == (404, b"")


@pytest.mark.parametrize(
    ("path", "method", "allow"),
    [
        ("/", "POST", "GET, HEAD"),
        ("/mytable/", "TRACE", "GET, HEAD, POST, PUT, PATCH, DELETE"),
        ("/mytable/1", "POST", "GET, HEAD, PUT, PATCH, DELETE"),
    ],
)
def test_a_wrong_method_is_405_with_allow(http, path, method, allow):
    response = http.request(method, path)
    assert_problem(response, 405)
    assert response.headers["allow"] == allow


def test_reads_leave_no_reference_cycles_for_the_gc(wsgi_app):
    """Point reads and pages are freed by reference counting alone: a cycle per
    request made the cyclic GC pause every request for 30-40 ms under load."""
    import gc

    from api.bridge.integration import loop_stopping

    asgi = ASGIApp(wsgi_app)
    paths = [("/mytable/1", b""), ("/mytable/", b"limit=3&id=gt.1&order=name.desc")]

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def get(path, query_string):
        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "query_string": query_string,
            "headers": [(b"host", b"localhost")],
        }
        sent = []

        async def send(message):
            sent.append(message)

        await asgi(scope, receive, send)
        return sent[0]["status"]

    async def cyclic_garbage_of_reads():
        for path, query_string in paths:  # the engines and caches of this loop are made now
            assert await get(path, query_string) == 200
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(10):
                for path, query_string in paths:
                    assert await get(path, query_string) == 200
            gc.collect()
            return [type(o).__name__ for o in gc.garbage]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
            await run_in_greenlet(loop_stopping, wsgi_app.registry, asyncio.get_running_loop())

    assert asyncio.run(cyclic_garbage_of_reads()) == []


def test_a_string_key_takes_any_text_its_column_holds_percent_encoded(http, server):
    code = "a b,c" + uuid.uuid4().hex[:3]  # a space and a comma: 8 characters
    created = http.post("/probe_coded/", json={"code": code, "label": "coded"}, headers=WRITER_ONE)
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    assert location == f"{server.url}/probe_coded/a%20b,c{code[-3:]}"
    assert http.get(location).json() == {"code": code, "label": "coded"}
    patched = http.patch(location, json={"label": "recoded"}, headers=WRITER)
    assert patched.json()["label"] == "recoded"
    assert_problem(http.get("/probe_coded/" + "x" * 9), 404)  # longer than the column
    assert_problem(http.post("/probe_coded/", json={"label": "no key"}, headers=WRITER), 422)


def test_an_unsigned_key_takes_its_whole_range_and_nothing_beyond(http):
    created = http.post("/probe_small/", json={"id": 65535, "label": "top"}, headers=WRITER_ONE)
    assert created.status_code in (201, 409), created.text  # 409: made by the other backend run
    assert http.get("/probe_small/65535").json()["label"] == "top"
    for beyond in ("65536", "-1", "-0", "+5", "007"):
        assert_problem(http.get(f"/probe_small/{beyond}"), 404)
    problem = assert_problem(http.post("/probe_small/", json={"id": 65536}, headers=WRITER), 422)
    assert problem["errors"] == [{"field": "id", "message": "must be an integer from 0 to 65535"}]
    # A filter compares numbers as numbers, past the column's range too.
    assert {"id": 65535} in http.get("/probe_small/?id=gt.-1&select=id").json()
    assert http.get("/probe_small/?id=lt.70000&id=gte.65535&select=id").json() == [{"id": 65535}]
    assert http.get("/probe_small/?id=in.(-1,65536)").json() == []
    past = assert_problem(http.get(f"/probe_small/?id=eq.{2**63}"), 400)  # past what binds
    assert past["parameter"] == "id"


def test_a_composite_key_with_a_comma_in_a_value_is_percent_encoded(http, server):
    code = f"a,{uuid.uuid4().hex[:5]}"  # a comma inside the first value
    created = http.post("/probe_pair/", json={"code": code, "n": 3}, headers=WRITER_ONE)
    assert created.status_code == 201, created.text
    segment = f"a%2C{code[2:]},3"
    assert created.headers["location"] == f"{server.url}/probe_pair/{segment}"
    item = http.get(f"/probe_pair/{segment}")
    assert (item.status_code, item.json()["code"], item.json()["n"]) == (200, code, 3)
    patched = http.patch(f"/probe_pair/{segment}", json={"label": "x"}, headers=WRITER)
    assert patched.json()["label"] == "x"
    assert_problem(http.get(f"/probe_pair/{code},3"), 404)  # three values for two columns
    assert http.delete(f"/probe_pair/{segment}", headers=WRITER).status_code == 204


def test_options_answers_the_allowed_methods(http):
    response = http.options("/mytable/")
    assert response.status_code == 200
    assert response.headers["allow"] == "GET, HEAD, POST, PUT, PATCH, DELETE"
    assert http.options("/mytable/1").headers["allow"] == "GET, HEAD, PUT, PATCH, DELETE"


@pytest.mark.parametrize(
    ("raw_uri", "path_info", "segments"),
    [
        ("/slugs/docs%2Fintro?select=slug", "/slugs/docs/intro", ("slugs", "docs/intro")),
        (
            "/api/slugs/docs%2fintro/pages/",
            "/slugs/docs/intro/pages/",
            ("slugs", "docs/intro", "pages"),
        ),
        ("/slugs/%2F", "/slugs//", ("slugs", "/")),
        ("/slugs/docs/intro", "/slugs/docs/intro", None),  # no encoded slash: Pyramid's own
        ("/slugs/%2E%2E%2Fx", "/slugs/../x", ("slugs", "../x")),  # a key, not a dot segment
        ("/slugs/../a%2Fb", "/slugs/../a/b", None),  # a dot segment: Pyramid's own
        ("/slugs/%FF%2F", "/slugs/\xff/", None),  # not UTF-8: Pyramid's own answer
    ],
)
def test_a_path_is_split_as_the_client_encoded_it_where_it_holds_an_encoded_slash(
    raw_uri, path_info, segments
):
    """Behind a proxy that serves the API under a prefix, the raw path holds it too."""
    assert _segments_as_encoded(raw_uri, path_info) == segments
