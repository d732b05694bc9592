"""An unmodified PostgREST client, postgrest-py (the Supabase client for
PostgREST), against the live API on both databases: what it asks and what
PostgREST would answer."""

from datetime import datetime

import httpx
import pytest
import webtest
from postgrest import APIError, SyncPostgrestClient
from postgrest.types import CountMethod, ReturnMethod
from sqlalchemy.engine import make_url

from tests.support import (
    WRITER,
    assert_problem,
    fetch_sql,
    make_app,
    next_link,
    unique_name,
)


@pytest.fixture
def client(server):
    with SyncPostgrestClient(server.url, headers={"Authorization": "Bearer writer-secret"}) as c:
        yield c


@pytest.fixture
def rows(client):
    """Ten rows of this test's own, named TAG 0 to TAG 9."""
    tag = unique_name("pg")
    made = []
    for batch in (range(5), range(5, 10)):  # api.max_batch_rows is 5 in the suite
        body = [{"name": f"{tag} {n}", "data": {"n": n}} for n in batch]
        made += client.from_("mytable").insert(body).execute().data
    return tag, made


def names(response):
    return [row["name"].rsplit(" ", 1)[1] for row in response.data]


def mine(client, tag):
    return client.from_("mytable").select("id,name").like("name", f"{tag} *")


def test_select_filters_and_order(client, rows):
    tag, made = rows
    assert names(mine(client, tag).order("id").execute()) == [str(n) for n in range(10)]
    assert names(mine(client, tag).order("id", desc=True).limit(2).execute()) == ["9", "8"]
    assert names(mine(client, tag).gte("id", made[7]["id"]).order("id").execute()) == [
        "7",
        "8",
        "9",
    ]
    assert names(
        mine(client, tag).in_("id", [made[1]["id"], made[3]["id"]]).order("id").execute()
    ) == ["1", "3"]
    assert names(
        mine(client, tag).neq("id", made[0]["id"]).lt("id", made[3]["id"]).order("id").execute()
    ) == ["1", "2"]
    assert len(mine(client, tag).not_.eq("id", made[0]["id"]).execute().data) == 9
    star = client.from_("mytable").select("*").eq("id", made[0]["id"]).execute().data
    assert star[0]["data"] == {"n": 0} and star[0]["version"] == 1


def test_range_and_counts_come_as_postgrest_gives_them(client, rows):
    tag, _ = rows
    page = mine(client, tag).order("id").range(2, 4).execute()
    assert names(page) == ["2", "3", "4"]
    counted = (
        client.from_("mytable")
        .select("id", count="exact")
        .like("name", f"{tag} *")
        .limit(1)
        .execute()
    )
    assert counted.count == 10 and len(counted.data) == 1
    for method in ("planned", "estimated"):
        assert client.from_("mytable").select("id", count=method).limit(1).execute().count > 0
    # range(5, 2) sends limit=-2: PostgREST's 416, which the client raises
    with pytest.raises(APIError) as error:
        mine(client, tag).range(5, 2).execute()
    assert error.value.code == "PGRST103"
    assert error.value.details == "Limit should be greater than or equal to zero."
    with pytest.raises(APIError) as error:  # an offset past the counted rows
        counted_rows = client.from_("mytable").select("id", count="exact")
        counted_rows.like("name", f"{tag} *").range(40, 49).execute()
    assert error.value.code == "PGRST103"
    assert error.value.details == "An offset of 40 was requested, but there are only 10 rows."


def test_single_and_maybe_single(client, rows):
    tag, made = rows
    one = client.from_("mytable").select("name").eq("id", made[4]["id"]).single().execute()
    assert one.data == {"name": f"{tag} 4"}
    assert client.from_("mytable").select("id").eq("id", 0).maybe_single().execute() is None
    with pytest.raises(APIError) as error:
        mine(client, tag).single().execute()
    assert error.value.code == "PGRST116"
    # the first of many, as supabase's docs say: limit(1) makes it one row
    first = mine(client, tag).order("id").limit(1).single().execute()
    assert first.data == {"id": made[0]["id"], "name": f"{tag} 0"}
    second = mine(client, tag).order("id").range(1, 1).single().execute()
    assert second.data["id"] == made[1]["id"]


def test_insert_answers_the_rows_or_nothing(client):
    name = unique_name("pg-insert")
    created = client.from_("mytable").insert({"name": name}).execute()
    assert created.data[0]["name"] == name and created.data[0]["version"] == 1
    quiet = client.from_("mytable").insert({"name": name}, returning="minimal").execute()
    assert quiet.data == []
    assert len(client.from_("mytable").select("id").eq("name", name).execute().data) == 2


def test_update_and_delete_by_filters(client, rows):
    tag, made = rows
    updated = (
        client.from_("mytable").update({"data": {"n": 100}}).like("name", f"{tag} 1*").execute()
    )
    assert [row["data"] for row in updated.data] == [{"n": 100}]
    assert updated.data[0]["version"] == 2  # the version column still counts writes
    deleted = client.from_("mytable").delete().in_("id", [made[8]["id"], made[9]["id"]]).execute()
    assert sorted(row["id"] for row in deleted.data) == [made[8]["id"], made[9]["id"]]
    assert len(mine(client, tag).execute().data) == 8


