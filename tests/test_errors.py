"""Every error leaves as problem+json, the 500 and a missing database included."""

import asyncio
import base64
import collections
import concurrent.futures
import gc
import types
import uuid

import httpx
import pyramid.request
import pytest
import sqlalchemy as sa
import webob
import webtest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from api.bridge.asgi import ASGIApp
from api.db import migrations_head
from tests.support import (
    MARIADB_URL,
    TOKENS,
    WRITER,
    WRITER_ONE,
    alembic,
    assert_problem,
    create,
    deadlocks_counted,
    fetch_sql,
    make_app,
    mariadb_app,
    mariadb_database,
    run_sql,
    until_a_lock_wait,
)
from tests.support.servers import ThreadedServer, free_port


def test_an_unhandled_error_is_a_500_problem_without_a_traceback(http):
    response = http.post("/_probe_write_then_fail", params={"name": "fails"})
    body = assert_problem(response, 500)
    assert "RuntimeError" not in response.text
    assert body["detail"] == "The server failed to answer this request."


def test_a_database_that_is_not_there_is_503_and_liveness_still_answers(tmp_path):
    """A MariaDB URL with nothing listening: the API starts, and answers 503 for data."""
    import httpx

    from api.bridge.asgi import ASGIApp

    url = f"mysql+asyncmy://root@127.0.0.1:{free_port()}/test"
    app = make_app(url, **{"db.connect_timeout": "1"})
    with ThreadedServer(ASGIApp(app)) as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/__lbheartbeat__").status_code == 200
        for path in ("/__heartbeat__", "/mytable/1", "/mytable/"):
            response = http.get(path)
            assert_problem(response, 503)
            assert response.headers["retry-after"] == "1"
        # An export reads its first batch before it answers: a 503, not a 200 cut off
        for media_type in ("application/x-ndjson", "text/csv"):
            assert_problem(http.get("/mytable/", headers={"Accept": media_type}), 503)


@pytest.mark.parametrize(
    ("setting", "message"),
    [({}, "no database URL"), ({"sqlalchemy.url": "not a url"}, "Could not parse")],
)
def test_a_missing_or_malformed_database_url_fails_at_start(setting, message, monkeypatch):
    from api import main

    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(Exception, match=message):
        main({}, **setting)


def test_a_problem_carries_postgrest_members_for_postgrest_clients(http):
    problem = assert_problem(http.get("/mytable/?id=eq.x"), 400)
    assert problem["code"] == "PGRST100"
    assert problem["message"] == problem["detail"]
    assert problem["details"] is None and problem["hint"] is None
    assert assert_problem(http.get("/nothing/"), 404)["code"] == "PGRST205"
    # A body it cannot read is PostgREST's PGRST102, not the query string's PGRST100.
    for body in (b'{"name": ', b"[" * 40 + b"]" * 40):
        unread = http.post(
            "/mytable/", content=body, headers={**WRITER, "Content-Type": "application/json"}
        )
        assert (assert_problem(unread, 400)["code"], unread.json()["parameter"]) == (
            "PGRST102",
            "body",
        )


def test_a_unique_violation_has_postgresql_s_code(http):
    response = http.post("/_probe_duplicate_key", params={"name": "dup"})
    assert assert_problem(response, 409)["code"] == "23505"


def test_a_duplicate_key_says_which_in_details(http, backend):
    """As PostgREST passes PostgreSQL's "Key (code)=(x) already exists"."""
    code = uuid.uuid4().hex[:8]
    assert http.post("/probe_coded/", json={"code": code}, headers=WRITER).status_code == 201
    problem = assert_problem(http.post("/probe_coded/", json={"code": code}, headers=WRITER), 409)
    assert problem["code"] == "23505"
    expected = {"sqlite": "UNIQUE constraint failed: probe_coded.code"}
    assert problem["details"] == expected.get(
        backend, f"Duplicate entry '{code}' for key 'PRIMARY'"
    )
    # The message, which react-admin and Refine show their user, names the key too.
    said = {"sqlite": "Another row already has this code."}
    expected = said.get(backend, f"Another row already has this code ('{code}').")
    assert problem["message"] == expected
    assert http.delete(f"/probe_coded/{code}", headers=WRITER).status_code == 204


def test_a_broken_foreign_key_says_which_and_how(http, backend):
    """A row naming no parent, and a parent other rows still name: 409
    (23503), as PostgREST's, with a message that says which key. SQLite's
    words name neither."""
    orphan = {"title": "Orphan", "author_id": 999999, "editor_id": None}
    problem = assert_problem(http.post("/probe_book/", json=orphan, headers=WRITER), 409)
    assert problem["code"] == "23503"
    if backend == "sqlite":
        assert problem["message"] == (
            "The write conflicts with existing data (a unique or foreign key)."
        )
    else:
        orphaned = "author_id names no row of probe_author (foreign key "
        assert problem["message"].startswith(orphaned)
    parent = http.delete("/probe_author/", params={"id": "eq.1"}, headers=WRITER)
    problem = assert_problem(parent, 409)
    assert problem["code"] == "23503"
    if backend != "sqlite":
        assert problem["message"].startswith(
            "Rows of probe_book still refer to this row by author_id (foreign key "
        )
    assert http.get("/probe_author/1").status_code == 200  # nothing was deleted


