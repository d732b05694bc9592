"""Writing rows over real HTTP: create, replace, patch, delete, and the errors around them."""

import uuid

import orjson
import pytest

from tests.conftest import WRITER
from tests.test_reads import assert_problem
from tests.test_transactions import names_in_table


def unique_name(prefix="row"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create(http, **fields):
    body = {"name": unique_name(), **fields}
    response = http.post("/mytable/", json=body, headers=WRITER)
    assert response.status_code == 201, response.text
    return response


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
    page = http.get(f"/mytable/?id=eq.{row['id']}").json()["items"]
    assert [item["data"] for item in page] == [data]


def test_post_an_array_creates_every_row(http):
    names = [unique_name("batch") for _ in range(3)]
    response = http.post("/mytable/", json=[{"name": n} for n in names], headers=WRITER)
    assert response.status_code == 201
    assert [row["name"] for row in response.json()["items"]] == names


def test_an_array_with_one_bad_row_creates_none(http):
    names = [unique_name("atomic") for _ in range(3)]
    body = [{"name": names[0]}, {"name": 42}, {"name": names[2]}]
    problem = assert_problem(http.post("/mytable/", json=body, headers=WRITER), 422)
    assert problem["errors"] == [{"field": "[1].name", "message": "must be a string"}]
    assert not set(names) & set(names_in_table(http))


def test_an_array_over_the_maximum_is_413(http):
    body = [{"name": unique_name()} for _ in range(6)]  # api.max_batch_rows = 5 here
    assert_problem(http.post("/mytable/", json=body, headers=WRITER), 413)


def test_every_bad_field_is_listed_at_once(http):
    body = {
        "id": 5,
        "version": 9,
        "created_at": "2020-01-01T00:00:00Z",
        "name": "x" * 256,
        "bogus": 1,
    }
    problem = assert_problem(http.post("/mytable/", json=body, headers=WRITER), 422)
    assert {e["field"]: e["message"] for e in problem["errors"]} == {
        "id": "is set by the server",
        "version": "is set by the server",
        "created_at": "is set by the server",
        "name": "may be at most 255 characters long",
        "bogus": "is not a column of this table",
    }


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "name", "is required"),
        ({"name": None}, "name", "may not be null"),
        ({"name": ["a"]}, "name", "must be a string"),
    ],
)
def test_required_and_typed_fields(http, body, field, message):
    problem = assert_problem(http.post("/mytable/", json=body, headers=WRITER), 422)
    assert {"field": field, "message": message} in problem["errors"]


@pytest.mark.parametrize("body", [[1, 2], "a string", 3])
def test_a_body_that_is_not_an_object_is_422(http, body):
    assert_problem(http.post("/mytable/", json=body, headers=WRITER), 422)


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"name": ', "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b'{"name": "x"}', "text/plain", 415),
        (b'{"name": "x"}', "application/x-www-form-urlencoded", 415),
        (b"[" * 40 + b"]" * 40, "application/json", 400),  # deeper than api.max_json_depth
        (b"[" * 5000 + b"]" * 5000, "application/json", 400),
        (b'{"name": NaN}', "application/json", 400),
    ],
)
def test_malformed_bodies(http, content, content_type, status):
    response = http.post(
        "/mytable/", content=content, headers={**WRITER, "Content-Type": content_type}
    )
    assert_problem(response, status)


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


def test_patch_rejects_server_fields_and_nulls_in_required_columns(http):
    row = create(http).json()
    body = {"version": 7, "name": None}
    problem = assert_problem(http.patch(f"/mytable/{row['id']}", json=body, headers=WRITER), 422)
    assert {e["field"] for e in problem["errors"]} == {"version", "name"}


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


def test_a_unique_violation_is_409(http):
    assert_problem(http.post("/_probe_duplicate_key"), 409)


def test_the_wsgi_front_door_refuses_a_body_over_the_limit(testapp):
    response = testapp.post(
        "/mytable/",
        params=b'{"name": "' + b"x" * (64 * 1024) + b'"}',
        headers={**WRITER, "Content-Type": "application/json"},
        status=413,
    )
    assert response.content_type == "application/problem+json"
