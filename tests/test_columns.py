"""Each column type's JSON mapping, through writes, reads, filters, order,
cursors and exports, on both databases (MariaDB's own types: test_collections)."""

import base64

import pytest

from tests.support import WRITER, WRITER_ONE, assert_problem, next_link, unique_name
from tests.support.probe_views import MOODS

BLOB = bytes(range(250, 256)) + b"\x00\xff binary"  # not UTF-8, and base64 with + and /
ROW = {
    "day": "2024-02-29",
    "clock": "13:45:30",
    "at": "2024-02-29T13:45:30Z",
    "amount": 2.5,
    "flag": True,
    "blob": base64.b64encode(BLOB).decode(),
    "mood": "mid",
}


@pytest.fixture
def typed_row(http):
    tag = unique_name("types")
    created = http.post("/probe_types/", json={**ROW, "tag": tag}, headers=WRITER_ONE)
    assert created.status_code == 201, created.text
    return created.json()


def test_each_type_reads_back_as_written(http, typed_row):
    assert typed_row == {**ROW, "id": typed_row["id"], "tag": typed_row["tag"]}
    assert http.get(f"/probe_types/{typed_row['id']}").json() == typed_row
    page = http.get("/probe_types/", params={"tag": f"eq.{typed_row['tag']}"}).json()
    assert page == [typed_row]


@pytest.mark.parametrize(
    "column, text",
    [
        ("day", "eq.2024-02-29"),
        ("clock", "eq.13:45:30"),
        ("at", "eq.2024-02-29T14:45:30+01:00"),  # the same instant
        ("amount", "eq.2.5"),
        ("flag", "is.true"),
        ("mood", "eq.mid"),
        ("blob", f"eq.{base64.urlsafe_b64encode(BLOB).decode().rstrip('=')}"),
        ("blob", f"eq.\\x{BLOB.hex()}"),  # PostgreSQL's bytea, as PostgREST's clients send it
        ("blob", f"in.(\\x00,\\x{BLOB.hex().upper()})"),
    ],
)
def test_each_type_filters_by_its_text(http, typed_row, column, text):
    params = {"tag": f"eq.{typed_row['tag']}", column: text}
    assert http.get("/probe_types/", params=params).json() == [typed_row]


def test_bytes_written_in_postgresql_s_hex_read_back_as_base64(http):
    tag = unique_name("hex")
    body = {**ROW, "tag": tag, "blob": f"\\x{BLOB.hex()}"}
    created = http.post("/probe_types/", json=body, headers=WRITER_ONE)
    assert created.status_code == 201, created.text
    assert created.json()["blob"] == ROW["blob"]


def test_exports_write_each_type_as_json_does(http, typed_row):
    response = http.get(
        "/probe_types/", params={"tag": f"eq.{typed_row['tag']}"}, headers={"Accept": "text/csv"}
    )
    header, line = response.text.strip().split("\r\n")
    cells = dict(zip(header.split(","), line.split(","), strict=True))
    assert cells["blob"] == ROW["blob"]
    assert cells["at"] == ROW["at"]
    assert cells["flag"] == "true"
    assert cells["clock"] == ROW["clock"]


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("day", "2024-02-30", "must be an RFC 3339 date (YYYY-MM-DD)"),
        ("clock", "25:00:00", "must be a time of day (HH:MM:SS)"),
        ("mood", "none", "must be one of low, mid, high"),
        ("blob", "not base64!", "must be base64 text, or \\x and hex digits"),
        ("blob", "\\x0g", "must be base64 text, or \\x and hex digits"),
        ("blob", "\\x 00", "must be base64 text, or \\x and hex digits"),
        ("blob", "\\x" + "78" * 17, "must be base64 of at most 16 bytes"),
        ("blob", base64.b64encode(b"x" * 17).decode(), "must be base64 of at most 16 bytes"),
        ("amount", "2.5", "must be a number"),
        ("flag", "yes", "must be true or false"),
    ],
)
def test_a_value_its_column_cannot_hold_is_named(http, column, value, message):
    response = http.post("/probe_types/", json={column: value}, headers=WRITER)
    assert assert_problem(response, 422)["errors"] == [{"field": column, "message": message}]


def test_a_filter_value_its_column_cannot_hold_is_a_400(http):
    problem = assert_problem(http.get("/probe_types/", params={"day": "eq.tuesday"}), 400)
    assert problem["parameter"] == "day"


def test_an_enum_order_pages_by_member_position(http):
    """MySQL sorts an ENUM by member position but compares it with text as
    text: a cursor that compared text would skip or repeat rows."""
    tag = unique_name("moods")
    rows = [{"mood": MOODS[n % 3], "tag": tag} for n in range(9)]
    for batch in (rows[:5], rows[5:]):  # within the suite's api.max_batch_rows
        assert http.post("/probe_types/", json=batch, headers=WRITER).status_code == 201
    seen, url = [], "/probe_types/"
    params = {"tag": f"eq.{tag}", "order": "mood.desc", "limit": "2", "select": "id,mood"}
    while url:
        page = http.get(url, params=params)
        seen += page.json()
        url, params = next_link(page), None
    assert len({row["id"] for row in seen}) == 9
    assert [row["mood"] for row in seen] == ["high"] * 3 + ["mid"] * 3 + ["low"] * 3


SORTED = {  # each orderable column's values, in ascending order, NULL last
    "day": ["2001-01-01", "2024-02-29", None],
    "clock": ["00:00:01", "23:59:59", None],
    "at": ["1999-12-31T23:59:59Z", "2024-02-29T13:45:30Z", None],
    "amount": [-1.5, 2.25, None],
    "flag": [False, True, None],
    "blob": [base64.b64encode(b"\x00").decode(), base64.b64encode(b"\xff\x01").decode(), None],
    "mood": ["low", "high", None],  # member order
}


@pytest.mark.parametrize("column", sorted(SORTED))
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_cursors_page_through_each_type_in_order(http, column, direction):
    """Two rows of each value: a page of one row ends on every value, and the
    cursor's text for it must read back exactly for the next page to follow."""
    tag = unique_name("sorted")
    values = SORTED[column]
    rows = [{column: value, "tag": tag} for value in values for _ in range(2)]
    assert http.post("/probe_types/", json=rows[:5], headers=WRITER).status_code == 201
    assert http.post("/probe_types/", json=rows[5:], headers=WRITER).status_code == 201
    seen, url = [], "/probe_types/"
    params = {"tag": f"eq.{tag}", "order": f"{column}.{direction}", "limit": "1"}
    while url:
        response = http.get(url, params=params)
        assert response.status_code == 200, response.text
        seen += response.json()
        url, params = next_link(response), None
    assert len({row["id"] for row in seen}) == 6
    expected = [v for v in values for _ in range(2)]
    if direction == "desc":  # NULLs first, as PostgreSQL sorts them descending
        expected = expected[::-1]
    assert [row[column] for row in seen] == expected