def test_a_regular_expression_the_database_cannot_compile_is_a_400(http):
    """Not a 503: the database answered, and the same request would fail again."""
    for operator in ("match", "imatch"):
        problem = assert_problem(http.get("/mytable/", params={"name": f"{operator}.(("}), 400)
        assert problem["code"] == "2201B"
        assert problem["detail"] == (
            "A regular expression in the filters is not valid, or took too long on a value."
        )


def test_a_regular_expression_that_backtracks_without_end_holds_no_worker(http, backend):
    """On SQLite, Python's re ran REGEXP holding the GIL: "^(a+)+$" on 40
    a's and a "!" (2**40 ways to split them) froze the worker for hours,
    liveness included. The regex module sees through that one; the match
    that would still run for ever, "^(a|aa)+$", gives up (400). MariaDB's
    PCRE2 answers both at once: nothing matches."""
    row = create(http, name="a" * 40 + "!").json()
    for pattern, gives_up in (("^(a+)+$", False), ("^(a|aa)+$", backend == "sqlite")):
        params = {"id": f"eq.{row['id']}", "name": f"match.{pattern}"}
        response = http.get("/mytable/", params=params)
        if gives_up:
            assert assert_problem(response, 400)["code"] == "2201B"
        else:
            assert (response.status_code, response.json()) == (200, []), pattern
    assert http.get("/__lbheartbeat__").status_code == 200
    found = http.get("/mytable/", params={"id": f"eq.{row['id']}", "name": "match.^a+!$"})
    assert [r["id"] for r in found.json()] == [row["id"]]  # a pattern that runs, runs
    assert http.delete(f"/mytable/{row['id']}", headers=WRITER).status_code == 204


def test_a_check_constraint_a_write_breaks_is_a_400_and_writes_nothing(http):
    key = 1_000_000 + uuid.uuid4().int % 1_000_000
    for body in ({"id": key, "qty": 0}, [{"id": key, "qty": 1}, {"id": key + 1, "qty": -1}]):
        problem = assert_problem(http.post("/probe_checked/", json=body, headers=WRITER), 400)
        assert problem["code"] == "23514"
        assert problem["detail"] == "A value breaks a check constraint of the table."
        assert "qty_positive" in problem["details"]  # the constraint, by name
    assert http.get("/probe_checked/", params={"id": f"in.({key},{key + 1})"}).json() == []
    created = http.post("/probe_checked/", json={"id": key, "qty": 1}, headers=WRITER_ONE)
    assert created.status_code == 201, created.text
    patch = {**WRITER, "If-Match": created.headers["etag"]}
    refused = http.patch(f"/probe_checked/{key}", json={"qty": 0}, headers=patch)
    problem = assert_problem(refused, 400)
    assert problem["code"] == "23514"
    assert http.get(f"/probe_checked/{key}").json() == {"id": key, "qty": 1}
    assert http.delete(f"/probe_checked/{key}", headers=WRITER).status_code == 204


@pytest.fixture(params=["sqlite", "mariadb"])
def null_let_through(request, tmp_path):
    """A table whose NOT NULL column the API lets a null reach, and a body
    that does: on SQLite by a default of NULL, on MariaDB by a trigger that
    sets it (MySQL's 1048)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'nulls.sqlite'}"
        drop, body = None, {}  # qty left out: its default, NULL
        run_sql(
            url, "CREATE TABLE probe_null (id INTEGER PRIMARY KEY, qty INT NOT NULL DEFAULT NULL)"
        )
    else:
        url, drop = mariadb_database()
        body = {"id": 1, "qty": 0}
        run_sql(
            url,
            "CREATE TABLE probe_null (id INT PRIMARY KEY, qty INT NOT NULL)",
            "CREATE TRIGGER probe_null_zero BEFORE INSERT ON probe_null FOR EACH ROW"
            " SET NEW.qty = NULLIF(NEW.qty, 0)",
        )
    app = make_app(url, **{"api.tables": "probe_null", "api.tokens": TOKENS})
    try:
        yield webtest.TestApp(app), body
    finally:
        app.close()
        if drop is not None:
            drop()


def test_a_null_the_database_refuses_is_a_400_not_a_conflict(null_let_through):
    """PostgREST answers a not-null violation 400 (23502); it was a 409 that
    spoke of a unique or foreign key."""
    client, body = null_let_through
    refused = client.post_json("/probe_null/", body, headers=WRITER, status=400)
    assert refused.json["code"] == "23502"
    assert "qty" in refused.json["details"]
    assert client.get("/probe_null/").json == []


def test_a_column_a_trigger_leaves_unset_is_a_400():
    """A trigger that sets a NOT NULL column only for some rows: the API no
    longer asks for that column, and MariaDB's "doesn't have a default
    value" (1364, an OperationalError) was a 503 that invites a retry."""
    with mariadb_app(
        "CREATE TABLE probe_stamped (id INT AUTO_INCREMENT PRIMARY KEY, qty INT NOT NULL,"
        " stamped DATETIME NOT NULL)",
        "CREATE TRIGGER probe_stamped_now BEFORE INSERT ON probe_stamped FOR EACH ROW"
        " IF NEW.qty > 0 THEN SET NEW.stamped = NOW(); END IF",
        **{"api.tables": "probe_stamped"},
    ) as client:
        created = client.post_json("/probe_stamped/", {"qty": 1}, headers=WRITER_ONE)
        assert created.status_code == 201
        assert created.json["stamped"] is not None
        refused = client.post_json("/probe_stamped/", {"qty": 0}, headers=WRITER, status=400)
        assert refused.json["code"] == "23502"
        assert "stamped" in refused.json["details"]
        assert [row["qty"] for row in client.get("/probe_stamped/").json] == [1]


