"""Pages, counts and exports over real HTTP, checked against the rows themselves."""

import csv
import io
import re
import urllib.parse

import orjson
import pytest
import webtest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.reads.lists import planned_rows
from tests.support import WRITER, assert_problem, next_link, total_of, unique_name

NDJSON = "application/x-ndjson"


def test_the_next_link_keeps_the_query_as_sent_with_one_cursor(http, own_rows):
    sent = f"name=like.{own_rows.tag}%201*&limit=2&order=id.desc"
    url = f"/mytable/?{sent}"
    names = []
    for _ in range(3):
        response = http.get(url)
        names += [row["name"] for row in response.json()]
        url = next_link(response)
        query = url.split("?", 1)[1]
        assert query.startswith(f"{sent}&cursor=")
        assert query.count("cursor=") == 1
    assert names == [f"{own_rows.tag} {n}" for n in (19, 18, 17, 16, 15, 14)]


def walk(http, url):
    rows = []
    while url:
        response = http.get(url)
        rows += response.json()
        url = next_link(response)
    return rows


@pytest.mark.parametrize(
    "logic",
    [
        "or=(name.like.*%201,name.like.*%202*)",
        "not.or=(name.like.*%201*,name.like.*%203)",
        "name=like(any).{*%201,*%202*}",
    ],
)
def test_logic_pages_by_cursor_as_other_filters_do(http, own_rows, logic):
    """A page of rows chosen by logic has a next page: its cursor signs the
    logic too (a 500 on every page with a next one, until 2026-12-04)."""
    url = f"/mytable/?{own_rows.only}&{logic}&select=name&order=id"
    whole = http.get(f"{url}&limit=100").json()
    assert 10 < len(whole) < 30
    assert walk(http, f"{url}&limit=3") == whole


@pytest.mark.parametrize(
    "order",
    ["name.desc", "name.asc,id.desc", "version.desc,name", "id.desc", "data_is_json_so_skip"],
)
def test_keyset_pages_follow_any_order(http, own_rows, order):
    if order == "data_is_json_so_skip":
        assert_problem(http.get("/mytable/?order=data"), 400)
        return
    full = http.get(f"/mytable/?order={order}&{own_rows.only}&limit=500").json()
    paged = walk(http, f"/mytable/?order={order}&{own_rows.only}&limit=7")
    assert paged == full
    assert sorted(row["id"] for row in full) == own_rows.ids


def test_pages_neither_skip_nor_repeat_when_rows_change_between_them(http):
    tag = unique_name("moving")
    made = []
    for batch in (range(5), range(5, 10)):  # api.max_batch_rows is 5 here
        body = [{"name": f"{tag}-{n:02d}"} for n in batch]
        made += http.post("/mytable/", json=body, headers=WRITER).json()
    first = http.get(f"/mytable/?name=like.{tag}-*&order=name.desc&limit=3")
    # between pages: delete a row already seen, one not yet seen, and add one
    http.delete(f"/mytable/{made[9]['id']}", headers=WRITER)
    http.delete(f"/mytable/{made[2]['id']}", headers=WRITER)
    http.post("/mytable/", json={"name": f"{tag}-99"}, headers=WRITER)
    rest = walk(http, next_link(first))
    names = [r["name"] for r in first.json() + rest]
    assert names == [f"{tag}-{n:02d}" for n in (9, 8, 7, 6, 5, 4, 3, 1, 0)]


def test_counts_only_on_request_in_content_range(http, own_rows, backend):
    plain = http.get(f"/mytable/?{own_rows.only}&limit=1")
    assert (plain.status_code, plain.headers["content-range"]) == (200, "0-0/*")
    exact = http.get(f"/mytable/?{own_rows.only}&limit=1", headers={"Prefer": "count=exact"})
    assert exact.status_code == 206  # one row of 30
    assert exact.headers["content-range"] == f"0-0/{len(own_rows.ids)}"
    assert exact.headers["preference-applied"] == "count=exact"
    for method in ("planned", "estimated"):
        response = http.get("/mytable/?limit=1", headers={"Prefer": f"count={method}"})
        assert total_of(response) > 0
        applied = f"count={method}" if backend == "mysql" else "count=exact"  # SQLite: no plan
        assert response.headers["preference-applied"] == applied


