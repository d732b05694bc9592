"""PostgREST's query language: filters, select, and a clear 400 for every mistake."""

import re
import time
import urllib.parse

import pytest
import webtest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import WRITER, assert_problem, make_app, next_link, total_of, unique_name


# Placeholders: {id[N]} is the id of the test's own row N, {tag} their name's tag.
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("id=eq.{id[7]}", [7]),
        ("id=gt.{id[25]}", [26, 27, 28, 29, 30]),
        ("id=gte.{id[29]}", [29, 30]),
        ("id=lt.{id[3]}", [1, 2]),
        ("id=lte.{id[2]}", [1, 2]),
        ("id=neq.{id[1]}&id=lt.{id[4]}", [2, 3]),
        ("id=in.({id[3]},{id[1]},{id[2]})", [1, 2, 3]),
        ("id=not.in.({id[1]},{id[2]},{id[3]})&id=lt.{id[6]}", [4, 5]),
        ("name=eq.{tag} 12", [12]),
        ("name=like.{tag} 2*", [2, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29]),
        ("name=ilike.{TAG} 1*", [1, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]),
        ("name=not.like.{tag} 1*&id=lt.{id[5]}", [2, 3, 4]),
        ('name=in.("{tag} 1","{tag} 2")', [1, 2]),
        ("data=is.null", []),
        ("data=not.is.null&id=lt.{id[3]}", [1, 2]),
        ("version=eq.1&id=lt.{id[3]}", [1, 2]),
    ],
)
def test_filters(http, own_rows, query, expected):
    ids = {n: own_rows.id(n) for n in range(1, 31)}
    query = query.format(id=ids, tag=own_rows.tag, TAG=own_rows.tag.upper())
    response = http.get(f"/mytable/?{query}&{own_rows.only}&limit=500")
    assert response.status_code == 200, response.text
    assert [row["id"] for row in response.json()] == [own_rows.id(n) for n in expected]


def test_like_takes_sql_wildcards_escaped_with_a_backslash(http):
    """As PostgREST passes a pattern to PostgreSQL: '%' and '_' are wildcards
    unless a backslash escapes them."""
    tag = unique_name("wild")
    body = [{"name": f"{tag} 100% real_name"}, {"name": f"{tag} 100x realXname"}]
    created = http.post("/mytable/", json=body, headers=WRITER).json()
    escaped = http.get("/mytable/", params={"name": f"like.{tag} 100\\% real\\_*"}).json()
    assert [row["id"] for row in escaped] == [created[0]["id"]]
    wild = http.get("/mytable/", params={"name": f"like.{tag} 100% real_*", "order": "id"}).json()
    assert [row["id"] for row in wild] == [row["id"] for row in created]


def test_select_returns_only_the_named_columns(http, own_rows):
    def named(*numbers):
        return [{"name": f"{own_rows.tag} {n}", "id": own_rows.id(n)} for n in numbers]

    url = f"/mytable/?select=name,id&{own_rows.only}&limit=2&order=name.desc"
    page = http.get(url)
    assert page.json() == named(9, 8)  # as text, "9" sorts after "30"
    assert http.get(next_link(page)).json() == named(7, 6)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("nosuch=eq.1", "nosuch"),
        ("id=foo.1", "id"),
        ("id=eq", "id"),
        ("id=eq.abc", "id"),
        ("id=eq.1.5", "id"),
        ("id=eq.99999999999999999999", "id"),
        ("created_at=gt.yesterday", "created_at"),
        ("id=in.1,2", "id"),
        ("id=in.()", "id"),
        ("id=in.(1,x)", "id"),
        ('id=in.("1,2)', "id"),
        ("name=in.(a,)", "name"),
        ("data=eq.{}", "data"),
        ("id=like.1*", "id"),
        ("id=is.maybe", "id"),
        ("id=is.true", "id"),
        ("select=id,nosuch", "select"),
        ("select=*,(*)", "select"),
        ("select=", "select"),
        ("select=id&select=name", "select"),
        ("order=nosuch", "order"),
        ("order=id.sideways", "order"),
        ("order=id,id", "order"),
        ("order=name%3BDROP TABLE mytable", "order"),
        ("limit=1e5", "limit"),
        ("offset=-1", "offset"),
        ("cursor=abc", "cursor"),
        ("cursor=YWJj.ZGVm", "cursor"),
        ("id)%3BDROP TABLE mytable%3B--=eq.1", "id);DROP TABLE mytable;--"),
    ],
)
def test_bad_queries_are_400_naming_the_parameter(http, query, parameter):
    body = assert_problem(http.get(f"/mytable/?{query}"), 400)
    assert body["parameter"] == parameter
    assert body["detail"]