def test_an_empty_patch_of_a_row_without_version_writes_nothing_and_answers_it(http):
    """PostgREST's answer to ``{}``: the row as it is, 412 on a stale ETag;
    the UPDATE of no column was a syntax error, a 500."""
    code = uuid.uuid4().hex[:8]
    row = {"code": code, "label": "as it is"}
    created = http.post("/probe_coded/", json=row, headers=WRITER_ONE)
    assert created.status_code == 201, created.text
    item = f"/probe_coded/{code}"
    assert http.patch(item, json={}, headers=WRITER_ONE).json() == row
    stale = {**WRITER, "If-Match": '"stale"'}
    assert_problem(http.patch(item, json={}, headers=stale), 412)
    # By filters, PostgREST's empty PATCH matches no row (its SELECT ... WHERE false).
    by_filter = http.patch("/probe_coded/", params={"code": f"eq.{code}"}, json={}, headers=WRITER)
    assert (by_filter.status_code, by_filter.json()) == (200, [])
    assert http.get(item).json() == row
    assert http.delete(item, headers=WRITER).status_code == 204


def test_an_emoji_filter_on_a_utf8mb3_column_finds_nothing(sakila):
    """Sakila's actor is utf8mb3, which holds no 4-byte character: an emoji
    in a filter (typed in a search box) was a 400, as MySQL refuses to
    compare the column with it ("Illegal mix of collations"); PostgreSQL
    would just find no row, and so does the API now."""
    smile = "\U0001f600"
    for value in (f"eq.{smile}", f"ilike.*{smile}*", f"in.({smile})", f"gt.{smile}"):
        found = sakila.get("/actor/", params={"first_name": value, "select": "actor_id"})
        assert (found.status_code, found.json()) == (200, []), value
    others = sakila.get("/actor/", params={"first_name": f"neq.{smile}", "select": "actor_id"})
    assert len(others.json()) == len(sakila.get("/actor/", params={"select": "actor_id"}).json())
    either = sakila.get("/actor/", params={"or": f"(first_name.eq.{smile},actor_id.eq.1)"})
    assert [row["actor_id"] for row in either.json()] == [1]
    embedded = sakila.get(  # an embed's filter, on its own alias of actor
        "/film/",
        params={"select": "film_id,actor(first_name)", "actor.first_name": f"eq.{smile}"},
        headers={"Range": "0-1"},
    )
    assert embedded.json() == [{"film_id": 1, "actor": []}, {"film_id": 2, "actor": []}]
    inner = sakila.get(
        "/film/",
        params={"select": "film_id,actor!inner(actor_id)", "actor.last_name": f"lt.{smile}"},
    )
    assert inner.status_code == 200


def test_values_mariadb_refuses_are_4xx_that_name_the_column(sakila):
    """MariaDB raises these as it raises a lost connection (OperationalError):
    each was a 503 with Retry-After, which a client would send again."""
    before = sakila.get("/actor/1").json()
    # A TIMESTAMP holds 1970 to 2038.
    late = {"last_update": "1960-01-01T00:00:00Z"}
    problem = assert_problem(sakila.patch("/actor/1", json=late, headers=WRITER), 422)
    assert problem["code"] == "22007"
    assert "`last_update`" in problem["details"]
    assert sakila.get("/actor/1").json() == before
    # A full-text search InnoDB cannot parse in boolean mode was a 500.
    for search in ("fts.((((", "wfts.+", "not.fts.-"):
        refused = sakila.get("/film_text/", params={"description": search})
        assert assert_problem(refused, 400)["code"] == "42601"
    plain = sakila.get("/film_text/", params={"description": "plfts.((((", "limit": "1"})
    assert plain.status_code == 200


