"""Request bodies: every bad field listed at once, malformed bodies, limits."""

import json
from decimal import Decimal

import pytest

from tests.support import WRITER, assert_problem, create, names_in_table, unique_name


def test_an_array_with_one_bad_row_creates_none(http):
    names = [unique_name("atomic") for _ in range(3)]
    body = [{"name": names[0]}, {"name": 42}, {"name": names[2]}]
    problem = assert_problem(http.post("/mytable/", json=body, headers=WRITER), 422)
    assert problem["errors"] == [{"field": "[1].name", "message": "must be a string"}]
    # the message, which clients show their user, says it too
    assert problem["message"] == "Some fields do not fit the table: [1].name must be a string."
    assert not set(names) & set(names_in_table(http))


def test_an_empty_array_writes_nothing_and_answers_no_rows(http):
    """As PostgREST's: 201 and ``[]``, an upsert too, and a CSV body of a
    header alone; it was a 422 ("the array holds no rows")."""
    before = names_in_table(http)
    upsert = {**WRITER, "Prefer": "return=representation,resolution=merge-duplicates"}
    for headers in (WRITER, upsert):
        created = http.post("/mytable/", json=[], headers=headers)
        assert (created.status_code, created.json()) == (201, [])
    csv = http.post("/mytable/", content="name\n", headers={**WRITER, "Content-Type": "text/csv"})
    assert (csv.status_code, csv.json()) == (201, [])
    assert names_in_table(http) == before


def test_an_array_over_the_maximum_is_413(http):
    body = [{"name": unique_name()} for _ in range(6)]  # api.max_batch_rows = 5 here
    assert_problem(http.post("/mytable/", json=body, headers=WRITER), 413)


def test_every_bad_field_is_listed_at_once(http):
    body = {
        "id": 5,  # an auto-increment key may be given
        "version": 9,
        "created_at": "2020-01-01T00:00:00Z",
        "name": "x" * 256,
        "bogus": 1,
    }
    problem = assert_problem(http.post("/mytable/", json=body, headers=WRITER), 422)
    assert {e["field"]: e["message"] for e in problem["errors"]} == {
        "version": "is set by the server",
        "created_at": "is set by the server",
        "name": "must be a string of at most 255 characters",
        "bogus": "is not a column of this table",
    }
    # the message says the first few, and how many more the list holds
    first = "; ".join(f"{e['field']} {e['message']}" for e in problem["errors"][:3])
    assert problem["message"] == (
        f"Some fields do not fit the table: {first}; and 1 more (see errors)."
    )


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
        (b'{"name": "x"}', "application/x-www-form-urlencoded", 415),  # curl -d's JSON
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


def test_patch_rejects_server_fields_and_nulls_in_required_columns(http):
    row = create(http).json()
    body = {"version": 7, "name": None}
    problem = assert_problem(http.patch(f"/mytable/{row['id']}", json=body, headers=WRITER), 422)
    assert {e["field"] for e in problem["errors"]} == {"version", "name"}


@pytest.mark.parametrize(
    "number",
    [b"18446744073709551616", b"-9223372036854775809", b"1e-400", b"1e400", b"1.0000000000000001"],
)
def test_a_number_that_would_not_be_stored_as_sent_is_422(http, number):
    name = unique_name("number")
    body = b'{"name": "%s", "data": {"n": %s, "x": 0.5}}' % (name.encode(), number)
    headers = {**WRITER, "Content-Type": "application/json"}
    problem = assert_problem(http.post("/mytable/", content=body, headers=headers), 422)
    assert number.decode() in problem["errors"][0]["message"]
    assert problem["errors"][0]["field"] == "data"  # it was "": which field?
    rows = b'[{"name": "%s"}, {"name": "%s", "data": [%s]}]' % (
        name.encode(),
        name.encode(),
        number,
    )
    problem = assert_problem(http.post("/mytable/", content=rows, headers=headers), 422)
    assert problem["errors"][0]["field"] == "[1].data"
    assert name not in names_in_table(http)


@pytest.mark.parametrize(
    "number",
    [b"18446744073709551615", b"-9223372036854775808", b"0.1", b"1e-300", b"-0.0", b"1E+20"],
)
def test_numbers_that_fit_are_stored_as_sent(http, number):
    body = b'{"name": "%s", "data": [%s]}' % (unique_name("fits").encode(), number)
    headers = {**WRITER, "Content-Type": "application/json"}
    response = http.post("/mytable/", content=body, headers=headers)
    assert response.status_code == 201, response.text
    stored = http.get(response.headers["location"]).content
    assert json.loads(stored, parse_float=Decimal)["data"] == [
        json.loads(number, parse_float=Decimal)
    ]


def test_a_json_null_in_a_body_is_sql_null(http):
    name = unique_name("json-null")
    created = create(http, name=name, data=None).json()
    assert created["data"] is None
    found = http.get("/mytable/", params={"name": f"eq.{name}", "data": "is.null"}).json()
    assert [row["id"] for row in found] == [created["id"]]
    patched = http.patch(
        f"/mytable/{created['id']}", json={"data": {"a": 1}}, headers=WRITER
    ).json()
    assert patched["data"] == {"a": 1}
    nulled = http.patch(f"/mytable/{created['id']}", json={"data": None}, headers=WRITER)
    assert nulled.json()["data"] is None
    found = http.get("/mytable/", params={"name": f"eq.{name}", "data": "is.null"}).json()
    assert len(found) == 1
