"""Embedded resources (PostgREST's ``select=*,name(...)``) and child
collections, on both databases: authors write and edit books (two foreign
keys to one parent), and books carry tags through a junction table."""

import contextlib
import json

import pytest
import sqlalchemy as sa
import webtest

from tests.support import (
    PROBE_SETTINGS,
    WRITER,
    WRITER_ONE,
    assert_problem,
    make_app,
    next_link,
    total_of,
)


def rows(http, path, **params):
    response = http.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_foreign_key_embeds_the_row_it_points_at(http):
    books = rows(
        http, "/probe_book/", select="title,author:probe_author!author_id(name)", order="id"
    )
    assert [(b["title"], b["author"]) for b in books[:2]] == [
        ("Alpha", {"name": "Ann"}),
        ("Beta", {"name": "Ann"}),
    ]
    editors = rows(http, "/probe_book/", select="title,probe_author!editor_id(name)", order="id")
    assert [b["probe_author"] for b in editors[:2]] == [{"name": "Bob"}, None]


def test_an_ambiguous_embed_names_its_hints(http):
    """As PostgREST: 300 Multiple Choices, PGRST201."""
    response = http.get("/probe_book/", params={"select": "*,probe_author(*)"})
    problem = assert_problem(response, 300)
    assert problem["code"] == "PGRST201"
    detail = problem["detail"]
    assert "probe_author!author_id" in detail and "probe_author!editor_id" in detail


def test_the_rows_pointing_at_a_row_embed_as_an_array(http):
    authors = rows(http, "/probe_author/", select="name,probe_book!author_id(title)", order="id")
    assert {a["name"]: [b["title"] for b in a["probe_book"]] for a in authors} == {
        "Ann": ["Alpha", "Beta", "Gamma"],
        "Bob": ["Delta"],
        "Cy": ["Epsilon", "Zeta"],
        "Di": [],
    }


def test_a_foreign_key_column_embeds_the_row_it_points_at(http):
    """PostgREST takes a foreign key's column as the embed's name, as
    supabase-js apps write it (project:project_id(name)); it was a 400."""
    books = rows(
        http,
        "/probe_book/",
        select="title,author:author_id(name),editor_id(name)",
        id="lte.2",
        order="id",
    )
    assert books == [
        {"title": "Alpha", "author": {"name": "Ann"}, "editor_id": {"name": "Bob"}},
        {"title": "Beta", "author": {"name": "Ann"}, "editor_id": None},
    ]
    # In the column's place: an embed after it still joins on its value.
    both = rows(
        http, "/probe_book/", select="editor_id(name),probe_author!editor_id(id)", id="eq.1"
    )
    assert both == [{"editor_id": {"name": "Bob"}, "probe_author": {"id": 2}}]


def test_a_table_that_refers_to_itself_embeds_both_ways(http):
    """Each person's manager (the column's name) and reports (the table's
    own name, PostgREST's default for a recursive key): both were a 400."""
    people = rows(
        http,
        "/probe_person/",
        select="name,manager:manager_id(name,manager:manager_id(name)),reports:probe_person(name)",
        order="id",
    )
    assert people == [
        {"name": "Eve", "manager": None, "reports": [{"name": "Finn"}, {"name": "Gus"}]},
        {
            "name": "Finn",
            "manager": {"name": "Eve", "manager": None},
            "reports": [{"name": "Hal"}],
        },
        {"name": "Gus", "manager": {"name": "Eve", "manager": None}, "reports": []},
        {
            "name": "Hal",
            "manager": {"name": "Finn", "manager": {"name": "Eve"}},
            "reports": [],
        },
    ]
    # The subqueries of !inner and of an order by the manager's column read
    # the table apart from the outer row.
    managed_by_finn = rows(
        http,
        "/probe_person/",
        select="name,manager:manager_id!inner(name)",
        **{"manager.name": "eq.Finn"},
    )
    assert managed_by_finn == [{"name": "Hal", "manager": {"name": "Finn"}}]
    managers = rows(http, "/probe_person/", select="name,probe_person!inner(id)", order="id")
    assert [p["name"] for p in managers] == ["Eve", "Finn"]
    by_manager = rows(http, "/probe_person/", select="name", order="manager_id(name).desc,id")
    assert [p["name"] for p in by_manager] == ["Eve", "Hal", "Finn", "Gus"]