def test_writes_count_the_rows_they_write_when_asked(client):
    """``insert``, ``update`` and ``delete`` with ``count=``: the count comes
    in Content-Range, as PostgREST's (``*/2``, ``0-1/2``); there was none."""
    tag, exact, quiet = unique_name("counted"), CountMethod.exact, ReturnMethod.minimal
    rows = [{"name": f"{tag} {n}"} for n in range(3)]
    inserted = client.from_("mytable").insert(rows, count=exact, returning=quiet).execute()
    assert (inserted.count, inserted.data) == (3, [])
    pattern = f"{tag} *"
    one = client.from_("mytable").insert({"name": f"{tag} 3"}, count=exact).execute()
    assert (one.count, len(one.data)) == (1, 1)
    updated = client.from_("mytable").update({"data": {"n": 1}}, count=exact)
    assert updated.like("name", pattern).execute().count == 4
    none = client.from_("mytable").update({"data": None}, count=exact, returning=quiet)
    assert none.eq("name", f"{tag} nobody").execute().count == 0
    deleted = client.from_("mytable").delete(count=exact, returning=quiet)
    assert deleted.like("name", pattern).execute().count == 4


def test_writes_by_filters_that_answer_no_rows_are_one_statement(client, http):
    """A PATCH or DELETE by filters whose answer shows no rows is one
    statement where they match, as PostgREST's: every row it matched is
    counted (one set to the value it held too), and its version counted up.
    One beyond Prefer: max-affected is refused after it wrote: undone."""
    tag, exact, quiet = unique_name("one-statement"), CountMethod.exact, ReturnMethod.minimal
    body = [{"name": f"{tag} {n}", "data": {"n": n}} for n in range(3)]
    client.from_("mytable").insert(body, returning=quiet).execute()

    def stored():
        found = client.from_("mytable").select("data,version").like("name", f"{tag} *")
        return [(row["data"], row["version"]) for row in found.order("name").execute().data]

    updated = client.from_("mytable").update({"data": {"n": 0}}, count=exact, returning=quiet)
    assert updated.like("name", f"{tag} *").execute().count == 3
    assert stored() == [({"n": 0}, 2)] * 3
    strict = {**WRITER, "Prefer": "max-affected=2, handling=strict"}
    mine = {"name": f"like.{tag} *"}
    refused = http.patch("/mytable/", params=mine, json={"data": None}, headers=strict)
    assert assert_problem(refused, 400)["code"] == "PGRST124"
    assert_problem(http.delete("/mytable/", params=mine, headers=strict), 400)
    assert stored() == [({"n": 0}, 2)] * 3
    deleted = client.from_("mytable").delete(count=exact, returning=quiet)
    assert deleted.like("name", f"{tag} *").execute().count == 3
    assert stored() == []


def test_a_write_to_a_collection_without_a_filter_is_refused(client):
    with pytest.raises(APIError) as error:
        client.from_("mytable").delete().execute()
    assert error.value.code == "PGRST100"
    assert "needs a filter" in error.value.message


def test_errors_carry_postgrest_s_message_and_code(client):
    with pytest.raises(APIError) as error:
        client.from_("mytable").select("nope").execute()
    assert error.value.code == "42703"  # PostgreSQL's undefined_column, as PostgREST passes it
    assert error.value.message == "'nope' is not a column of this table"
    with pytest.raises(APIError) as error:
        client.from_("mytable").insert({"name": None}).execute()
    assert error.value.code == "PGRST204"


def test_upsert_merges_or_ignores_duplicates(client, rows):
    tag, made = rows
    first = made[0]
    merged = client.from_("mytable").upsert({"id": first["id"], "name": f"{tag} merged"}).execute()
    assert merged.data[0]["name"] == f"{tag} merged"
    assert merged.data[0]["version"] == 2  # the version column counts the merge
    assert merged.data[0]["created_at"] == first["created_at"]
    # Ignored duplicates are left as they were and, as PostgREST's ON CONFLICT
    # DO NOTHING RETURNING, not answered nor counted; the rows inserted are.
    new_id = made[9]["id"] + 5_000
    ignored = (
        client.from_("mytable")
        .upsert(
            [
                {"id": first["id"], "name": f"{tag} ignored"},
                {"id": new_id, "name": f"{tag} inserted"},
            ],
            ignore_duplicates=True,
            count=CountMethod.exact,
        )
        .execute()
    )
    assert ([row["id"] for row in ignored.data], ignored.count) == ([new_id], 1)
    (kept,) = mine(client, tag).eq("id", first["id"]).execute().data
    assert kept["name"] == f"{tag} merged"
    client.from_("mytable").delete().eq("id", new_id).execute()
    both = (
        client.from_("mytable")
        .upsert(
            [
                {"id": made[1]["id"], "name": f"{tag} one"},
                {"id": made[9]["id"] + 10_000, "name": f"{tag} new"},
            ]
        )
        .execute()
    )
    assert [row["name"] for row in both.data] == [f"{tag} one", f"{tag} new"]
    assert len(mine(client, tag).execute().data) == 11