def test_limit_offset_and_range_pick_rows_as_postgrest_does(http, own_rows):
    ids = own_rows.ids
    page = http.get(
        f"/mytable/?{own_rows.only}&limit=3&offset=4", headers={"Prefer": "count=exact"}
    )
    assert [r["id"] for r in page.json()] == ids[4:7]
    assert (page.status_code, page.headers["content-range"]) == (206, f"4-6/{len(ids)}")
    # the next link goes on from the last row by cursor, without the offset
    following = http.get(next_link(page)).json()
    assert [r["id"] for r in following] == ids[7:10]
    ranged = http.get(
        f"/mytable/?{own_rows.only}", headers={"Range": "2-3", "Range-Unit": "items"}
    )
    assert [r["id"] for r in ranged.json()] == ids[2:4]
    assert ranged.headers["content-range"] == "2-3/*"
    everything = http.get(
        f"/mytable/?{own_rows.only}&offset=28", headers={"Prefer": "count=exact"}
    )
    assert (everything.status_code, everything.headers["content-range"]) == (
        206,
        f"28-29/{len(ids)}",
    )
    beyond = http.get(f"/mytable/?{own_rows.only}&offset=40", headers={"Prefer": "count=exact"})
    problem = assert_problem(beyond, 416)
    assert (problem["code"], problem["details"]) == (
        "PGRST103",
        f"An offset of 40 was requested, but there are only {len(ids)} rows.",
    )
    assert beyond.headers["content-range"] == f"*/{len(ids)}"
    backwards = http.get(f"/mytable/?{own_rows.only}", headers={"Range": "5-2"})
    backwards = assert_problem(backwards, 416)
    assert backwards["code"] == "PGRST103" and "lower boundary" in backwards["details"]
    empty = http.get("/mytable/?name=eq.nobody-at-all")
    assert (empty.json(), empty.headers["content-range"]) == ([], "*/*")


def test_ndjson_streams_the_whole_filtered_ordered_result(http, own_rows):
    response = http.get(
        f"/mytable/?{own_rows.only}&order=id.desc&select=id,name,data,created_at",
        headers={"Accept": "application/x-ndjson"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    rows = [orjson.loads(line) for line in response.content.splitlines()]
    assert [r["id"] for r in rows] == own_rows.ids[::-1]  # 30 rows: 5 batches of 7
    assert rows[-1]["data"] == {"n": 1, "tags": ["own", "odd"]}
    assert rows[0]["created_at"].endswith("Z")
    assert set(rows[0]) == {"id", "name", "data", "created_at"}


def test_csv_streams_with_a_header(http, own_rows):
    query = f"{own_rows.only}&id=lte.{own_rows.id(3)}"
    response = http.get(f"/mytable/?{query}", headers={"Accept": "text/csv"})
    assert response.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(response.text)))
    assert table[0] == ["id", "name", "data", "version", "created_at", "updated_at"]
    expected = [[str(own_rows.id(n)), f"{own_rows.tag} {n}"] for n in (1, 2, 3)]
    assert [row[:2] for row in table[1:]] == expected
    assert orjson.loads(table[1][2]) == {"n": 1, "tags": ["own", "odd"]}


def test_an_export_takes_limit_offset_and_range_as_postgrest_s_csv_does(http, own_rows):
    """``limit`` and ``offset`` (or a Range header) bound an export as they
    bound a page, across batches (7 rows here); ``test_querystring`` shows
    that api.page_limit_max does not cap it."""
    ndjson = {"Accept": "application/x-ndjson"}

    def exported(query, **headers):
        response = http.get(f"/mytable/?{own_rows.only}&{query}", headers={**ndjson, **headers})
        assert response.status_code == 200
        return [orjson.loads(line)["id"] for line in response.content.splitlines()]

    ids = own_rows.ids  # 30 rows, in id order
    assert exported("order=id&limit=3") == ids[:3]
    assert exported("order=id&offset=2&limit=10") == ids[2:12]  # two batches
    assert exported("order=id.desc&offset=25") == ids[::-1][25:]
    assert exported("order=id&limit=0") == []
    assert exported("order=id", Range="4-8") == ids[4:9]
    assert exported("order=id") == ids
    csv_rows = http.get(
        f"/mytable/?{own_rows.only}&order=id&limit=2", headers={"Accept": "text/csv"}
    )
    assert [row[0] for row in csv.reader(io.StringIO(csv_rows.text))] == ["id", *map(str, ids[:2])]