def test_a_junction_table_embeds_many_to_many(http):
    books = rows(http, "/probe_book/", select="title,probe_tag(label)", id="lte.3", order="id")
    assert [(b["title"], [t["label"] for t in b["probe_tag"]]) for b in books] == [
        ("Alpha", ["new", "old"]),
        ("Beta", ["old"]),
        ("Gamma", []),
    ]
    tags = rows(http, "/probe_tag/", select="label,probe_book(title)", order="id")
    assert [[b["title"] for b in t["probe_book"]] for t in tags] == [
        ["Alpha", "Epsilon"],
        ["Alpha", "Beta"],
        [],
    ]


def test_embeds_nest(http):
    (ann,) = rows(
        http,
        "/probe_author/",
        select="name,wrote:probe_book!author_id(title,probe_tag(label),editor:probe_author!editor_id(name))",
        id="eq.1",
    )
    assert ann["wrote"] == [
        {
            "title": "Alpha",
            "probe_tag": [{"label": "new"}, {"label": "old"}],
            "editor": {"name": "Bob"},
        },
        {"title": "Beta", "probe_tag": [{"label": "old"}], "editor": None},
        {"title": "Gamma", "probe_tag": [], "editor": {"name": "Cy"}},
    ]


def test_an_embed_takes_its_own_filters_order_and_limit(http):
    authors = rows(
        http,
        "/probe_author/",
        **{
            "select": "name,books:probe_book!author_id(title)",
            "order": "id",
            "books.title": "neq.Beta",
            "books.order": "title.desc",
            "books.limit": "1",
        },
    )
    assert [[b["title"] for b in a["books"]] for a in authors] == [
        ["Gamma"],
        ["Delta"],
        ["Zeta"],
        [],
    ]


def test_an_embed_takes_its_own_logic(http):
    """``books.or=(...)``, ``books.not.or=``, ``books.and=``, as PostgREST
    reads them (supabase-js's ``or(..., {referencedTable})`` sends the
    first); with !inner they choose the parent rows too."""
    select = {"select": "name,books:probe_book!author_id(title)", "order": "id"}
    ordered = {**select, "books.order": "title"}
    for logic, titles in [
        ({"books.or": "(title.eq.Alpha,title.like.Z*)"}, [["Alpha"], [], ["Zeta"], []]),
        (
            {"books.not.or": "(title.eq.Alpha,title.like.Z*)"},
            [["Beta", "Gamma"], ["Delta"], ["Epsilon"], []],
        ),
        (
            {"books.and": "(title.like.*a,or(title.like.B*,title.like.Z*))"},
            [["Beta"], [], ["Zeta"], []],
        ),
    ]:
        authors = rows(http, "/probe_author/", **ordered, **logic)
        assert [[b["title"] for b in a["books"]] for a in authors] == titles, logic
    inner = {**ordered, "select": "name,books:probe_book!author_id!inner(title)"}
    matched = rows(
        http, "/probe_author/", **inner, **{"books.or": "(title.eq.Delta,title.eq.Zeta)"}
    )
    assert [a["name"] for a in matched] == ["Bob", "Cy"]
    # !left says the default (postgrest-js's parser takes it): every author
    left = {**ordered, "select": "name,books:probe_book!author_id!left(title)"}
    every = rows(http, "/probe_author/", **left, **{"books.or": "(title.eq.Delta,title.eq.Zeta)"})
    assert [(a["name"], len(a["books"])) for a in every] == [
        ("Ann", 0),
        ("Bob", 1),
        ("Cy", 1),
        ("Di", 0),
    ]
    both = {**select, "select": "name,probe_book!inner!left(title)"}
    assert_problem(http.get("/probe_author/", params=both), 400)
    refused = http.get("/probe_author/", params={**select, "books.or": "(nope.eq.1)"})
    assert assert_problem(refused, 400)["parameter"] == "books.or"


