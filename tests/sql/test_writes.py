"""Writing rows over real HTTP: create, replace, patch, delete, conditionally."""

import orjson
import pytest

from tests.support import WRITER, WRITER_ONE, assert_problem, create, unique_name


def test_post_creates_a_row_with_location_and_etag(http, server):
    response = create(http, data={"a": [1, 2]})
    row = response.json()
    assert response.headers["location"] == f"{server.url}/mytable/{row['id']}"
    assert response.headers["etag"] == '"1"'
    assert row["version"] == 1
    assert row["data"] == {"a": [1, 2]}
    assert row["created_at"] == row["updated_at"]
    fetched = http.get(response.headers["location"])
    assert fetched.json() == row
    assert fetched.headers["etag"] == '"1"'


@pytest.mark.parametrize(
    "data",
    [{"a": [1, 2.5, {"b": None}], "é": "ü\n"}, [1, "x", True], "text", 3.5, 7, True, None],
)
def test_json_values_of_every_kind_read_back_as_written(http, data):
    """Reads pass stored JSON text through to the response: it must come out the same."""
    row = create(http, data=data).json()
    assert row["data"] == data
    assert http.get(f"/mytable/{row['id']}").json()["data"] == data
    page = http.get(f"/mytable/?id=eq.{row['id']}").json()
    assert [item["data"] for item in page] == [data]


def test_post_an_array_creates_every_row(http):
    names = [unique_name("batch") for _ in range(3)]
    response = http.post("/mytable/", json=[{"name": n} for n in names], headers=WRITER)
    assert response.status_code == 201
    assert [row["name"] for row in response.json()] == names


def test_put_replaces_the_writable_fields(http):
    row = create(http, data={"keep": False}).json()
    response = http.put(f"/mytable/{row['id']}", json={"name": "replaced"}, headers=WRITER)
    assert response.status_code == 200
    replaced = response.json()
    assert replaced["name"] == "replaced"
    assert replaced["data"] is None  # left out of a PUT: back to null
    assert replaced["version"] == 2
    assert response.headers["etag"] == '"2"'
    assert replaced["created_at"] == row["created_at"]
    assert replaced["updated_at"] > row["updated_at"]


def test_put_takes_the_item_s_own_key_in_the_body_and_no_other(http):
    """A client that PUTs back the row it read sends its key (react-admin's
    simple REST does); the auto-increment key was refused, 'is set by the
    server'. Another key would move the row: a 400 that writes nothing."""
    row = create(http).json()
    item = f"/mytable/{row['id']}"
    response = http.put(item, json={"id": row["id"], "name": "own key"}, headers=WRITER)
    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["name"]) == (row["id"], "own key")
    moved = http.put(item, json={"id": row["id"] + 10**6, "name": "moved"}, headers=WRITER)
    assert assert_problem(moved, 400)["parameter"] == "body"
    assert http.get(item).json()["name"] == "own key"