@pytest.fixture(params=["sqlite", "mariadb"])
def never_migrated(request, tmp_path):
    """A database the API is pointed at before alembic ever ran on it."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/empty.sqlite"
        return
    url, drop = mariadb_database()
    yield url
    drop()


def test_a_database_never_migrated_is_a_503_that_says_so(never_migrated):
    """Readiness checks the schema is at the migrations' head; a row request
    on a missing table is a 503 with the reason, not a 500."""
    app = make_app(never_migrated)
    with ThreadedServer(ASGIApp(app)) as server, httpx.Client(base_url=server.url) as http:
        problem = assert_problem(http.get("/__heartbeat__"), 503)
        assert "never migrated" in problem["detail"] and "alembic" in problem["detail"]
        for path in ("/mytable/1", "/mytable/"):
            problem = assert_problem(http.get(path), 503)
            assert "does not exist" in problem["detail"], problem
        alembic(never_migrated, "upgrade", "head")
        ready = http.get("/__heartbeat__")
        assert ready.status_code == 200 and ready.json()["schema"] == migrations_head()
        alembic(never_migrated, "downgrade", "-1")
        problem = assert_problem(http.get("/__heartbeat__"), 503)
        assert "is at revision" in problem["detail"]
    app.close()


def test_a_database_served_as_it_is_needs_no_migration(never_migrated):
    """A database the API does not migrate (WordPress's, say): with
    api.declared_tables = false, readiness only asks the database to answer,
    and only its own tables are served; mytable was listed and documented,
    a 503 on every request, and readiness stayed a 503 until alembic had
    created mytable in that database."""
    run_sql(never_migrated, "CREATE TABLE books (id INTEGER PRIMARY KEY, title VARCHAR(50))")
    run_sql(never_migrated, "INSERT INTO books VALUES (1, 'Dune')")
    app = make_app(never_migrated, **{"api.declared_tables": "false", "api.tables": "*"})
    with ThreadedServer(ASGIApp(app)) as server, httpx.Client(base_url=server.url) as http:
        ready = http.get("/__heartbeat__")
        assert ready.status_code == 200 and ready.json() == {"status": "ok", "database": "ok"}
        assert [c["name"] for c in http.get("/").json()["collections"]] == ["books"]
        assert http.get("/books/").json() == [{"id": 1, "title": "Dune"}]
        assert_problem(http.get("/mytable/"), 404)
        documented = http.get("/openapi.json").json()["paths"]
        assert "/mytable/" not in documented and "/books/" in documented
    app.close()


@pytest.mark.parametrize("user", ["api_nobody", "api_someone"])
def test_refused_credentials_are_said_so_without_the_secret(caplog, user):
    """No such user (MariaDB's 1698), or a wrong password (1045)."""
    url, drop = mariadb_database()
    run_sql(url, "CREATE USER IF NOT EXISTS api_someone@'%' IDENTIFIED BY 'the-right-one'")
    wrong = make_url(url).set(username=user, password="s3cret-pw")
    app = make_app(wrong.render_as_string(hide_password=False))
    try:
        with ThreadedServer(ASGIApp(app)) as server, httpx.Client(base_url=server.url) as http:
            for path in ("/__heartbeat__", "/mytable/"):
                response = http.get(path)
                problem = assert_problem(response, 503)
                assert "credentials" in problem["detail"] and "s3cret" not in response.text
                assert "retry-after" not in response.headers  # waiting will not mend it
        logged = "\n".join(record.getMessage() for record in caplog.records)
        assert "credentials" in logged and "s3cret" not in logged
    finally:
        app.close()
        run_sql(url, "DROP USER IF EXISTS api_someone@'%'")
        drop()


def patch_made_a_deadlocks_victim(server_url, database_url):
    """A PATCH of rows a and b by filter (a session's UPDATE, which locks a,
    then b) while a rival transaction holds b and c, and then asks for a:
    MariaDB rolls the lighter transaction, the PATCH's, back. The PATCH's
    response, the deadlocks MariaDB counted, and each row's name after."""
    with httpx.Client(base_url=server_url, timeout=30) as http:
        a, b, c = (create(http, name="before").json()["id"] for _ in range(3))

    def patch():
        with httpx.Client(base_url=server_url, timeout=30) as http:
            params = {"id": f"in.({a},{b})"}
            return http.patch("/mytable/", params=params, json={"name": "patched"}, headers=WRITER)

    rename = sa.text("UPDATE mytable SET name = 'rival' WHERE id = :id")

    async def main():
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as watch, engine.connect() as rival:
                before = await deadlocks_counted(watch)
                await rival.begin()
                await rival.execute(rename, [{"id": b}, {"id": c}])  # the heavier transaction
                patching = asyncio.get_running_loop().run_in_executor(None, patch)
                await until_a_lock_wait(watch)  # the PATCH, holding a, waits for b
                await rival.execute(rename, {"id": a})  # the cycle: the PATCH is its victim
                await rival.commit()
                response = await patching
                after = await deadlocks_counted(watch)
                read = sa.text("SELECT id, name FROM mytable WHERE id IN (:a, :b, :c)")
                names = dict((await watch.execute(read, {"a": a, "b": b, "c": c})).all())
                return response, after - before, [names[n] for n in (a, b, c)]
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_a_write_that_a_deadlock_rolled_back_runs_again(server, database_url):
    if not database_url.startswith("mysql"):
        pytest.skip("MariaDB's deadlocks")
    response, deadlocks, names = patch_made_a_deadlocks_victim(server.url, database_url)
    assert deadlocks == 1
    assert response.status_code == 200, response.text
    assert [row["name"] for row in response.json()] == ["patched", "patched"]
    assert names == ["patched", "patched", "rival"]  # run again once the rival committed


def test_a_deadlock_on_the_last_attempt_is_a_503_that_says_so(database_url):
    if not database_url.startswith("mysql"):
        pytest.skip("MariaDB's deadlocks")
    app = make_app(database_url, **{"api.write_attempts": "1", "api.tokens": TOKENS})
    with ThreadedServer(ASGIApp(app)) as server:
        response, deadlocks, names = patch_made_a_deadlocks_victim(server.url, database_url)
    app.close()
    assert deadlocks == 1
    body = assert_problem(response, 503)
    assert body["code"] == "40001"
    assert "deadlock" in body["detail"]
    assert response.headers["retry-after"] == "1"
    assert names == ["rival", "rival", "rival"]  # nothing of the PATCH was written


def deadlocks_so_far(database_url):
    """MariaDB's count of deadlocks since it started."""

    async def read():
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                return await deadlocks_counted(connection)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_concurrent_upserts_of_the_same_rows_in_any_order_do_not_deadlock(server, database_url):
    if not database_url.startswith("mysql"):
        pytest.skip("MariaDB's deadlocks")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        ids = [create(http, name="before").json()["id"] for _ in range(5)]
    orders = [ids[n:] + ids[:n] for n in range(5)] + [ids[::-1], ids[1::2] + ids[::2]]
    upsert = {**WRITER, "Prefer": "resolution=merge-duplicates,return=representation"}

    def upsert_in_turn(order):
        answered = []
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for round_ in range(10):
                body = [{"id": id_, "name": f"upserted {round_}"} for id_ in order]
                answered.append(http.post("/mytable/", json=body, headers=upsert))
        return answered

    before = deadlocks_so_far(database_url)
    with concurrent.futures.ThreadPoolExecutor(len(orders)) as pool:
        answers = list(pool.map(upsert_in_turn, orders))
    # Every upsert locks the rows in one order: by their keys.
    assert deadlocks_so_far(database_url) - before == 0
    for order, answered in zip(orders, answers, strict=True):
        for response in answered:
            assert response.status_code == 201, response.text
            assert [row["id"] for row in response.json()] == order  # as sent


def garbage_of(send_requests):
    """What of the API's request handling only the cyclic GC would free,
    after ``send_requests()``: its requests, responses and the frames of its
    code (an HTTP client leaves cycles of its own), by name. The collector
    is off meanwhile, in the whole process (the server's thread too)."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        send_requests()
        gc.collect()
        return collections.Counter(filter(None, map(_of_the_api, gc.garbage)))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _of_the_api(thing):
    """The name of ``thing`` if it is a request, response or frame of the
    API's handling of a request; else None."""
    if isinstance(thing, (pyramid.request.Request, webob.Response)):
        return type(thing).__qualname__
    if isinstance(thing, types.FrameType):
        path = thing.f_code.co_filename
        if any(f"/{package}/" in path for package in ("api", "pyramid", "pyramid_tm")):
            return f"frame of {thing.f_code.co_qualname}"
    return None


def test_a_request_failed_or_not_leaves_nothing_for_the_cyclic_gc(http):
    """A request's objects go when it is answered. Pyramid keeps a failure's
    traceback on the request, whose frames hold the request: without
    ``tracebacks.forgetting_tracebacks``, each failure kept its request, body and
    response alive until a collection (300 malformed bodies of 0.9 MB took a
    worker from 95 to 267 MiB: bench/hostile.py)."""
    row = create(http).json()
    writer = {**WRITER, "Content-Type": "application/json"}
    minimal = {"Authorization": WRITER["Authorization"], "Content-Type": "application/json"}
    stale = {**writer, "If-Match": '"stale"'}
    requests = [
        ("GET", f"/mytable/{row['id']}", {}, None, 200),
        ("GET", "/mytable/?limit=3", {}, None, 200),
        ("POST", "/mytable/", minimal, b'{"name": "cycles"}', 201),
        ("PATCH", f"/mytable/{row['id']}", {**writer, "If-Match": "*"}, b'{"name": "y"}', 200),
        ("GET", "/mytable/999999999", {}, None, 404),
        ("GET", "/mytable/?id=nope.1", {}, None, 400),
        ("POST", "/mytable/", writer, b'{"name": ', 400),
        ("POST", "/mytable/", writer, b'{"no such column": 1}', 422),
        ("POST", "/mytable/", {"Content-Type": "application/json"}, b'{"name": "x"}', 401),
        ("PATCH", f"/mytable/{row['id']}", stale, b'{"name": "x"}', 412),
        ("PUT", "/", writer, b"{}", 405),
        ("POST", "/_probe_write_then_fail?name=cycles", {}, None, 500),
    ]

    def send_requests():
        for method, path, headers, body, status in requests * 5:
            response = http.request(method, path, headers=headers, content=body)
            assert response.status_code == status, (method, path, response.text)

    send_requests()  # the client's and the server's first use of each path
    assert garbage_of(send_requests) == {}


def test_an_error_a_trigger_signals_is_answered_as_postgrest_answers_a_raise():
    """A trigger that checks a row (SIGNAL): MySQL's ER_SIGNAL_EXCEPTION is
    an OperationalError to the driver, and was a 503 that invites a retry.
    It is PostgREST's answer to a RAISE: 400 and P0001 with the trigger's
    message, or the status a PTnnn SQLSTATE names; nothing is written."""
    with mariadb_app(
        "CREATE TABLE probe_guarded (id INT AUTO_INCREMENT PRIMARY KEY, qty INT NOT NULL)",
        "CREATE TRIGGER probe_guard BEFORE INSERT ON probe_guarded FOR EACH ROW BEGIN"
        " IF NEW.qty < 0 THEN"
        " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'qty must not be negative'; END IF;"
        " IF NEW.qty = 402 THEN SIGNAL SQLSTATE 'PT402' SET MESSAGE_TEXT = 'Payment Required';"
        " END IF;"
        " IF NEW.qty = 7 THEN SIGNAL SQLSTATE '22000' SET MESSAGE_TEXT = 'not seven'; END IF;"
        " END",
        **{"api.tables": "probe_guarded"},
    ) as client:
        refused = client.post_json("/probe_guarded/", {"qty": -1}, headers=WRITER, status=400)
        assert (refused.json["code"], refused.json["message"]) == (
            "P0001",
            "qty must not be negative",
        )
        assert "Retry-After" not in refused.headers
        body = [{"qty": 1}, {"qty": -2}]
        assert client.post_json("/probe_guarded/", body, headers=WRITER, status=400)
        chosen = client.post_json("/probe_guarded/", {"qty": 402}, headers=WRITER, status=402)
        assert (chosen.json["code"], chosen.json["message"]) == ("PT402", "Payment Required")
        passed_on = client.post_json("/probe_guarded/", {"qty": 7}, headers=WRITER, status=400)
        assert (passed_on.json["code"], passed_on.json["message"]) == ("22000", "not seven")
        assert client.get("/probe_guarded/").json == []
        client.post_json("/probe_guarded/", {"qty": 3}, headers=WRITER, status=201)
        assert [row["qty"] for row in client.get("/probe_guarded/").json] == [3]


def test_a_cascade_that_would_duplicate_a_child_s_unique_key_is_a_409():
    """ON UPDATE CASCADE into a child's unique key: MariaDB's 1761, which
    the driver raises as an OperationalError, was a 503. It is a conflict,
    as PostgreSQL's unique violation is, and changes nothing."""
    with mariadb_app(
        "CREATE TABLE probe_parent (n INT PRIMARY KEY)",
        "CREATE TABLE probe_child (id INT PRIMARY KEY, parent_n INT NOT NULL, k INT NOT NULL,"
        " UNIQUE KEY one_a_parent (parent_n, k),"
        " FOREIGN KEY (parent_n) REFERENCES probe_parent (n) ON UPDATE CASCADE)",
        "INSERT INTO probe_parent VALUES (1), (3)",
        "INSERT INTO probe_child VALUES (1, 1, 0), (2, 3, 0)",
        **{"api.tables": "probe_parent probe_child"},
    ) as client:
        conflict = client.patch_json("/probe_parent/?n=eq.1", {"n": 3}, headers=WRITER, status=409)
        assert conflict.json["code"] == "23505"
        assert "probe_child" in conflict.json["message"]
        assert "one_a_parent" in conflict.json["message"]
        assert client.get("/probe_parent/").json == [{"n": 1}, {"n": 3}]
        moved = client.patch_json("/probe_parent/?n=eq.1", {"n": 2}, headers=WRITER)
        assert moved.json == [{"n": 2}]
        assert client.get("/probe_child/1").json["parent_n"] == 2


def test_a_database_user_that_may_only_read_and_insert_is_served_and_refused_with_403():
    """A database user without the TRIGGER privilege sees a trigger but not
    its body (NULL), which stopped the API from starting; and a write the
    user may not do (1142) was a 503 that invites a retry. Now a column a
    trigger may set is left to the database to check, and the refused
    write is PostgREST's 403 (42501), without the user's name."""
    url, drop = mariadb_database()
    name = make_url(url).database
    run_sql(
        url,
        "CREATE TABLE probe_stamped (id INT AUTO_INCREMENT PRIMARY KEY, qty INT NOT NULL,"
        " stamped DATETIME NOT NULL)",
        "CREATE TRIGGER probe_stamped_now BEFORE INSERT ON probe_stamped FOR EACH ROW"
        " SET NEW.stamped = NOW()",
        "INSERT INTO probe_stamped (qty) VALUES (1)",
        "CREATE USER IF NOT EXISTS api_reader@'%' IDENTIFIED BY 'reader-pw'",
        f"GRANT SELECT ON {name}.* TO api_reader@'%'",
        f"GRANT INSERT ON {name}.probe_stamped TO api_reader@'%'",
    )
    reader = make_url(url).set(username="api_reader", password="reader-pw")
    reader_url = reader.render_as_string(hide_password=False)
    app = make_app(reader_url, **{"api.tables": "*", "api.tokens": TOKENS})
    try:
        client = webtest.TestApp(app)
        created = client.post_json("/probe_stamped/", {"qty": 2}, headers=WRITER_ONE, status=201)
        assert created.json["stamped"] is not None
        refused = client.patch_json(
            "/probe_stamped/?id=eq.1", {"qty": 3}, headers=WRITER, status=403
        )
        assert refused.json["code"] == "42501" and "api_reader" not in refused.text
        assert "retry-after" not in refused.headers
        deleted = client.delete("/probe_stamped/?id=eq.1", headers=WRITER, status=403)
        assert deleted.json["code"] == "42501"
        assert [row["qty"] for row in client.get("/probe_stamped/").json] == [1, 2]
    finally:
        app.close()
        run_sql(url, "DROP USER IF EXISTS api_reader@'%'")
        drop()


def test_a_write_to_a_read_only_server_says_so():
    """A replica, or a primary being failed over (MariaDB's read_only, which
    binds users without SUPER): 1290, an OperationalError to the driver,
    was "the database is unavailable". It is a 503 to retry that says the
    database takes no writes (PostgreSQL's 25006); reads still answer."""
    url, drop = mariadb_database()
    name = make_url(url).database
    run_sql(
        url,
        "CREATE TABLE probe_replica (id INT AUTO_INCREMENT PRIMARY KEY, qty INT)",
        "INSERT INTO probe_replica (qty) VALUES (1)",
        "CREATE USER IF NOT EXISTS api_replica_user@'%' IDENTIFIED BY 'replica-pw'",
        f"GRANT ALL ON {name}.* TO api_replica_user@'%'",
    )
    user = make_url(url).set(username="api_replica_user", password="replica-pw")
    app = make_app(
        user.render_as_string(hide_password=False),
        **{"api.tables": "probe_replica", "api.tokens": TOKENS},
    )
    try:
        client = webtest.TestApp(app)
        run_sql(MARIADB_URL, "SET GLOBAL read_only = ON")
        try:
            refused = client.post_json("/probe_replica/", {"qty": 2}, headers=WRITER, status=503)
            patched = client.patch_json(
                "/probe_replica/?id=eq.1", {"qty": 3}, headers=WRITER, status=503
            )
            read = client.get("/probe_replica/").json
        finally:
            run_sql(MARIADB_URL, "SET GLOBAL read_only = OFF")
        for answer in (refused, patched):
            assert answer.json["code"] == "25006" and "read-only" in answer.json["detail"]
            assert answer.headers["Retry-After"] == "1"
        assert read == [{"id": 1, "qty": 1}]
        client.post_json("/probe_replica/", {"qty": 2}, headers=WRITER, status=201)
    finally:
        app.close()
        run_sql(url, "DROP USER IF EXISTS api_replica_user@'%'")
        drop()


MYSQL_8_SQL_MODE = (
    "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
)


def test_a_server_that_is_not_strict_still_refuses_what_a_column_cannot_hold():
    """On a server whose sql_mode is not strict (older installs, and apps
    that set it so), MariaDB stored an emoji in a utf8mb3 column as "?",
    and the API answered 201 with the changed row. Its sessions are strict
    now, whatever the server's mode: 422, and nothing stored."""
    (mode,) = fetch_sql(MARIADB_URL, "SELECT @@GLOBAL.sql_mode")[0]
    run_sql(MARIADB_URL, "SET GLOBAL sql_mode = ''")
    try:
        with mariadb_app(
            "CREATE TABLE probe_lax (id INT AUTO_INCREMENT PRIMARY KEY,"
            " s VARCHAR(10) CHARACTER SET utf8mb3)",
            **{"api.tables": "probe_lax"},
        ) as client:
            refused = client.post_json("/probe_lax/", {"s": "a😀b"}, headers=WRITER, status=422)
            assert "s" in refused.json["message"]
            client.post_json("/probe_lax/", {"s": "plain"}, headers=WRITER, status=201)
            assert [row["s"] for row in client.get("/probe_lax/").json] == ["plain"]
    finally:
        run_sql(MARIADB_URL, f"SET GLOBAL sql_mode = '{mode}'")


def test_what_mysql_8_s_default_sql_mode_refuses_is_a_4xx_that_says_why():
    """Under MySQL 8's default sql_mode, on MariaDB: a zero date a table was
    made with is a default the server refuses (1978), and an expression
    selected twice among grouped columns a grouping it refuses (1055). Each
    was a 503 "the database is unavailable", for the same request again."""
    (mode,) = fetch_sql(MARIADB_URL, "SELECT @@GLOBAL.sql_mode")[0]
    run_sql(MARIADB_URL, f"SET GLOBAL sql_mode = '{MYSQL_8_SQL_MODE}'")
    try:
        with mariadb_app(
            "SET SESSION sql_mode = ''",
            "CREATE TABLE probe_legacy (id INT AUTO_INCREMENT PRIMARY KEY, n INT,"
            " born DATE NOT NULL DEFAULT '0000-00-00')",
            **{"api.tables": "probe_legacy", "api.aggregates_enabled": "true"},
        ) as client:
            refused = client.post_json("/probe_legacy/", {"n": 1}, headers=WRITER, status=422)
            assert refused.json["message"] == (
                "A column left out has a default the database refuses: born."
            )
            client.post_json("/probe_legacy/", {"n": 1, "born": "2000-01-01"}, headers=WRITER)
            twice = {"select": "a:n::text,b:n::text,count()"}
            grouped = client.get("/probe_legacy/", params=twice, status=400)
            assert grouped.json["code"] == "42803"
            once = client.get("/probe_legacy/", params={"select": "a:n::text,count()"})
            assert once.json == [{"a": "1", "count": 1}]
    finally:
        run_sql(MARIADB_URL, f"SET GLOBAL sql_mode = '{mode}'")


def test_bytes_under_no_backslash_escapes_are_stored_as_sent_and_never_run():
    """asyncmy writes values into a statement's text and escapes bytes with
    backslashes whatever the server's sql_mode. Under NO_BACKSLASH_ESCAPES a
    quote in a BLOB ended its literal, and the rest ran as SQL: a POST
    dropped a table. A trailing backslash was stored twice."""
    (mode,) = fetch_sql(MARIADB_URL, "SELECT @@GLOBAL.sql_mode")[0]
    run_sql(MARIADB_URL, f"SET GLOBAL sql_mode = 'NO_BACKSLASH_ESCAPES,{mode}'")
    try:
        with mariadb_app(
            "CREATE TABLE probe_blobs (id INT PRIMARY KEY, b VARBINARY(100), s VARCHAR(100))",
            "CREATE TABLE probe_canary (id INT PRIMARY KEY)",
            **{"api.tables": "probe_blobs,probe_canary"},
        ) as client:
            sent = {
                1: (b"x'); DROP TABLE probe_canary; -- ", "it's \\ here"),
                2: (b"a\\", "ends in \\"),
            }
            for key, (value, text) in sent.items():
                row = {"id": key, "b": base64.b64encode(value).decode(), "s": text}
                assert client.post_json("/probe_blobs/", row, headers=WRITER_ONE).json == row
            stored = client.get("/probe_blobs/", params={"order": "id"}).json
            assert [(base64.b64decode(r["b"]), r["s"]) for r in stored] == list(sent.values())
            found = client.get("/probe_blobs/", params={"b": f"eq.{stored[1]['b']}"}).json
            assert [r["id"] for r in found] == [2]
            assert client.get("/probe_canary/").json == []  # still there
    finally:
        run_sql(MARIADB_URL, f"SET GLOBAL sql_mode = '{mode}'")


def test_a_read_past_the_server_s_max_join_size_is_a_400_that_says_so():
    """A server that bounds the rows a SELECT may look at (max_join_size,
    which turns sql_big_selects off) refuses a read past it (1104): that
    was a 503 with Retry-After, for the same refusal again."""
    (size,) = fetch_sql(MARIADB_URL, "SELECT @@GLOBAL.max_join_size")[0]
    run_sql(MARIADB_URL, "SET GLOBAL max_join_size = 1000")
    try:
        with mariadb_app(
            "CREATE TABLE probe_joined (id INT PRIMARY KEY, n INT)",
            "SET SESSION sql_big_selects = 1",
            "INSERT INTO probe_joined SELECT seq, seq FROM seq_1_to_5000",
            "ANALYZE TABLE probe_joined",  # the estimate the bound is checked against
            **{"api.tables": "probe_joined"},
        ) as client:
            assert client.get("/probe_joined/", params={"id": "eq.7"}).json == [{"id": 7, "n": 7}]
            refused = client.get("/probe_joined/", params={"n": "gt.3"}, status=400)
            assert refused.json["code"] == "54000"
            assert "max_join_size" in refused.json["message"]
            assert "Retry-After" not in refused.headers
    finally:
        run_sql(MARIADB_URL, f"SET GLOBAL max_join_size = {size}")


def test_filters_and_bodies_keep_their_backslashes_under_no_backslash_escapes():
    """Under sql_mode NO_BACKSLASH_ESCAPES (asked for by apps ported from
    other databases), a backslash in SQL text is a character, not an escape:
    every like filter's ESCAPE '\\\\' was two characters, which MariaDB
    refused (1210), and the API answered 503 "unavailable". Values still go
    as bound parameters, which the driver escapes as the server reads them."""
    (mode,) = fetch_sql(MARIADB_URL, "SELECT @@GLOBAL.sql_mode")[0]
    run_sql(MARIADB_URL, f"SET GLOBAL sql_mode = 'NO_BACKSLASH_ESCAPES,{mode}'")
    try:
        with mariadb_app(
            "CREATE TABLE probe_slash (id INT AUTO_INCREMENT PRIMARY KEY, s VARCHAR(20))",
            **{"api.tables": "probe_slash"},
        ) as client:
            for value in ("a_b", "axb", "50%", "back\\slash", "it's\\"):
                client.post_json("/probe_slash/", {"s": value}, headers=WRITER, status=201)

            def found(**params):
                return [r["s"] for r in client.get("/probe_slash/", params=params).json]

            assert found(s="like.a\\_b") == ["a_b"]
            assert found(s="ilike.A\\_B") == ["a_b"]
            assert found(s="like.*\\%") == ["50%"]
            assert found(s="like.back\\\\*") == ["back\\slash"]
            assert found(s="eq.it's\\") == ["it's\\"]
            assert found(s='in.("back\\\\slash",a_b)', order="id") == ["a_b", "back\\slash"]
    finally:
        run_sql(MARIADB_URL, f"SET GLOBAL sql_mode = '{mode}'")


def test_a_write_over_the_server_s_max_allowed_packet_is_a_413():
    """A statement longer than the server's max_allowed_packet (4 MB by
    MySQL 5.7's default, under a body api.max_body_bytes may allow): the
    server cuts the connection, which was "the database is unavailable"
    with Retry-After, for the same request again and again. It is a 413
    that says why; nothing is written, and the next write is served."""
    (packet,) = fetch_sql(MARIADB_URL, "SELECT @@GLOBAL.max_allowed_packet")[0]
    url, drop = mariadb_database()
    run_sql(url, "CREATE TABLE probe_bulky (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT)")
    run_sql(MARIADB_URL, "SET GLOBAL max_allowed_packet = 65536")
    app = make_app(url, **{"api.tables": "probe_bulky", "api.tokens": TOKENS})
    try:
        with ThreadedServer(ASGIApp(app)) as server, httpx.Client(base_url=server.url) as http:
            rows = [{"body": "x" * 1000} for _ in range(100)]
            refused = http.post("/probe_bulky/", json=rows, headers=WRITER)
            problem = assert_problem(refused, 413)
            assert "max_allowed_packet" in problem["message"]
            assert "retry-after" not in refused.headers
            assert http.get("/probe_bulky/").json() == []
            assert http.post("/probe_bulky/", json=rows[:10], headers=WRITER).status_code == 201
            assert len(http.get("/probe_bulky/").json()) == 10
    finally:
        run_sql(MARIADB_URL, f"SET GLOBAL max_allowed_packet = {packet}")
        app.close()
        drop()