def test_an_upsert_of_a_row_without_its_key_inserts_it(client, rows):
    """PostgreSQL's ON CONFLICT (id) inserts a row that leaves its serial key
    out; here the upsert read its rows back by a key they did not hold: a
    500 on MariaDB (where an auto-updated column made it read back). Such a
    row is inserted, and answered in its place in the body, as PostgREST's
    RETURNING answers (they were answered after the others)."""
    tag, made = rows
    (alone,) = client.from_("mytable").upsert({"name": f"{tag} keyless"}).execute().data
    assert alone["name"] == f"{tag} keyless" and alone["id"] > made[-1]["id"]
    body = [
        {"name": f"{tag} new"},
        {"id": made[1]["id"], "name": f"{tag} merged"},
        {"name": f"{tag} newer"},
        {"id": made[0]["id"], "name": f"{tag} merged too"},
    ]
    mixed = client.from_("mytable").upsert(body, default_to_null=False).execute().data
    assert [row["name"] for row in mixed] == [row["name"] for row in body]
    assert [row["id"] for row in mixed if row["id"] in (made[0]["id"], made[1]["id"])] == [
        made[1]["id"],
        made[0]["id"],
    ]
    ignoring = client.from_("mytable").upsert(
        [{"id": made[2]["id"], "name": "ignored"}, {"name": f"{tag} too"}],
        ignore_duplicates=True,
        default_to_null=False,
    )
    assert [row["name"] for row in ignoring.execute().data] == [f"{tag} too"]
    assert len(mine(client, tag).execute().data) == 14


def test_arrays_written_with_return_minimal_are_stored_whole(client, rows):
    """PostgREST's default answer shows no rows, and none are read back: what
    was written is found by reading it."""
    tag, made = rows
    quiet = ReturnMethod.minimal
    inserted = client.from_("mytable").insert(
        [{"name": f"{tag} a", "data": {"n": 1}}, {"name": f"{tag} b"}], returning=quiet
    )
    assert inserted.execute().data == []
    merged = [
        {"id": made[0]["id"], "name": f"{tag} merged"},
        {"id": made[9]["id"] + 20_000, "name": f"{tag} new"},
    ]
    assert client.from_("mytable").upsert(merged, returning=quiet).execute().data == []
    ignored = [{"id": made[1]["id"], "name": f"{tag} ignored"}]
    upsert = client.from_("mytable").upsert(ignored, returning=quiet, ignore_duplicates=True)
    assert upsert.execute().data == []
    stored = client.from_("mytable").select("id,name,data,version").like("name", f"{tag} *")
    by_name = {row["name"]: row for row in stored.execute().data}
    assert {f"{tag} a", f"{tag} b", f"{tag} merged", f"{tag} new", f"{tag} 1"} <= set(by_name)
    assert f"{tag} ignored" not in by_name and f"{tag} 0" not in by_name
    assert by_name[f"{tag} a"]["data"] == {"n": 1} and by_name[f"{tag} b"]["data"] is None
    assert by_name[f"{tag} merged"]["version"] == 2 and by_name[f"{tag} new"]["version"] == 1
    assert len(by_name) == 13  # the ten, less the one renamed, and three new


def test_upsert_by_another_unique_key_needs_one(client):
    with pytest.raises(APIError) as error:
        client.from_("mytable").upsert({"name": "x"}, on_conflict="name").execute()
    assert error.value.code == "PGRST100"  # name is indexed, not unique


def test_an_empty_patch_by_filters_matches_no_row(client, rows):
    """PostgREST's SELECT ... WHERE false for an UPDATE of no column: it read
    and locked every row the filters matched, and counted their versions."""
    tag, _ = rows
    empty = client.from_("mytable").update({}, count=CountMethod.exact).like("name", f"{tag} *")
    answered = empty.execute()
    assert (answered.data, answered.count) == ([], 0)
    versions = client.from_("mytable").select("version").like("name", f"{tag} *").execute().data
    assert len(versions) == 10
    assert {row["version"] for row in versions} == {1}