def test_an_embed_of_aggregates_is_grouped_within_each_row(http):
    """``books(count())`` counts each author's books (supabase's ``books(count)``);
    a row without one counts 0, as an aggregate over no rows does. Other
    columns group within each row. It was the count of every author's books,
    on the first author."""
    counted = "name,books:probe_book!author_id(count())"
    authors = rows(http, "/probe_author/", select=counted, order="id")
    assert [(a["name"], a["books"]) for a in authors] == [
        ("Ann", [{"count": 3}]),
        ("Bob", [{"count": 1}]),
        ("Cy", [{"count": 2}]),
        ("Di", [{"count": 0}]),
    ]
    ending_in_a = rows(
        http, "/probe_author/", select=counted, order="id", **{"books.title": "like.*a"}
    )
    assert [a["books"][0]["count"] for a in ending_in_a] == [3, 1, 1, 0]
    by_editor = rows(
        http,
        "/probe_author/",
        select="name,books:probe_book!author_id(editor_id,n:count())",
        order="id",
        **{"books.order": "editor_id.desc.nullslast"},
    )
    assert [a["books"] for a in by_editor] == [
        [{"editor_id": 3, "n": 1}, {"editor_id": 2, "n": 1}, {"editor_id": None, "n": 1}],
        [{"editor_id": 1, "n": 1}],
        [{"editor_id": 1, "n": 1}, {"editor_id": None, "n": 1}],
        [],
    ]
    for params, parameter in [
        ({"books.limit": "1"}, "select"),
        ({"books.order": "title"}, "books.order"),
    ]:
        refused = http.get("/probe_author/", params={"select": counted, **params})
        assert assert_problem(refused, 400)["parameter"] == parameter


def test_a_spread_may_take_the_name_of_the_column_it_joins_on(http):
    """``...language(*)`` on films: the language's own language_id joins the
    row, which reads film.language_id to join it. It was a 400, "names two
    things"; every join value is taken before any embed joins the row. An
    order key keeps its name: the cursor reads it."""
    people = rows(
        http, "/probe_person/", select="name,...manager_id(boss:name,manager_id)", order="id"
    )
    assert people == [
        {"name": "Eve", "boss": None, "manager_id": None},
        {"name": "Finn", "boss": "Eve", "manager_id": None},
        {"name": "Gus", "boss": "Eve", "manager_id": None},
        {"name": "Hal", "boss": "Finn", "manager_id": 1},  # Finn's manager
    ]
    ordered = http.get(
        "/probe_person/",
        params={"select": "name,...manager_id(manager_id)", "order": "manager_id"},
    )
    assert "names two things" in assert_problem(ordered, 400)["detail"]


def test_an_embed_shows_its_key_as_text_and_still_joins_on_it(http):
    """``id::text`` in an embed whose own embed joins on ``id``: the text
    took the key's place in the rows, and the nested embed joined on "1",
    finding nothing (a 400 before select=id::text was taken)."""
    select = "name,books:probe_book!author_id(id::text,probe_tag(label))"
    books = [
        {"id": "1", "probe_tag": [{"label": "new"}, {"label": "old"}]},
        {"id": "2", "probe_tag": [{"label": "old"}]},
        {"id": "3", "probe_tag": []},
    ]
    (ann,) = rows(http, "/probe_author/", select=select, id="eq.1")
    assert ann == {"name": "Ann", "books": books}
    (limited,) = rows(http, "/probe_author/", select=select, id="eq.1", **{"books.limit": "2"})
    assert limited["books"] == books[:2]