def test_injection_in_a_value_is_just_a_value(http):
    for value in ("'; DROP TABLE mytable; --", "1 OR 1=1", '" OR ""="', "\\'; --"):
        response = http.get("/mytable/", params={"name": f"eq.{value}"})
        assert response.status_code == 200
        assert response.json() == []
    assert http.get("/mytable/1").status_code == 200  # the table is still there


def test_a_tampered_or_foreign_cursor_is_400(http, own_rows):
    only = own_rows.only
    page = http.get(f"/mytable/?{only}&limit=2&order=name")
    cursor = next_link(page).split("cursor=")[1]
    tampered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    assert_problem(http.get(f"/mytable/?{only}&limit=2&order=name&cursor={tampered}"), 400)
    other_order = http.get(f"/mytable/?{only}&limit=2&order=id.desc&cursor={cursor}")
    assert "another order" in assert_problem(other_order, 400)["detail"]


@pytest.mark.parametrize(
    ("query", "count"),
    [
        ("flag=is.true", 4),
        ("flag=is.false", 3),
        ("flag=is.null", 3),
        ("flag=not.is.null", 7),
        ("score=is.null", 4),
        ("flag=eq.true&score=gte.2", 2),
        ("score=not.in.(1,2)", 2),
    ],
)
def test_is_filters_on_a_nullable_boolean(http, query, count):
    assert len(http.get(f"/probe_nullable/?{query}").json()) == count


@pytest.mark.parametrize(
    "query",
    ["limit=abc", "offset=x", "offset=-1", "limit=1&limit=2", "cursor=x", "limit=1e3"],
)
def test_bad_paging_parameters_are_400(http, query):
    body = assert_problem(http.get(f"/mytable/?{query}"), 400)
    assert body["parameter"] in query


def test_a_whole_number_too_long_for_a_page_says_so(http):
    """It was "must be a whole number", which it is."""
    body = assert_problem(http.get("/mytable/?offset=99999999999999999999"), 400)
    assert body["detail"] == "'offset' must be a whole number of at most 15 digits"
    body = assert_problem(http.get("/mytable/?limit=1.5"), 400)
    assert body["detail"] == "'limit' must be a whole number"


def test_a_negative_limit_is_postgrest_s_416(http):
    body = assert_problem(http.get("/mytable/?limit=-1"), 416)
    assert (body["code"], body["parameter"]) == ("PGRST103", "limit")
    # -0 is no negative number: it was a 416 that asked for at least zero.
    body = assert_problem(http.get("/mytable/?limit=-0"), 400)
    assert body["detail"] == "'limit' must be a whole number"


def test_limit_is_capped_by_the_largest_page_and_zero_is_no_rows(http, database_url):
    app = make_app(database_url, **{"api.page_limit_max": "3", "api.page_limit_default": "2"})
    try:
        client = webtest.TestApp(app)
        assert len(client.get("/mytable/").json) == 2  # no limit: api.page_limit_default
        capped = client.get("/mytable/?limit=100000&select=id")  # PostgREST's db-max-rows
        assert (len(capped.json), capped.headers["content-range"]) == (3, "0-2/*")
        exported = client.get("/mytable/?limit=5&select=id", headers={"Accept": "text/csv"})
        assert len(exported.text.splitlines()) == 1 + 5  # an export is no page: not capped
    finally:
        app.close()
    none = http.get("/mytable/?limit=0")
    assert (none.status_code, none.json(), none.headers["content-range"]) == (200, [], "*/*")
    assert "link" not in none.headers


COLUMNS = ["id", "name", "data", "version", "created_at", "updated_at"]


OPERATORS = ["eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "in", "is", "not", "nope"]


hostile_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "'",
            '"',
            "\\",
            "%",
            "_",
            "*",
            "(",
            ")",
            ",",
            ".",
            "--",
            ";",
            "\x00",
            "1 OR 1=1",
            "'; DROP TABLE mytable; --",
            "(1,2",
            '("a,b)',
            "null",
            "true",
            "9" * 30,
            "-0",
            "1e9",
        ]
    ),
)


keys = st.one_of(
    st.sampled_from([*COLUMNS, "select", "order", "limit", "cursor"]), st.text(max_size=12)
)


values = (
    st.builds(
        lambda negate, op, rest: ("not." if negate else "") + op + "." + rest,
        st.booleans(),
        st.sampled_from(OPERATORS),
        hostile_text,
    )
    | hostile_text
)


PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@PROPERTY_SETTINGS
@given(params=st.lists(st.tuples(keys, values), max_size=5))
def test_no_query_string_causes_a_server_error(wsgi_app, params):
    app = webtest.TestApp(wsgi_app)
    query = urllib.parse.urlencode(params)
    response = app.get(f"/mytable/?{query}", expect_errors=True)
    # A negative limit is PostgREST's 416, as range(5, 2) sends it.
    negative = any(k == "limit" and re.fullmatch(r"-0*[1-9][0-9]*", v) for k, v in params)
    allowed = (200, 400, 416) if negative else (200, 400)
    assert response.status_int in allowed, (query, response.text)
    expected_type = (
        "application/json" if response.status_int == 200 else "application/problem+json"
    )
    assert response.content_type == expected_type


# Pieces of hostile query strings, as raw bytes: broken escapes, bytes that are
# not UTF-8, non-ASCII digits, instants past the calendar, operators.
RAW_PIECES = [
    b"%FF",
    b"%C2%B2",
    b"%",
    b"%2",
    b"%E2%82",
    b"%00",
    b"\xff",
    b"\xc3",
    b"=",
    b"&",
    b"+",
    b"eq.",
    b"in.(",
    b")",
    b"not.",
    b"is.",
    b"like.",
    b"id",
    b"name",
    b"data",
    b"version",
    b"created_at",
    b"limit",
    b"cursor",
    b"select",
    b"order",
    b".desc",
    b",",
    b'"',
    b"0001-01-01T00:00:00%2B14:00",
    b"9999-12-31T23:59:59-14:00",
    b"9" * 30,
    b"-0",
    b"nan",
]
raw_query_strings = st.lists(
    st.one_of(st.binary(max_size=6), st.sampled_from(RAW_PIECES)), max_size=12
).map(b"".join)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=raw_query_strings, accept=st.sampled_from(["application/json", "text/csv"]))
def test_no_raw_query_string_causes_a_server_error(wsgi_app, raw, accept):
    """Whatever bytes the query string holds: a page (or an export) or a 400, never a 5xx."""
    request = webtest.TestRequest.blank("/mytable/", headers={"Accept": accept})
    request.environ["QUERY_STRING"] = raw.decode("latin-1")  # as a server hands it on
    response = request.get_response(wsgi_app)
    assert response.status_int in (200, 400), (raw, response.text)
    if response.status_int == 400:
        assert response.content_type == "application/problem+json"


def test_the_in_list_parser_is_linear_in_its_input():
    """A hostile in.(...) list: eight times the input takes about eight times
    as long (a backtracking parser took 64 times, seconds for 60,000 spaces)."""
    from api.errors import BadRequest
    from api.models import mytable
    from api.querystring import parse_filter

    def seconds(size):
        hostile = 'in.("a' + ' ,"' * size + ")"
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            with pytest.raises(BadRequest):
                parse_filter(mytable.c.id, hostile, "id")
            best = min(best, time.perf_counter() - started)
        return best

    ratio = seconds(64_000) / seconds(8_000)
    assert ratio < 20, ratio


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("in.(a,b,c)", ("a", "b", "c")),
        ("in.( a , b )", ("a", "b")),
        ('in.("a,b",c)', ("a,b", "c")),
        ('in.("a\\"b")', ('a"b',)),
        ("in.(a,,b)", ("a", "", "b")),
        ("in.(a b,c)", ("a b", "c")),
        ('in.("x" ,y)', ("x", "y")),
        # as PostgREST reads them: a quote that does not close the item is itself
        ('in.(O"Neil,b)', ('O"Neil', "b")),
        ('in.("hi" there,b)', ('"hi" there', "b")),
        ('in.("a,b)', ('"a', "b")),
    ],
)
def test_in_lists_bare_and_quoted(text, values):
    from api.models import mytable
    from api.querystring import parse_filter

    assert parse_filter(mytable.c.name, text, "name").value == values