def test_insert_may_give_an_auto_increment_key(client):
    """As PostgreSQL's serial takes a key a client gives (seeding, copying
    rows from elsewhere); the keys the database fills in go on after it."""
    (last,) = client.from_("mytable").select("id").order("id", desc=True).limit(1).execute().data
    given = last["id"] + 1000
    tag = unique_name("keyed")
    one = client.from_("mytable").insert({"id": given, "name": f"{tag} one"}).execute()
    assert [(row["id"], row["version"]) for row in one.data] == [(given, 1)]
    body = [{"id": given + 1, "name": f"{tag} two"}, {"id": None, "name": f"{tag} three"}]
    two, three = client.from_("mytable").insert(body).execute().data
    assert two["id"] == given + 1 and three["id"] > given + 1
    with pytest.raises(APIError) as error:  # taken: nothing written
        client.from_("mytable").insert({"id": given, "name": f"{tag} again"}).execute()
    assert error.value.code == "23505"
    stored = mine(client, tag).order("id").execute().data
    assert [row["id"] for row in stored] == [given, given + 1, three["id"]]
    with pytest.raises(APIError) as error:  # a PATCH does not move a row to another key
        client.from_("mytable").update({"id": given + 5}).eq("id", given).execute()
    assert error.value.code == "PGRST204" and "id is set by the server" in error.value.message


def test_put_creates_or_replaces_the_row_its_key_names(http, server):
    name = unique_name("put")
    url = f"{server.url}/mytable/?id=eq.987654"
    body = {"id": 987654, "name": name, "data": {"a": 1}}
    created = http.put(url, json=body, headers=WRITER)
    assert created.status_code == 200 and created.json()[0]["data"] == {"a": 1}
    replaced = http.put(url, json={"id": 987654, "name": name}, headers=WRITER)
    assert replaced.json()[0]["data"] is None  # left out: null
    assert replaced.json()[0]["version"] == 2
    other_key = http.put(url, json={"id": 1, "name": name}, headers=WRITER)
    assert assert_problem(other_key, 400)["code"] == "PGRST115"  # PostgREST's code for it
    assert_problem(http.put(f"{server.url}/mytable/?name=eq.x", json=body, headers=WRITER), 400)


def test_select_takes_aliases_casts_and_json_paths(client, rows):
    _, made = rows
    query = client.from_("mytable").select("key:id,text:id::text,n:data->n,label:data->>n")
    (row,) = query.eq("id", made[3]["id"]).execute().data
    assert row == {"key": made[3]["id"], "text": str(made[3]["id"]), "n": 3, "label": "3"}
    with pytest.raises(APIError) as error:  # one name, two items
        client.from_("mytable").select("id,id::text").execute()
    assert "give one an alias" in error.value.message


def test_casts_to_a_date_or_a_time_read_one_or_null(rows, http):
    """SQLite has no date types: CAST(x AS DATE) took DATE's numeric
    affinity, so a timestamp's text became its year, and a number stayed a
    number, which SQLAlchemy's reading of a date refused (a 500). SQLite's
    date functions read the text now, and a value they make no date of is
    null. (MariaDB reads a number's digits as a date: 121 is 2000-01-21.)"""
    _, made = rows
    params = {"select": "day:created_at::date,at:created_at::time,id::date"}
    answer = http.get("/mytable/", params={**params, "id": f"eq.{made[0]['id']}"})
    assert answer.status_code == 200, answer.text
    (row,) = answer.json()
    created = made[0]["created_at"]
    assert (row["day"], row["at"][:8]) == (created[:10], created[11:19])


def test_a_key_cast_to_text_pages_as_postgrest_answers_it(client, rows, http):
    """``id::text`` (how JavaScript clients keep a BIGINT exact) was a 400:
    the tie-break reads ``id`` too. It is read under a name of its own, and
    the cursor still follows the key."""
    tag, made = rows
    mine_as_text = client.from_("mytable").select("id::text,name").like("name", f"{tag} *")
    page = mine_as_text.order("id").limit(3).execute().data
    assert page == [{"id": str(row["id"]), "name": row["name"]} for row in made[:3]]
    first = http.get(
        "/mytable/", params={"select": "id::text", "name": f"like.{tag} *", "limit": "4"}
    )
    following = http.get(next_link(first))
    ids = [row["id"] for row in (*first.json(), *following.json())]
    assert ids == [str(row["id"]) for row in made[:8]]


def test_rows_of_an_array_may_give_different_columns(client, rows):
    tag, made = rows
    body = [
        {"id": made[2]["id"], "name": f"{tag} two"},
        {"id": made[3]["id"], "name": f"{tag} three", "data": {"n": 33}},
    ]
    # With missing=default (default_to_null=False), a column a row leaves out
    # keeps its value in a merge ...
    kept = client.from_("mytable").upsert(body, default_to_null=False).execute().data
    assert [(row["name"], row["data"]) for row in kept] == [
        (f"{tag} two", {"n": 2}),
        (f"{tag} three", {"n": 33}),
    ]
    # ... and without it, as PostgREST's default, it is null.
    upserted = client.from_("mytable").upsert(body).execute().data
    assert [(row["name"], row["data"]) for row in upserted] == [
        (f"{tag} two", None),
        (f"{tag} three", {"n": 33}),
    ]
    inserted = client.from_("mytable").insert(
        [{"name": f"{tag} x"}, {"name": f"{tag} y", "data": {}}]
    )
    assert [row["data"] for row in inserted.execute().data] == [None, {}]
    with pytest.raises(APIError) as error:  # null for a column that takes none
        client.from_("mytable").insert([{"name": f"{tag} z"}, {"data": {}}]).execute()
    assert error.value.code == "PGRST204"