def test_aggregates_are_grouped_by_the_row_a_foreign_key_points_at(http):
    """PostgREST's ``amount.sum(),customers(name)``: the embed is a grouping
    column, an object (null where the key points nowhere, told apart from an
    object of nulls); a spread's columns group as the row's own. It was a
    400."""
    by_author = rows(http, "/probe_book/", select="count(),author:probe_author!author_id(name)")
    assert by_author == [
        {"count": 3, "author": {"name": "Ann"}},
        {"count": 1, "author": {"name": "Bob"}},
        {"count": 2, "author": {"name": "Cy"}},
    ]
    by_editor = rows(http, "/probe_book/", select="n:count(),editor_id(name)")
    assert by_editor == [
        {"n": 2, "editor_id": {"name": "Ann"}},
        {"n": 1, "editor_id": {"name": "Bob"}},
        {"n": 1, "editor_id": {"name": "Cy"}},
        {"n": 2, "editor_id": None},
    ]
    spread = rows(http, "/probe_book/", select="count(),...probe_author!editor_id(editor:name)")
    assert spread == [
        {"count": 2, "editor": "Ann"},
        {"count": 1, "editor": "Bob"},
        {"count": 1, "editor": "Cy"},
        {"count": 2, "editor": None},
    ]
    # Grouped by the row's own columns too; one group of rows a page.
    page = http.get(
        "/probe_book/",
        params={"select": "author_id,count(),editor:editor_id(name)", "limit": "2", "offset": "1"},
        headers={"Prefer": "count=exact"},
    )
    assert page.json() == [
        {"author_id": 1, "count": 1, "editor": {"name": "Cy"}},
        {"author_id": 1, "count": 1, "editor": None},
    ]
    assert page.headers["Content-Range"] == "1-2/6"


def test_a_spread_embeds_aggregates_over_the_parent_rows(http):
    """PostgREST's ``order_date,...customers(joined_date.max())``: a spread's
    aggregates are the parent's, over its rows and grouped by its columns."""
    firsts = rows(
        http,
        "/probe_book/",
        select="editor_id,...probe_author!author_id(first:name.min(),n:count())",
        order="editor_id.nullsfirst",
    )
    assert firsts == [
        {"editor_id": None, "first": "Ann", "n": 2},
        {"editor_id": 1, "first": "Bob", "n": 2},
        {"editor_id": 2, "first": "Ann", "n": 1},
        {"editor_id": 3, "first": "Ann", "n": 1},
    ]


def test_an_embed_beside_aggregates_is_filtered_in_its_join(http):
    """A filter on the embed makes it null where it fails, as an embed's
    does; ``!inner`` and ``rel=is.null`` keep the parent rows with a match,
    or without one. A table embeds itself through an alias of its own."""
    select = "count(),author:probe_author!author_id(name)"
    filtered = rows(http, "/probe_book/", select=select, **{"author.name": "like.A*"})
    assert filtered == [{"count": 3, "author": {"name": "Ann"}}, {"count": 3, "author": None}]
    inner = select.replace("author_id(", "author_id!inner(")
    only_ann = rows(http, "/probe_book/", select=inner, **{"author.name": "eq.Ann"})
    assert only_ann == [{"count": 3, "author": {"name": "Ann"}}]
    unedited = rows(http, "/probe_book/", select="count(),editor_id(name)", editor_id="is.null")
    assert unedited == [{"count": 2, "editor_id": None}]
    managed = rows(http, "/probe_person/", select="count(),manager:manager_id(name)")
    assert managed == [
        {"count": 2, "manager": {"name": "Eve"}},
        {"count": 1, "manager": {"name": "Finn"}},
        {"count": 1, "manager": None},
    ]