def test_a_format_the_api_cannot_produce_is_406(http):
    assert_problem(http.get("/mytable/", headers={"Accept": "text/html"}), 406)
    assert http.get("/mytable/", headers={"Accept": "text/html, */*;q=0.1"}).status_code == 200


def test_an_accept_header_too_long_to_read_is_431_and_writes_nothing(http):
    """Parsing 64 KiB of Accept took the worker 15 ms: over 4,096 characters
    is refused before it is parsed. Under it, a long one is read."""
    ranges = ", ".join(f"text/x-{n}" for n in range(600))  # about 7,000 characters
    too_long = {"Accept": ranges + ", */*;q=0.1"}
    assert_problem(http.get("/mytable/", headers=too_long), 431)
    assert_problem(http.get("/mytable/1", headers=too_long), 431)
    name = unique_name("accept")
    posted = http.post("/mytable/", json={"name": name}, headers={**WRITER, **too_long})
    assert_problem(posted, 431)
    assert http.get(f"/mytable/?name=eq.{name}").json() == []
    long = {"Accept": ", ".join(f"text/x-{n}" for n in range(300)) + ", */*;q=0.1"}
    assert http.get("/mytable/1", headers=long).status_code == 200
    assert http.get("/mytable/?limit=1", headers=long).status_code == 200


NULLABLE_ORDERS = [
    "score",
    "score.desc",
    "score.asc.nullsfirst",
    "score.desc.nullslast",
    "flag,score.desc",
    "flag.desc.nullsfirst,score.nullsfirst",
]


def model_order(rows, order):
    """Sort as the API promises: NULLs last ascending, first descending, unless told."""
    ordered = sorted(rows, key=lambda r: r["id"])
    items = order.split(",")
    descending_last = items[-1].split(".")[1:2] == ["desc"]
    ordered.sort(key=lambda r: r["id"], reverse=descending_last)  # the tie-break
    for item in reversed(items):
        name, *modifiers = item.split(".")
        descending = "desc" in modifiers
        nulls_first = "nullsfirst" in modifiers or (descending and "nullslast" not in modifiers)
        present = [r for r in ordered if r[name] is not None]
        missing = [r for r in ordered if r[name] is None]
        present.sort(key=lambda r, n=name: r[n], reverse=descending)
        ordered = missing + present if nulls_first else present + missing
    return [r["id"] for r in ordered]


@pytest.mark.parametrize("order", NULLABLE_ORDERS)
def test_nullable_columns_order_and_page_without_skips(http, order):
    full = http.get(f"/probe_nullable/?order={order}&limit=500").json()
    assert [r["id"] for r in full] == model_order(full, order)
    assert walk(http, f"/probe_nullable/?order={order}&limit=2") == full
    # An export reads in keyset batches too (7 rows a batch in these tests)
    export = http.get(f"/probe_nullable/?order={order}", headers={"Accept": NDJSON})
    assert [orjson.loads(line) for line in export.content.splitlines()] == full


def _matches(row, column, op, value):
    actual = row[column]
    if op == "in":
        return actual in value
    if op in ("like", "ilike"):
        pattern = ".*".join(re.escape(part) for part in value.split("*"))
        return re.fullmatch(pattern, actual, re.IGNORECASE) is not None
    return {
        "eq": actual == value,
        "neq": actual != value,
        "gt": actual > value,
        "gte": actual >= value,
        "lt": actual < value,
        "lte": actual <= value,
    }[op]