def test_a_write_shows_a_key_as_text_but_not_one_name_twice(http, server):
    """A write's select takes ``id::text`` as a read's does; one name twice
    (``name,name::text``) was answered as one, and is a 400 that writes
    nothing, as a read's."""
    name = unique_name("twice")
    as_text = http.post(
        f"{server.url}/mytable/?select=id::text,name", json={"name": name}, headers=WRITER
    )
    assert as_text.status_code == 201, as_text.text
    (row,) = as_text.json()
    assert isinstance(row["id"], str) and row["name"] == name
    twice = http.post(
        f"{server.url}/mytable/?select=name,name::text", json=[{"name": name}], headers=WRITER
    )
    assert "names two things" in assert_problem(twice, 400)["detail"]
    found = http.get(f"{server.url}/mytable/", params={"name": f"eq.{name}"}).json()
    assert len(found) == 1


def test_columns_picks_what_an_insert_reads(http, server):
    name = unique_name("columns")
    body = [{"name": name, "data": {"x": 1}, "noise": True}, {"name": name}]
    created = http.post(f"{server.url}/mytable/?columns=name", json=body, headers=WRITER)
    assert created.status_code == 201, created.text
    assert [row["data"] for row in created.json()] == [None, None]
    unknown = http.post(f"{server.url}/mytable/?columns=name,nope", json=body, headers=WRITER)
    problem = assert_problem(unknown, 400)
    assert (problem["code"], problem["message"]) == (  # PostgREST's code for it
        "PGRST204",
        "'columns' names what is not a column of mytable: nope",
    )


def test_tx_rollback_answers_as_if_written_and_writes_nothing(http, server):
    name = unique_name("dry-run")
    headers = {**WRITER, "Prefer": "return=representation, tx=rollback"}
    response = http.post(f"{server.url}/mytable/", json=[{"name": name}], headers=headers)
    assert response.status_code == 201 and response.json()[0]["name"] == name
    assert "tx=rollback" in response.headers["preference-applied"]
    assert http.get(f"{server.url}/mytable/", params={"name": f"eq.{name}"}).json() == []


def test_a_write_answers_json_or_csv_and_refuses_any_other_accept_before_writing(http, server):
    """PostgREST's rule: ``Accept`` is obeyed before ``Prefer``, so a write
    whose answer the client cannot take is a 406 even when the answer would
    have no body, and nothing is written."""
    name, url = unique_name("accept"), f"{server.url}/mytable/"
    (row,) = http.post(url, json=[{"name": name}], headers=WRITER).json()
    one = f"{url}?id=eq.{row['id']}"
    minimal = {"Authorization": WRITER["Authorization"]}
    for headers in (WRITER, minimal):
        png = {**headers, "Accept": "image/png"}
        for method, target, body in (
            ("POST", url, {"name": name}),  # one row: grouped where the database has RETURNING
            ("POST", url, [{"name": name}, {"name": name}]),
            ("PATCH", one, {"name": "not written"}),  # by its key: grouped
            ("PATCH", f"{url}?name=eq.{name}", {"name": "not written"}),
            ("PUT", one, {"id": row["id"], "name": "not written"}),
        ):
            refused = http.request(method, target, json=body, headers=png)
            assert assert_problem(refused, 406)["code"] == "PGRST107", (method, target)
        assert_problem(http.delete(one, headers=png), 406)
    assert http.get(url, params={"name": f"eq.{name}"}).json() == [row]

    csv_headers = {**WRITER, "Accept": "text/csv"}
    created = http.post(url, json={"name": name, "data": {"n": 1}}, headers=csv_headers)
    assert created.status_code == 201
    assert created.headers["content-type"] == "text/csv; charset=utf-8; header=present"
    header, line, rest = created.text.split("\r\n")
    (stored,) = http.get(url, params={"name": f"eq.{name}", "id": f"neq.{row['id']}"}).json()
    assert (header, rest) == (",".join(stored), "")
    assert line.startswith(f'{stored["id"]},{name},"{{""n"":1}}",1,')
    assert created.headers["location"].endswith(f"/mytable/{stored['id']}")
    gone = http.delete(f"{url}?id=eq.-1", headers=csv_headers)  # no rows: no header
    assert (gone.status_code, gone.text) == (200, "\r\n")
    assert (
        http.post(url, json={"name": name}, headers={**minimal, "Accept": "text/csv"}).status_code
        == 201
    )