def test_aggregates_refuse_embeds_they_cannot_group_by(http):
    for path, select, says in [
        ("/probe_author/", "name,count(),probe_book!author_id(title)", "holds many rows"),
        ("/probe_book/", "count(),author:probe_author!author_id(count())", "spread it"),
        ("/probe_book/", "count(),author_id(name,probe_book!author_id(id))", "no embeds"),
    ]:
        refused = http.get(path, params={"select": select})
        problem = assert_problem(refused, 400)
        assert problem["parameter"] == "select" and says in problem["detail"], problem
    limited = http.get(
        "/probe_book/",
        params={"select": "count(),author:probe_author!author_id(name)", "author.limit": "1"},
    )
    assert "no embeds, order, limit or offset" in assert_problem(limited, 400)["detail"]


def test_an_embed_of_aggregates_is_off_unless_aggregates_are(database_url):
    """``count()`` is refused with aggregates off; ``count``, PostgREST's
    legacy count (supabase-js's guides write ``cities(count)``), is not."""
    app = make_app(database_url, **{**PROBE_SETTINGS, "api.aggregates_enabled": "false"})
    try:
        client = webtest.TestApp(app)
        select = "name,probe_book!author_id(count())"
        refused = client.get(f"/probe_author/?select={select}&order=id", status=400)
        assert refused.json["code"] == "PGRST123"
        legacy = client.get(
            "/probe_author/?select=name,books:probe_book!author_id(count)&order=id"
        )
        assert [a["books"] for a in legacy.json] == [[{"count": n}] for n in (3, 1, 2, 0)]
    finally:
        app.close()


def test_an_embed_takes_its_own_offset_with_or_without_a_limit(http):
    select = {"select": "name,books:probe_book!author_id(title)", "order": "id"}
    ordered = {**select, "books.order": "title"}
    for paging, titles in [
        ({"books.offset": "1"}, [["Beta", "Gamma"], [], ["Zeta"], []]),
        ({"books.offset": "1", "books.limit": "1"}, [["Beta"], [], ["Zeta"], []]),
        ({"books.offset": "0", "books.limit": "1"}, [["Alpha"], ["Delta"], ["Epsilon"], []]),
        ({"books.offset": "5"}, [[], [], [], []]),
    ]:
        authors = rows(http, "/probe_author/", **ordered, **paging)
        assert [[b["title"] for b in a["books"]] for a in authors] == titles, paging
    refused = http.get("/probe_author/", params={**select, "books.offset": "-1"})
    assert assert_problem(refused, 400)["parameter"] == "books.offset"


def test_inner_keeps_only_the_rows_with_a_match_and_counts_them(http):
    params = {"select": "name,probe_book!author_id!inner(title)", "probe_book.title": "like.*ta"}
    response = http.get("/probe_author/", params=params, headers={"Prefer": "count=exact"})
    assert [a["name"] for a in response.json()] == ["Ann", "Bob", "Cy"]  # Beta Delta Zeta
    assert total_of(response) == 3
    names, url, params = [], "/probe_author/", {**params, "limit": "1"}
    while url:  # the cursor keeps the match
        page = http.get(url, params=params)
        names += [a["name"] for a in page.json()]
        url, params = next_link(page), None
    assert names == ["Ann", "Bob", "Cy"]


@contextlib.contextmanager
def counted_statements():
    """The SQL statements run meanwhile, in this process (the test's server too)."""
    seen = []

    def count(connection, cursor, statement, *args):
        seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)


@pytest.mark.parametrize("limit", ["1", "4"])
def test_a_page_costs_one_statement_per_embed_whatever_its_size(http, limit):
    select = "name,probe_book!author_id(title,probe_tag(label)),edited:probe_book!editor_id(title)"
    http.get("/probe_author/", params={"select": select, "limit": limit})  # statements cached
    with counted_statements() as seen:
        response = http.get("/probe_author/", params={"select": select, "limit": limit})
    assert len(response.json()) == int(limit)
    assert len(seen) == 4, seen  # the page, books, their tags, books edited