# Filters on the test's own rows (OwnRows): ids as offsets from the row before
# the first, versions as they are, names as the tag and a suffix.
id_filters = st.tuples(
    st.just("id"),
    st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte", "in"]),
    st.integers(-5, 35),
    st.lists(st.integers(0, 31), min_size=1, max_size=4),
)
version_filters = st.tuples(
    st.just("version"),
    st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte", "in"]),
    st.integers(-1, 3),
    st.lists(st.integers(0, 3), min_size=1, max_size=4),
)
# No spaces: MariaDB pads the shorter of two strings with spaces to compare them.
name_filters = st.tuples(
    st.just("name"),
    st.sampled_from(["eq", "neq", "like", "ilike", "gt", "lt"]),
    st.text(alphabet="0123*", min_size=0, max_size=4),
    st.just(None),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    filters=st.lists(st.one_of(id_filters, version_filters, name_filters), max_size=3),
    negations=st.lists(st.booleans(), min_size=3, max_size=3),
    order=st.sampled_from(["id", "id.desc", "name", "name.desc", "version,name.desc"]),
    limit=st.integers(1, 40),
)
def test_filters_order_and_pages_agree_with_a_model(
    wsgi_app, own_rows, filters, negations, order, limit
):
    app = webtest.TestApp(wsgi_app)
    before_first = own_rows.id(1) - 1
    model = [
        {"id": own_rows.id(n), "name": f"{own_rows.tag} {n}", "version": 1} for n in range(1, 31)
    ]
    params = [("name", f"like.{own_rows.tag} *"), ("order", order), ("limit", str(limit))]
    expected = model
    for (column, op, scalar, listed), negate in zip(filters, negations, strict=False):
        if column == "id":
            scalar, listed = before_first + scalar, [before_first + n for n in listed]
        if column == "name":
            scalar = f"{own_rows.tag} {scalar}"
        if op == "in":
            value, text = listed, "(" + ",".join(map(str, listed)) + ")"
        else:
            value, text = scalar, str(scalar)
        if column == "name" and op in ("eq", "neq", "gt", "lt") and "*" in text:
            continue
        params.append((column, ("not." if negate else "") + f"{op}.{text}"))
        expected = [r for r in expected if _matches(r, column, op, value) != negate]
    for part in reversed(order.split(",")):
        name, _, direction = part.partition(".")
        expected = sorted(expected, key=lambda r, n=name: r[n], reverse=direction == "desc")

    got, url = [], "/mytable/?" + urllib.parse.urlencode(params)
    while url:
        page = app.get(url)
        got += [row["id"] for row in page.json]
        url = next_link(page)
    assert got == [r["id"] for r in expected]
    # The export of the same query, read in keyset batches of 7 rows
    whole = urllib.parse.urlencode([p for p in params if p[0] != "limit"])
    export = app.get(f"/mytable/?{whole}", headers={"Accept": "application/x-ndjson"})
    assert [orjson.loads(line)["id"] for line in export.body.splitlines()] == got


def test_pages_walk_every_row_once_in_key_order(http, own_rows):
    seen = []
    url = "/mytable/?limit=7"
    while url:
        response = http.get(url)
        assert response.status_code == 200
        seen += [row["id"] for row in response.json()]
        url = next_link(response)
        if not url:
            assert "link" not in response.headers
    assert seen == sorted(set(seen))  # in key order, each row once
    assert set(own_rows.ids) <= set(seen)


def test_a_page_without_limit_holds_api_page_limit_default_rows(http):
    page = http.get("/mytable/?limit=50")
    assert len(page.json()) == 50
    assert "cursor=" in next_link(page)
    everything = http.get("/mytable/?select=id")  # fewer rows than the default 1000
    assert len(everything.json()) > 50 and next_link(everything) is None


SINGULAR = "application/vnd.pgrst.object+json"


def test_the_singular_media_type_answers_one_row_as_an_object(http, own_rows):
    one = http.get(f"/mytable/?id=eq.{own_rows.id(1)}&select=id", headers={"Accept": SINGULAR})
    assert one.status_code == 200
    assert one.headers["content-type"].startswith(SINGULAR)
    assert one.json() == {"id": own_rows.id(1)}
    for query in (f"{own_rows.only}", "id=eq.0"):  # 30 rows, and none
        problem = assert_problem(http.get(f"/mytable/?{query}", headers={"Accept": SINGULAR}), 406)
        assert problem["code"] == "PGRST116"


def test_a_planned_count_reads_mariadb_s_estimate_beside_a_rowid_filter():
    """Where MariaDB plans a rowid filter (``range|filter``), EXPLAIN's rows
    is text: "1 (33%)". A planned count of Sakila's stores by two ranges was
    a 500 (int() of that text) once the table's statistics had moved, found
    by ``make walk``; which plan MariaDB picks depends on those statistics,
    so the reading is checked here, and the request in the walk."""
    assert [planned_rows(rows) for rows in ("1 (33%)", 5, "12", None)] == [1, 5, 12, 0]