def test_a_limited_update_and_delete_write_the_first_rows_in_order(server, rows):
    """PostgREST's limited update/delete (limit with order), which
    postgrest-py's builders do not offer: over HTTP as PostgREST takes it."""
    tag, made = rows
    headers = {**WRITER, "Prefer": "return=representation"}
    mine_only = {"name": f"like.{tag} *"}
    with httpx.Client(base_url=server.url) as http:
        response = http.patch(
            "/mytable/",
            params={**mine_only, "order": "id.desc", "limit": "3"},
            json={"data": {"limited": True}},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        assert [row["id"] for row in response.json()] == [made[n]["id"] for n in (9, 8, 7)]
        response = http.delete(
            "/mytable/", params={**mine_only, "order": "id", "limit": "2"}, headers=headers
        )
        assert [row["id"] for row in response.json()] == [made[0]["id"], made[1]["id"]]
        left = http.get("/mytable/", params={**mine_only, "select": "id,data", "order": "id"})
        assert [row["id"] for row in left.json()] == [row["id"] for row in made[2:]]
        assert [row["data"] for row in left.json()][-3:] == [{"limited": True}] * 3
        # a Range header bounds reads only (RFC 9110): a write takes every match
        response = http.patch(
            "/mytable/",
            params=mine_only,
            json={"data": {"ranged": True}},
            headers={**headers, "Range": "2-3"},
        )
        assert len(response.json()) == 8, response.text
        response = http.delete(
            "/mytable/", params={**mine_only, "limit": "1", "offset": "1"}, headers=headers
        )
        assert_problem(response, 400)


def test_nulls_stripped_and_a_time_zone_as_postgrest_gives_them(server, rows):
    tag, made = rows
    first = made[0]["id"]
    with httpx.Client(base_url=server.url) as http:
        params = {"id": f"eq.{first}", "select": "id,name,nothing:data->>nope"}
        stripped = http.get(
            "/mytable/",
            params=params,
            headers={"Accept": "application/vnd.pgrst.array+json;nulls=stripped"},
        )
        assert stripped.json() == [{"id": first, "name": f"{tag} 0"}]
        assert (
            stripped.headers["content-type"] == "application/vnd.pgrst.array+json;nulls=stripped"
        )
        kept = http.get(
            "/mytable/", params=params, headers={"Accept": "application/vnd.pgrst.array+json"}
        )
        assert kept.json() == [{"id": first, "name": f"{tag} 0", "nothing": None}]
        one = http.get(
            "/mytable/",
            params=params,
            headers={"Accept": "application/vnd.pgrst.object+json;nulls=stripped"},
        )
        assert one.json() == {"id": first, "name": f"{tag} 0"}
        # Prefer: timezone writes instants in that zone, as PostgREST's timestamptz.
        params = {"id": f"eq.{first}", "select": "created_at"}
        utc = http.get("/mytable/", params=params).json()[0]["created_at"]
        zoned = http.get("/mytable/", params=params, headers={"Prefer": "timezone=Asia/Kolkata"})
        assert zoned.headers["preference-applied"] == "timezone=Asia/Kolkata"
        shown = zoned.json()[0]["created_at"]
        assert shown.endswith("+05:30")
        assert datetime.fromisoformat(shown) == datetime.fromisoformat(utc.replace("Z", "+00:00"))
        # An unknown zone is ignored, unless handling=strict (PGRST122).
        ignored = http.get("/mytable/", params=params, headers={"Prefer": "timezone=Mars/Base"})
        assert (
            ignored.json()[0]["created_at"] == utc and "preference-applied" not in ignored.headers
        )
        for prefer in ("handling=strict, timezone=Mars/Base", "handling=strict, foo"):
            problem = assert_problem(
                http.get("/mytable/", params=params, headers={"Prefer": prefer}), 400
            )
            assert problem["code"] == "PGRST122"
        for sneaky in ("../../../etc/passwd", "/etc/passwd", "", "\u00e9"):
            response = http.get(
                "/mytable/", params=params, headers={"Prefer": f"timezone={sneaky}".encode()}
            )
            assert response.status_code == 200


def test_the_schema_headers_name_the_one_schema_served(server, database_url, client):
    """Accept-Profile and Content-Profile (postgrest-py's schema()): the
    database served (SQLite's main) answers; another is a 406 PGRST106."""
    served = "main" if database_url.startswith("sqlite") else make_url(database_url).database
    assert client.schema(served).from_("mytable").select("id").limit(1).execute().data
    with pytest.raises(APIError) as error:
        client.schema("elsewhere").from_("mytable").select("id").execute()
    assert error.value.code == "PGRST106" and served in error.value.message
    response = httpx.post(
        f"{server.url}/mytable/",
        json={"name": "x"},
        headers={**WRITER, "Content-Profile": "elsewhere"},
    )
    assert_problem(response, 406)


def test_aggregates_group_by_the_other_columns(client, rows):
    """PostgREST's avg, count, max, min and sum in a select, grouped by the
    other columns selected, with aliases and casts, filters, order and counts."""
    tag, made = rows
    mine_only = client.from_("mytable")
    (whole,) = (
        mine_only.select("count(),id.max(),id.min(),total:id.sum()")
        .like("name", f"{tag} *")
        .execute()
        .data
    )
    ids = [row["id"] for row in made]
    assert whole == {"count": 10, "max": max(ids), "min": min(ids), "total": sum(ids)}
    # Grouped by a JSON path's text, ordered by it; avg cast to an integer.
    for n, row in enumerate(made):
        client.from_("mytable").update({"data": {"odd": n % 2}}).eq("id", row["id"]).execute()
    grouped = (
        client.from_("mytable")
        .select("parity:data->>odd,n:count()::text,mean:id.avg()", count="exact")
        .like("name", f"{tag} *")
        .order("data->>odd", desc=True)
        .execute()
    )
    evens, odds = ids[0::2], ids[1::2]
    # Approximately: after test_views' key of 2**53 + 1, the keys that follow
    # are past what a double holds exactly, and each side rounds its mean.
    assert [(g["parity"], g["n"], float(g["mean"])) for g in grouped.data] == [
        ("1", "5", pytest.approx(sum(odds) / 5, rel=1e-12)),
        ("0", "5", pytest.approx(sum(evens) / 5, rel=1e-12)),
    ]
    assert grouped.count == 2  # the groups
    with pytest.raises(APIError) as error:  # an order by what is not grouped by
        mine_only.select("data->>odd,count()").order("id").execute()
    assert error.value.code == "PGRST100"


def test_aggregates_group_by_embedded_rows_of_sakila(sakila_server, sakila_url):
    """PostgREST's aggregates beside embeds, as postgrest-py sends them, on
    Sakila: sums of DECIMAL by the staff member a payment's key points at,
    embedded or spread; a spread's max over the parent's rows."""
    expected = fetch_sql(
        sakila_url,
        "SELECT s.first_name, SUM(p.amount) FROM payment p"
        " JOIN staff s ON s.staff_id = p.staff_id GROUP BY s.first_name ORDER BY s.first_name",
    )
    with SyncPostgrestClient(sakila_server.url) as sakila:
        payments = sakila.from_("payment")
        embedded = payments.select("total:amount.sum(),staff(first_name)").execute().data
        spread = payments.select("total:amount.sum(),...staff(first_name)").execute().data
        latest = (
            sakila.from_("rental")
            .select("...customer(store_id,last:last_name.max())")
            .execute()
            .data
        )
    assert [(row["staff"]["first_name"], row["total"]) for row in embedded] == [
        (name, float(total)) for name, total in expected
    ]
    assert [(row["first_name"], row["total"]) for row in spread] == [
        (name, float(total)) for name, total in expected
    ]
    by_store = fetch_sql(
        sakila_url,
        "SELECT c.store_id, MAX(c.last_name) FROM rental r"
        " JOIN customer c ON c.customer_id = r.customer_id GROUP BY c.store_id ORDER BY 1",
    )
    assert [(row["store_id"], row["last"]) for row in latest] == by_store


def test_aggregates_are_off_unless_enabled(database_url):
    app = webtest.TestApp(make_app(database_url))
    response = app.get("/mytable/?select=count()", status=400)
    assert response.json["code"] == "PGRST123"
    app.app.close()


def test_count_alone_counts_the_rows(client, rows, database_url):
    """``select=count()``, and PostgREST's legacy ``count``, which it answers
    with aggregates off too. Naming no column, its statement had no FROM: a
    count of 1, and with a filter a 503."""
    tag, _ = rows
    assert client.from_("mytable").select("count()").like("name", f"{tag} *").execute().data == [
        {"count": 10}
    ]
    everything = client.from_("mytable").select("n:count()").execute().data
    assert everything[0]["n"] >= 10
    app = webtest.TestApp(make_app(database_url))  # aggregates off
    try:
        legacy = app.get("/mytable/", params={"select": "count", "name": f"like.{tag} *"})
        assert legacy.json == [{"count": 10}]
    finally:
        app.app.close()


def test_a_read_s_plan_where_the_server_allows_it(server, database_url, rows):
    """PostgREST's application/vnd.pgrst.plan+json (postgrest-py's explain()):
    the database's own EXPLAIN of the page; off by default (406)."""
    tag, _ = rows
    plan = {"Accept": "application/vnd.pgrst.plan+json"}
    params = {"name": f"like.{tag} *", "order": "id"}
    response = httpx.get(f"{server.url}/mytable/", params=params, headers=plan)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/vnd.pgrst.plan+json")
    if database_url.startswith("sqlite"):
        assert any("mytable" in step["detail"] for step in response.json())
    else:
        assert '"table_name":"mytable"' in response.text  # MariaDB's EXPLAIN FORMAT=JSON
    off = webtest.TestApp(make_app(database_url))
    assert off.get("/mytable/", headers=plan, status=406).json["code"] == "PGRST107"
    off.app.close()


def test_every_operator_through_the_client(client, rows):
    """Each of PostgREST's operators as postgrest-py's builder sends it."""
    tag, made = rows
    ids = [row["id"] for row in made]
    listed = [
        {"name": f"{tag} list{n}", "data": tags}
        for n, tags in enumerate((["a", "b"], ["b", "c"], ["d"]))
    ]
    lists = [row["id"] for row in client.from_("mytable").insert(listed).execute().data]

    def found(query):
        return sorted(row["id"] for row in query.execute().data)

    def mine():
        return client.from_("mytable").select("id").like("name", f"{tag} *")

    assert found(mine().gt("id", ids[7]).lte("id", ids[9])) == ids[8:10]
    assert found(mine().ilike("name", f"{tag.upper()} 1")) == [ids[1]]
    assert found(mine().like("name", f"{tag.upper()} 1")) == []  # like is case-sensitive
    assert found(mine().filter("name", "match", r"^pg.* [13]$")) == [ids[1], ids[3]]
    assert found(mine().filter("name", "imatch", r"^PG.* [13]$")) == [ids[1], ids[3]]
    assert found(mine().is_("data", "null")) == []
    assert len(found(mine().not_.is_("data", "null"))) == 13
    assert len(found(mine().filter("data->>n", "isdistinct", "3"))) == 12  # NULL counts
    assert found(mine().or_(f"id.eq.{ids[0]},and(id.gte.{ids[8]},id.lt.{ids[9]})")) == [
        ids[0],
        ids[8],
    ]
    assert found(mine().like_any_of("name", f"{tag} 1,{tag} 2")) == [ids[1], ids[2]]
    assert found(mine().like_all_of("name", f"{tag} *,* 5")) == [ids[5]]
    assert found(mine().contains("data", {"n": 3})) == [ids[3]]
    assert found(mine().contained_by("data", {"n": 3, "x": 1})) == [ids[3]]
    assert found(mine().contains("data", ["b"])) == lists[:2]
    assert found(mine().contained_by("data", ["a", "b", "d"])) == [lists[0], lists[2]]
    assert found(mine().overlaps("data", ["a", "d"])) == [lists[0], lists[2]]
    with pytest.raises(APIError) as error:  # no range types in MySQL
        mine().range_adjacent("id", (1, 2)).execute()
    assert "range" in error.value.message
    csv = client.from_("mytable").select("id,name").eq("id", ids[2]).csv().execute().data
    assert csv.splitlines() == ["id,name", f"{ids[2]},{tag} 2"]
    stripped = client.from_("mytable").select("id,nothing:data->>x").eq("id", ids[2])
    assert stripped.strip_nulls().execute().data == [{"id": ids[2]}]
    explained = client.from_("mytable").select("id").eq("id", ids[2])
    assert "mytable" in str(explained.explain(format="json").execute().data)
    assert "mytable" in str(explained.explain().execute())  # as text, PostgREST's default


def test_full_text_search_through_the_client(sakila_server):
    """fts, plfts, phfts and wfts, as text_search() sends them, on Sakila's
    FULLTEXT index of film_text (MariaDB)."""
    with SyncPostgrestClient(sakila_server.url) as client:

        def search(query, kind=None):
            options = {"type": kind} if kind else {}
            # Sakila's own films: other tests add copies of some (the triggers
            # keep film_text in step with film)
            titles = client.from_("film_text").select("title").lte("film_id", 1000)
            titles = titles.order("film_id")
            done = titles.text_search("title", query, options=options).limit(3).execute()
            return [row["title"] for row in done.data]

        academy = search("ACADEMY")
        assert academy[0] == "ACADEMY DINOSAUR" and all("ACADEMY" in t for t in academy)
        assert search("academy dinosaur", "plain")[0] == "ACADEMY DINOSAUR"
        assert search("academy dinosaur", "phrase") == ["ACADEMY DINOSAUR"]
        without = search("academy -dinosaur", "websearch")
        assert without and all("ACADEMY" in t and "DINOSAUR" not in t for t in without)


def test_range_on_an_embedded_table_pages_the_embed_of_each_row(client):
    """``range(1, 1, foreign_table=...)`` sends ``probe_book.offset=1`` and
    ``probe_book.limit=1``, as supabase-js's ``referencedTable`` does: it was
    a 400 ("'offset' is not a column")."""
    query = client.from_("probe_author").select("name, probe_book!author_id(title)").order("id")
    query = query.order("title", foreign_table="probe_book")
    authors = query.range(1, 1, foreign_table="probe_book").execute().data
    assert [[b["title"] for b in a["probe_book"]] for a in authors] == [["Beta"], [], ["Zeta"], []]


def test_or_on_an_embedded_table_filters_the_embed_of_each_row(client):
    """``or_(..., reference_table=...)`` sends ``probe_book.or=(...)``: it
    was a 400 ("'or' is not a column")."""
    query = client.from_("probe_author").select("name, probe_book!author_id(title)").order("id")
    query = query.order("title", foreign_table="probe_book")
    authors = query.or_("title.eq.Alpha,title.like.Z*", reference_table="probe_book")
    books = [[b["title"] for b in a["probe_book"]] for a in authors.execute().data]
    assert books == [["Alpha"], [], ["Zeta"], []]