@pytest.mark.parametrize(
    ("select", "code"),
    [
        # PostgREST's codes: no such relationship; a parse error; no such column
        ("*,nothing(*)", "PGRST200"),
        ("*,probe_tag(*)", "PGRST200"),  # not related to authors
        ("*,probe_book!no_such_key(*)", "PGRST200"),
        ("*,probe_book!author_id(title", "PGRST100"),
        ("*,probe_book!author_id(title))", "PGRST100"),
        ("*,a(b(c(d(e(f)))))", "PGRST100"),
        ("*,probe_book!author_id(nope)", "42703"),
    ],
)
def test_a_bad_embed_is_a_400_that_names_select(http, select, code):
    response = http.get("/probe_author/", params={"select": select})
    problem = assert_problem(response, 400)
    assert (problem["parameter"], problem["code"]) == ("select", code)


def test_a_select_embeds_at_most_16_resources(http):
    """Each embed is a statement and a share of the answer, and many fit in a URL."""
    books = [f"b{n}:probe_book!author_id(title)" for n in range(15)]
    sixteen = ["*", *books, "e:probe_book!editor_id(title)"]
    authors = rows(http, "/probe_author/", select=",".join(sixteen), order="id")
    assert authors[0]["b14"] == authors[0]["b0"] != []
    seventeen = ",".join([*sixteen, "x:probe_book!author_id(id)"])
    body = assert_problem(http.get("/probe_author/", params={"select": seventeen}), 400)
    assert body["parameter"] == "select"
    assert body["detail"] == "a select embeds at most 16 resources"
    # Nested ones count: 9 books, each with its tags, are 18.
    nested = [f"b{n}:probe_book!author_id(title,probe_tag(label))" for n in range(9)]
    body = assert_problem(http.get("/probe_author/", params={"select": ",".join(nested)}), 400)
    assert body["detail"] == "a select embeds at most 16 resources"


def test_an_embed_of_more_rows_than_an_answer_holds_is_a_400(http, monkeypatch):
    monkeypatch.setattr("api.reads.embeds.MAX_EMBEDDED_ROWS", 3)
    books = "name,probe_book!author_id(title)"
    ann = rows(http, "/probe_author/", select=books, id="eq.1")  # her 3 books: at the bound
    assert [b["title"] for b in ann[0]["probe_book"]] == ["Alpha", "Beta", "Gamma"]
    body = assert_problem(http.get("/probe_author/", params={"select": books}), 400)
    assert body["parameter"] == "select"
    assert "'probe_book' would embed more than 3 rows" in body["detail"]
    # Limited per row, the same page fits.
    limited = rows(http, "/probe_author/", select=books, order="id", **{"probe_book.limit": "1"})
    assert [len(a["probe_book"]) for a in limited] == [1, 1, 1, 0]
    # A write whose answer would hold too many is refused whole.
    response = http.patch(
        "/probe_author/",
        params={"id": "lte.2", "select": books},
        json={"name": "Renamed"},
        headers={**WRITER, "Prefer": "return=representation"},
    )
    assert "would embed more than 3 rows" in assert_problem(response, 400)["detail"]
    assert rows(http, "/probe_author/", select="name", name="eq.Renamed") == []


def test_rows_embedded_under_many_parents_count_each_time_they_are_written(http, monkeypatch):
    """A row embedded under several parents is read once and written under
    each: a page of Sakila's payments, each with its staff member and all of
    that member's payments, read few rows and wrote millions; a few such
    requests at once held a worker past gunicorn's timeout, and it was
    killed with every request on it. The bound counts the rows as written."""
    monkeypatch.setattr("api.reads.embeds.MAX_EMBEDDED_ROWS", 12)
    select = "title,a:probe_author!author_id(name,probe_book!author_id(title))"
    # 3 authors and their 6 books are read; 6 authors and 14 books would be written.
    body = assert_problem(http.get("/probe_book/", params={"select": select}), 400)
    assert body["parameter"] == "select"
    assert "'a' with the rows embedded in it would embed more than 12 rows" in body["detail"]
    # Alpha and Beta: Ann twice, with her 3 books each time (8 rows).
    two = rows(http, "/probe_book/", select=select, order="id", limit="2")
    assert [[b["title"] for b in book["a"]["probe_book"]] for book in two] == [
        ["Alpha", "Beta", "Gamma"],
        ["Alpha", "Beta", "Gamma"],
    ]
    # Limited per author, the whole page fits: 6 authors and 6 books, at the bound.
    limited = rows(http, "/probe_book/", select=select, **{"a.probe_book.limit": "1"})
    assert sum(len(book["a"]["probe_book"]) for book in limited) == 6