@pytest.mark.parametrize("content_type", ["application/merge-patch+json", "application/json"])
def test_patch_is_a_json_merge_patch(http, content_type):
    row = create(http, data={"a": 1, "b": {"c": 2, "e": 5}, "list": [1, 2]}).json()
    patch = {"data": {"b": {"c": None, "d": 3}, "list": [3]}}
    response = http.patch(
        f"/mytable/{row['id']}",
        content=orjson.dumps(patch),
        headers={**WRITER, "Content-Type": content_type},
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["data"] == {"a": 1, "b": {"e": 5, "d": 3}, "list": [3]}
    assert patched["name"] == row["name"]  # untouched
    assert patched["version"] == 2


def test_delete_answers_204_and_the_row_is_gone(http):
    row = create(http).json()
    response = http.delete(f"/mytable/{row['id']}", headers=WRITER)
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(http.get(f"/mytable/{row['id']}"), 404)
    assert_problem(http.delete(f"/mytable/{row['id']}", headers=WRITER), 404)


def test_get_honours_if_none_match(http):
    row = create(http).json()
    response = http.get(f"/mytable/{row['id']}", headers={"If-None-Match": '"1"'})
    assert response.status_code == 304
    assert response.content == b""
    assert http.get(f"/mytable/{row['id']}", headers={"If-None-Match": '"2"'}).status_code == 200
    # "*" matches any row that exists (RFC 9110); WebOb alone answers it 200
    matched = http.get(f"/mytable/{row['id']}", headers={"If-None-Match": "*"})
    assert (matched.status_code, matched.headers["etag"]) == (304, '"1"')


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_if_none_match_refuses_a_write_to_the_row_it_names(http, method):
    """``PUT`` with ``If-None-Match: *`` is HTTP's create-only: it must not
    replace a row that exists. A tag of the row, weak or strong, refuses too."""
    row = create(http).json()
    url = f"/mytable/{row['id']}"
    body = orjson.dumps({"name": "replaced"}) if method != "DELETE" else None
    headers = {**WRITER, "Content-Type": "application/json"}
    for value in ("*", '"1"', 'W/"1"', '"7", "1"'):
        refused = http.request(
            method, url, content=body, headers={**headers, "If-None-Match": value}
        )
        assert_problem(refused, 412)
        assert refused.headers["etag"] == '"1"'
    assert http.get(url).json()["name"] == row["name"]  # nothing written
    malformed = http.request(method, url, content=body, headers={**headers, "If-None-Match": "1"})
    assert assert_problem(malformed, 400)["parameter"] == "If-None-Match"
    other = http.request(method, url, content=body, headers={**headers, "If-None-Match": '"7"'})
    assert other.status_code in (200, 204)


def test_get_honours_range(http):
    whole = http.get("/mytable/1")
    part = http.get("/mytable/1", headers={"Range": "bytes=0-4"})
    assert part.status_code == 206
    assert part.content == whole.content[:5]
    assert part.headers["content-range"] == f"bytes 0-4/{len(whole.content)}"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_if_match_guards_every_write(http, method):
    row = create(http).json()
    url = f"/mytable/{row['id']}"
    body = orjson.dumps({"name": "guarded"}) if method != "DELETE" else None
    headers = {**WRITER, "Content-Type": "application/json"}
    stale = http.request(method, url, content=body, headers={**headers, "If-Match": '"7"'})
    assert_problem(stale, 412)
    assert stale.headers["etag"] == '"1"'
    weak = http.request(method, url, content=body, headers={**headers, "If-Match": 'W/"1"'})
    assert_problem(weak, 412)  # If-Match compares strongly
    fresh = http.request(method, url, content=body, headers={**headers, "If-Match": '"1"'})
    assert fresh.status_code in (200, 204)


@pytest.mark.parametrize("value", ["*", "* ", " *\t", '"9", "1"', 'W/"9", "1"', ' "1" '])
def test_if_match_any_or_a_list_naming_the_row_lets_the_write_through(http, testapp, value):
    # WebTest: httpx refuses to send a header value with whitespace around it
    row = create(http).json()
    headers = {**WRITER, "If-Match": value}
    response = testapp.patch_json(f"/mytable/{row['id']}", {"name": "x"}, headers=headers)
    assert response.status_int == 200, response.text
    assert response.headers["etag"] == '"2"'


def test_a_unique_violation_is_409(http):
    assert_problem(http.post("/_probe_duplicate_key"), 409)


def test_a_row_of_defaults_only_is_created_from_an_empty_object(http):
    """``POST {}`` to a table that needs no column: every column's default
    (``INSERT ... DEFAULT VALUES``), alone or in an array. It was a 500: the
    statement has no VALUES group to repeat for the rows."""
    one = http.post("/probe_nullable/", json={}, headers=WRITER_ONE)
    assert one.status_code == 201, one.text
    assert (one.json()["score"], one.json()["flag"]) == (None, None)
    many = http.post("/probe_nullable/", json=[{}, {}], headers=WRITER)
    assert many.status_code == 201, many.text
    made = [one.json()["id"], *(row["id"] for row in many.json())]
    assert len(set(made)) == 3
    for key in made:
        assert http.delete(f"/probe_nullable/{key}", headers=WRITER).status_code == 204


def test_a_table_without_a_version_column_has_content_etags_and_conditional_writes(http):
    """probe_nullable has no version column: its ETag is a hash of the row."""
    created = http.post("/probe_nullable/", json={"score": 40, "flag": True}, headers=WRITER_ONE)
    assert created.status_code == 201, created.text
    url, first = created.headers["location"], created.headers["etag"]
    read = http.get(url)
    assert read.headers["etag"] == first  # the same row read another way: the same tag
    assert http.get(url, headers={"If-None-Match": first}).status_code == 304
    patch = {**WRITER, "If-Match": first}
    changed = http.patch(url, json={"score": 41}, headers=patch)
    assert changed.status_code == 200, changed.text
    assert changed.json()["score"] == 41 and changed.headers["etag"] != first
    stale = assert_problem(http.patch(url, json={"score": 42}, headers=patch), 412)
    assert stale["status"] == 412
    again = {**WRITER, "If-Match": changed.headers["etag"]}
    assert http.put(url, json={"score": 7}, headers=again).json() == {
        "id": created.json()["id"],
        "score": 7,
        "flag": None,
    }
    current = http.get(url).headers["etag"]
    assert_problem(http.delete(url, headers={**WRITER, "If-Match": first}), 412)
    assert http.delete(url, headers={**WRITER, "If-Match": current}).status_code == 204
    assert http.get(url).status_code == 404