@pytest.fixture(scope="module")
def cased(server):
    """Rows named TAG Abc, TAG abc, TAG a_c and TAG a%c, with data on two of them."""
    import httpx

    tag = unique_name("cased")
    body = [
        {"name": f"{tag} Abc", "data": {"n": 1}},
        {"name": f"{tag} abc"},
        {"name": f"{tag} a_c", "data": {"n": 2}},
        {"name": f"{tag} a%c"},
    ]
    with httpx.Client(base_url=server.url) as client:
        rows = client.post("/mytable/", json=body, headers=WRITER).json()
    return tag, {row["name"].split(" ", 1)[1]: row["id"] for row in rows}


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"name": "like.*Abc"}, ["Abc"]),  # case-sensitive, as PostgreSQL's LIKE
        ({"name": "ilike.*ABC"}, ["Abc", "abc"]),
        ({"name": "like.*a_c"}, ["abc", "a_c", "a%c"]),  # '_' is any one character
        ({"name": "like.*a\\_c"}, ["a_c"]),  # and escaped, itself
        ({"name": "like.%a\\%c"}, ["a%c"]),  # '%' is '*'
        ({"name": "match.A[bc]+$"}, ["Abc"]),
        ({"name": "imatch.a[bc]+$"}, ["Abc", "abc"]),
        ({"name": "not.match.c$"}, []),
        ({"data": "is.not_null"}, ["Abc", "a_c"]),
        ({"data": "is.unknown"}, ["abc", "a%c"]),
        ({"or": "(name.like.*Abc,name.like.*a_c)"}, ["Abc", "abc", "a_c", "a%c"]),
        ({"or": "(name.like.*Abc,and(data.is.null,name.like.*%c))"}, ["Abc", "abc", "a%c"]),
        ({"not.or": "(name.like.*Abc,data.is.null)"}, ["a_c"]),
        ({"name": "like(any).{*Abc,*\\%c}"}, ["Abc", "a%c"]),
        ({"name": "like(all).{* a*,*c}"}, ["abc", "a_c", "a%c"]),
    ],
)
def test_operators_as_postgrest_reads_them(http, cased, params, expected):
    tag, ids = cased
    response = http.get("/mytable/", params={"name": f"like.{tag} *", **params, "order": "id"})
    if "name" in params:  # the tag is ANDed through another filter on name
        response = http.get(
            "/mytable/", params=[("name", f"like.{tag} *"), *params.items(), ("order", "id")]
        )
    assert response.status_code == 200, response.text
    assert [row["id"] for row in response.json()] == [ids[name] for name in expected]


@pytest.fixture(scope="module")
def punctuated(server):
    """Rows whose names hold what PostgREST's lists read specially: a quote,
    a comma, a dot and braces."""
    import httpx

    tag = unique_name("punct")
    names = ['O"Neil', "a.b,c", '"hi" there', "{x,y}"]
    body = [{"name": f"{tag} {name}", "data": [str(n)]} for n, name in enumerate(names)]
    with httpx.Client(base_url=server.url) as client:
        rows = client.post("/mytable/", json=body, headers=WRITER).json()
    return tag, {row["name"].split(" ", 1)[1]: row["id"] for row in rows}


@pytest.mark.parametrize(
    "filter, expected",
    [
        (("name", 'in.({tag} O"Neil,nope)'), ['O"Neil']),
        (("name", 'in.("{tag} a.b,c",{tag} "hi" there)'), ["a.b,c", '"hi" there']),
        (("or", '(name.eq.{tag} O"Neil,name.eq."{tag} a.b,c")'), ['O"Neil', "a.b,c"]),
        (
            ("or", '(name.eq."{tag} \\"hi\\" there",name.in.("{tag} {{x,y}}"))'),
            ['"hi" there', "{x,y}"],
        ),
        (("or", "(data.cd.{{1,2}},name.eq.nope)"), ["a.b,c", '"hi" there']),
        (
            ("or", '(and(data.ov.{{0,3}},name.like.*Neil),name.not.like."*.*")'),
            ['O"Neil', '"hi" there', "{x,y}"],
        ),
        (("not.or", '(name.eq."{tag} a.b,c",name.like.*Neil)'), ['"hi" there', "{x,y}"]),
    ],
)
def test_lists_read_quotes_commas_and_braces_as_postgrest(http, punctuated, filter, expected):
    """postgrest-js quotes an in.(...) value only when it holds a comma or a
    parenthesis, and leaves or=(...) as the caller wrote it."""
    tag, ids = punctuated
    name, value = filter
    params = [("name", f"like.{tag} *"), (name, value.format(tag=tag)), ("order", "id")]
    response = http.get("/mytable/", params=params)
    assert response.status_code == 200, response.text
    assert [row["id"] for row in response.json()] == [ids[label] for label in expected]


def test_isdistinct_treats_null_as_a_value(http, cased):
    tag, ids = cased
    params = [("name", f"like.{tag} *"), ("id", f"isdistinct.{ids['Abc']}"), ("order", "id")]
    assert [row["id"] for row in http.get("/mytable/", params=params).json()] == [
        ids["abc"],
        ids["a_c"],
        ids["a%c"],
    ]