def test_exports_do_not_embed(http):
    response = http.get(
        "/probe_author/",
        params={"select": "*,probe_book!author_id(*)"},
        headers={"Accept": "text/csv"},
    )
    assert assert_problem(response, 400)["parameter"] == "select"


def test_each_foreign_key_gives_the_parent_item_a_child_collection(http):
    written = rows(http, "/probe_author/1/probe_book_by_author_id/")
    edited = rows(http, "/probe_author/1/probe_book_by_editor_id/")
    assert [b["title"] for b in written] == ["Alpha", "Beta", "Gamma"]
    assert [b["title"] for b in edited] == ["Delta", "Epsilon"]
    assert [t["tag_id"] for t in rows(http, "/probe_book/1/probe_book_tag/")] == [1, 2]
    assert_problem(http.get("/probe_author/1/probe_book/"), 404)  # two keys: named by column
    assert_problem(http.get("/probe_author/1/probe_book_by_author_id/4"), 404)  # Bob's


def test_a_child_collection_embeds_and_creates_under_its_parent(http):
    books = rows(http, "/probe_author/2/probe_book_by_author_id/", select="title,probe_tag(label)")
    assert books[0] == {"title": "Delta", "probe_tag": []}
    created = http.post("/probe_tag/3/probe_book_tag/", json={"book_id": 6}, headers=WRITER_ONE)
    assert created.status_code in (201, 409), created.text  # 409: the other backend's run
    assert created.status_code == 409 or created.json() == {"book_id": 6, "tag_id": 3}
    assert {"label": "odd"} in rows(http, "/probe_book/", select="probe_tag(label)", id="eq.6")[0][
        "probe_tag"
    ]


def test_select_star_is_every_column(http):
    assert rows(http, "/probe_author/", select="*", id="eq.1") == [{"id": 1, "name": "Ann"}]


def test_an_embed_filtered_by_is_null_keeps_the_rows_without_a_match(http):
    """PostgREST's anti-join: rel=is.null; rel=not.is.null is !inner."""
    params = {"select": "name,probe_book!author_id(title)", "order": "id"}
    without = rows(http, "/probe_author/", **params, probe_book="is.null")
    assert [a["name"] for a in without] == ["Di"]
    having = http.get(
        "/probe_author/",
        params={**params, "probe_book": "not.is.null"},
        headers={"Prefer": "count=exact"},
    )
    assert [a["name"] for a in having.json()] == ["Ann", "Bob", "Cy"]
    assert total_of(having) == 3
    assert_problem(http.get("/probe_author/", params={**params, "probe_book": "eq.1"}), 400)


