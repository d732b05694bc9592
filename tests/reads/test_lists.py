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

from tests.support import WRITER, assert_problem, unique_name

NDJSON = "application/x-ndjson"


def test_the_next_link_keeps_the_query_as_sent_with_one_cursor(http, own_rows):
    sent = f"name=like.{own_rows.tag}%201*&limit=2&order=id.desc"
    url = f"/mytable/?{sent}"
    names = []
    for _ in range(3):
        response = http.get(url)
        names += [row["name"] for row in response.json()["items"]]
        url = response.json()["next"]
        assert response.headers["Link"] == f'<{url}>; rel="next"'
        query = url.split("?", 1)[1]
        assert query.startswith(f"{sent}&cursor=")
        assert query.count("cursor=") == 1
    assert names == [f"{own_rows.tag} {n}" for n in (19, 18, 17, 16, 15, 14)]


def walk(http, url):
    rows = []
    while url:
        page = http.get(url).json()
        rows += page["items"]
        url = page["next"]
    return rows


@pytest.mark.parametrize(
    "order",
    ["name.desc", "name.asc,id.desc", "version.desc,name", "id.desc", "data_is_json_so_skip"],
)
def test_keyset_pages_follow_any_order(http, own_rows, order):
    if order == "data_is_json_so_skip":
        assert_problem(http.get("/mytable/?order=data"), 400)
        return
    full = http.get(f"/mytable/?order={order}&{own_rows.only}&limit=500").json()["items"]
    paged = walk(http, f"/mytable/?order={order}&{own_rows.only}&limit=7")
    assert paged == full
    assert sorted(row["id"] for row in full) == own_rows.ids


def test_pages_neither_skip_nor_repeat_when_rows_change_between_them(http):
    tag = unique_name("moving")
    made = []
    for batch in (range(5), range(5, 10)):  # api.max_batch_rows is 5 here
        body = [{"name": f"{tag}-{n:02d}"} for n in batch]
        made += http.post("/mytable/", json=body, headers=WRITER).json()["items"]
    first = http.get(f"/mytable/?name=like.{tag}-*&order=name.desc&limit=3").json()
    # between pages: delete a row already seen, one not yet seen, and add one
    http.delete(f"/mytable/{made[9]['id']}", headers=WRITER)
    http.delete(f"/mytable/{made[2]['id']}", headers=WRITER)
    http.post("/mytable/", json={"name": f"{tag}-99"}, headers=WRITER)
    rest = walk(http, first["next"])
    names = [r["name"] for r in first["items"] + rest]
    assert names == [f"{tag}-{n:02d}" for n in (9, 8, 7, 6, 5, 4, 3, 1, 0)]


def test_counts_only_on_request(http, own_rows, backend):
    plain = http.get(f"/mytable/?{own_rows.only}&limit=1")
    assert "total-count" not in plain.headers
    exact = http.get(f"/mytable/?{own_rows.only}&limit=1", headers={"Prefer": "count=exact"})
    assert exact.headers["total-count"] == str(len(own_rows.ids))
    assert exact.headers["preference-applied"] == "count=exact"
    estimated = http.get("/mytable/?limit=1", headers={"Prefer": "count=estimated"})
    assert int(estimated.headers["total-count"]) >= 0
    expected = "count=estimated" if backend == "mysql" else "count=exact"
    assert estimated.headers["preference-applied"] == expected


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


def test_a_format_the_api_cannot_produce_is_406(http):
    assert_problem(http.get("/mytable/", headers={"Accept": "text/html"}), 406)
    assert http.get("/mytable/", headers={"Accept": "text/html, */*;q=0.1"}).status_code == 200


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
    full = http.get(f"/probe_nullable/?order={order}&limit=500").json()["items"]
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
        page = app.get(url).json
        got += [row["id"] for row in page["items"]]
        url = page["next"]
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
        page = response.json()
        seen += [row["id"] for row in page["items"]]
        url = page["next"]
        if url:
            assert response.headers["link"] == f'<{url}>; rel="next"'
        else:
            assert "link" not in response.headers
    assert seen == sorted(set(seen))  # in key order, each row once
    assert set(own_rows.ids) <= set(seen)


def test_the_default_page_is_50_rows(http):
    page = http.get("/mytable/").json()
    assert len(page["items"]) == 50
    assert "cursor=" in page["next"]