@pytest.mark.parametrize(
    "query",
    [
        "or=(name.eq.x",
        "or=name.eq.x",
        "or=(nope.eq.1)",
        "or=(name.eq)",
        "or=()",
        "name=eq(some).{a}",
        "or=" + "or(" * 9 + "id.eq.1" + ")" * 9,
    ],
)
def test_bad_logic_is_a_400(http, query):
    assert_problem(http.get(f"/mytable/?{query}"), 400)


@pytest.mark.parametrize(
    "operator, reason",
    [("sl", "needs range types"), ("adj", "needs range types"), ("fts", "no FULLTEXT index")],
)
def test_an_operator_this_api_does_not_have_says_why(http, operator, reason):
    problem = assert_problem(http.get(f"/mytable/?name={operator}.x"), 400)
    assert reason in problem["detail"] and problem["parameter"] == "name"


def test_json_arrays_and_objects_filter_by_containment(http):
    tag = unique_name("contains")
    body = [
        {"name": f"{tag} {n}", "data": tags}
        for n, tags in enumerate(
            (["a", "b"], ["b"], ["c"], {"a": 1}, {"a": 1, "k": {"v": [1, 2], "w": "x"}})
        )
    ]
    ids = [row["id"] for row in http.post("/mytable/", json=body, headers=WRITER).json()]

    def found(value):
        params = [("name", f"like.{tag} *"), ("data", value), ("order", "id")]
        response = http.get("/mytable/", params=params)
        assert response.status_code == 200, response.text
        return [ids.index(row["id"]) for row in response.json()]

    assert found("cs.{b}") == [0, 1]
    assert found('cs.["a","b"]') == [0]
    assert found("cd.{a,b}") == [0, 1]
    assert found("ov.{a,c}") == [0, 2]
    # JSON objects, as jsonb's @> and <@: members held, nested, arrays within
    assert found('cs.{"a":1}') == [3, 4]
    assert found('cs.{"k":{"v":[2]}}') == [4]
    assert found('cs.{"k":{"v":[3]}}') == []
    assert found('cd.{"a":1,"b":2}') == [3]
    assert found('not.cs.{"a":1}') == [0, 1, 2]
    assert_problem(http.get("/mytable/", params={"data": 'ov.{"a":1}'}), 400)
    assert_problem(http.get("/mytable/?data=cs.nope"), 400)
    assert_problem(http.get("/mytable/?name=cs.{a}"), 400)


def test_json_paths_filter_and_order(http):
    tag = unique_name("paths")
    body = [{"name": f"{tag} {n}", "data": {"n": n, "k": {"v": f"v{n % 2}"}}} for n in (3, 1, 2)]
    ids = {
        row["data"]["n"]: row["id"]
        for row in http.post("/mytable/", json=body, headers=WRITER).json()
    }
    only = ("name", f"like.{tag} *")
    ordered = http.get("/mytable/", params=[only, ("order", "data->>n.desc"), ("select", "id")])
    assert [row["id"] for row in ordered.json()] == [ids[3], ids[2], ids[1]]
    paged, url, params = (
        [],
        "/mytable/",
        [only, ("order", "data->>n"), ("limit", "1"), ("select", "id")],
    )
    while url:
        response = http.get(url, params=params)
        paged += [row["id"] for row in response.json()]
        url, params = next_link(response), None
    assert paged == [ids[1], ids[2], ids[3]]
    odd = http.get("/mytable/", params=[only, ("data->k->>v", "eq.v1"), ("order", "id")])
    assert [row["id"] for row in odd.json()] == [ids[3], ids[1]]
    assert_problem(http.get("/mytable/?name->>x=eq.1"), 400)  # name holds no JSON


def test_operators_that_differ_only_by_an_option_are_not_confused_by_statement_caches(http, cased):
    """Counts run through SQLAlchemy's statement cache: match and imatch, cs
    and cd, differ only in an option of their clause, which its cache key holds."""
    tag, _ = cased
    counts = {}
    for operator in ("match", "imatch", "match"):
        params = [("name", f"like.{tag} *"), ("name", f"{operator}.A[bc]+$"), ("limit", "0")]
        response = http.get("/mytable/", params=params, headers={"Prefer": "count=exact"})
        counts.setdefault(operator, set()).add(total_of(response))
    assert counts == {"match": {1}, "imatch": {2}}