def test_rows_order_by_a_column_of_the_row_a_foreign_key_points_at(http):
    """PostgREST's order=rel(column), for a to-one relation, through pages."""
    order = "probe_author!author_id(name).desc,title"
    select = "title,author:probe_author!author_id(name)"
    books = rows(http, "/probe_book/", select=select, order=order)
    assert [(b["author"]["name"], b["title"]) for b in books] == [
        ("Cy", "Epsilon"),
        ("Cy", "Zeta"),
        ("Bob", "Delta"),
        ("Ann", "Alpha"),
        ("Ann", "Beta"),
        ("Ann", "Gamma"),
    ]
    paged, response = (
        [],
        http.get("/probe_book/", params={"select": select, "order": order, "limit": 2}),
    )
    while True:
        assert response.status_code == 200, response.text
        paged += response.json()
        if not next_link(response):
            break
        response = http.get(next_link(response))
    assert paged == books
    export = http.get(
        "/probe_book/",
        params={"select": "title", "order": order},
        headers={"Accept": "application/x-ndjson"},
    )
    assert [json.loads(line) for line in export.text.splitlines()] == [
        {"title": b["title"]} for b in books
    ]
    problem = assert_problem(http.get("/probe_book/", params={"order": "probe_author(name)"}), 400)
    assert "more than one foreign key" in problem["detail"]
    for wrong in ("probe_tag(label)", "probe_author!author_id(nope)"):
        assert_problem(http.get("/probe_book/", params={"order": wrong}), 400)


def test_a_write_answers_the_select_it_asks_for_with_embeds(http):
    """PostgREST's return=representation with select: columns, aliases,
    casts and embeds of the rows written, in the write's own transaction."""
    headers = {**WRITER, "Prefer": "return=representation"}
    select = "title,n:id::text,author:probe_author!author_id(name),probe_tag(label)"
    response = http.post(
        "/probe_book/",
        params={"select": select},
        json={"title": "Eta", "author_id": 2, "editor_id": 3},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    (made,) = response.json()
    assert made["title"] == "Eta" and made["author"] == {"name": "Bob"} and made["probe_tag"] == []
    book = made["n"]
    assert isinstance(book, str)
    response = http.patch(
        "/probe_book/",
        params={"id": f"eq.{book}", "select": "title,editor:probe_author!editor_id(name)"},
        json={"title": "Eta 2", "editor_id": 4},
        headers=headers,
    )
    assert response.json() == [{"title": "Eta 2", "editor": {"name": "Di"}}]
    response = http.delete(
        "/probe_book/",
        params={"id": f"eq.{book}", "select": "id,probe_author!author_id(name)"},
        headers=headers,
    )
    assert response.json() == [{"id": int(book), "probe_author": {"name": "Bob"}}]
    assert rows(http, "/probe_book/", id=f"eq.{book}") == []


def test_a_spread_puts_an_embed_s_columns_in_the_row(http):
    """PostgREST's ...rel(columns): a to-one embed's members join the row; a
    to-many embed's become arrays (PostgREST 13)."""
    books = rows(
        http, "/probe_book/", select="title,...probe_author!author_id(author:name)", order="id"
    )
    assert books[:4] == [
        {"title": "Alpha", "author": "Ann"},
        {"title": "Beta", "author": "Ann"},
        {"title": "Gamma", "author": "Ann"},
        {"title": "Delta", "author": "Bob"},
    ]
    edited = rows(http, "/probe_book/", select="title,...probe_author!editor_id(name)", id="eq.2")
    assert edited == [{"title": "Beta", "name": None}]
    authors = rows(
        http, "/probe_author/", select="name,...probe_book!author_id(title)", order="id"
    )
    assert authors == [
        {"name": "Ann", "title": ["Alpha", "Beta", "Gamma"]},
        {"name": "Bob", "title": ["Delta"]},
        {"name": "Cy", "title": ["Epsilon", "Zeta"]},
        {"name": "Di", "title": []},
    ]
    # Pages through cursors hold the same rows as the whole.
    select = "id,...probe_author!author_id(name)"
    paged, response = [], http.get("/probe_book/", params={"select": select, "limit": 4})
    while True:
        paged += response.json()
        if not next_link(response):
            break
        response = http.get(next_link(response))
    assert paged == rows(http, "/probe_book/", select=select)
    for clash in (
        "title,...probe_author!author_id(title:name)",
        "*,...probe_author!author_id(id)",
    ):
        assert_problem(http.get("/probe_book/", params={"select": clash}), 400)
