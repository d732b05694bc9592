"""Engines per event loop, and pyramid_tm owning the request's transaction."""

import asyncio
import contextlib
import dataclasses
import json
import threading
import uuid

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session

from api.bridge import run_in_greenlet
from api.bridge.asgi import ASGIApp
from api.db import create_engine
from api.sql.compiled import CompiledSelect
from tests.support import (
    MARIADB_URL,
    assert_problem,
    make_app,
    mariadb_app,
    names_in_table,
    run_sql,
    statements_waiting_on_the_lock,
    table_locked,
    total_of,
)
from tests.support.servers import TcpProxy, ThreadedServer, free_port, serve_while


def test_engines_are_made_lazily_per_loop_and_disposed_when_the_loop_stops(database_url):
    app = make_app(database_url)
    engines = app.registry.api_engines
    assert len(engines.by_loop) == 0  # building the app connects nothing (gunicorn forks after)

    asgi = ASGIApp(app)

    async def serve_one_request_in_a_lifespan():
        messages, sent = asyncio.Queue(), []

        async def send(message):
            sent.append(message)

        lifespan = asyncio.create_task(asgi({"type": "lifespan"}, messages.get, send))
        await messages.put({"type": "lifespan.startup"})
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/mytable/1")).status_code == 200
        engine = engines.by_loop[asyncio.get_running_loop()].engine
        await messages.put({"type": "lifespan.shutdown"})
        await lifespan
        return engine, sent

    first_engine, sent = asyncio.run(serve_one_request_in_a_lifespan())
    assert sent == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]
    assert len(engines.by_loop) == 0  # disposed of with its loop
    second_engine, _ = asyncio.run(serve_one_request_in_a_lifespan())
    assert second_engine is not first_engine


@pytest.fixture
def commits():
    """Counts commits of request sessions, per row name written."""
    counted = []
    lock = threading.Lock()

    def after_commit(session):
        with lock:
            counted.append(session)

    event.listen(Session, "after_commit", after_commit)
    yield counted
    event.remove(Session, "after_commit", after_commit)


def test_a_request_that_succeeds_commits_exactly_once(http, commits):
    name = f"committed-{uuid.uuid4().hex}"
    response = http.post("/_probe_write", params={"name": name})
    assert response.status_code == 200
    assert len(commits) == 1
    assert name in names_in_table(http)


def test_a_request_that_raises_rolls_back(http, commits):
    name = f"rolled-back-{uuid.uuid4().hex}"
    response = http.post("/_probe_write_then_fail", params={"name": name})
    assert response.status_code == 500
    assert commits == []
    assert name not in names_in_table(http)


def test_reads_commit_nothing(http, commits):
    assert http.get("/mytable/1").status_code == 200
    assert commits == []


def test_a_safe_request_may_read_through_its_session_and_gives_the_connection_back(http, commits):
    total = total_of(http.get("/mytable/?limit=1", headers={"Prefer": "count=exact"}))
    first = http.get("/_probe_session_read")
    second = http.get("/_probe_session_read")
    assert first.status_code == second.status_code == 200
    assert first.json()["rows"] == total
    assert second.json()["checked_out_before"] in (0, None)  # None: SQLite's pool has no count
    assert commits == []


def test_a_request_that_has_written_reads_its_own_writes(http):
    name = f"own-write-{uuid.uuid4().hex}"
    response = http.post("/_probe_write_then_traverse", params={"name": name})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == name


TIMEOUTS = {"db.statement_timeout": "1", "api.response_timeout": "2"}


def test_a_locked_table_is_503_after_its_lock_wait_for_reads_and_writes(seeded_mariadb):
    """MariaDB bounds each statement's wait for a lock, a second short of
    db.statement_timeout: point reads, pages and writes answer 503 with
    Retry-After while LOCK TABLES ... WRITE holds, as PostgreSQL's
    lock_not_available, since the lock will be let go."""
    timeouts = {"db.statement_timeout": "2", "api.response_timeout": "4"}
    app = make_app(seeded_mariadb, **timeouts, **{"api.tokens": "w:read,write"})

    async def run(base_url):
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            warm = await client.get("/mytable/5")  # its version, and pooled connections
            async with table_locked(seeded_mariadb):
                answers = [
                    await client.get("/mytable/1"),
                    await client.get("/mytable/?limit=2"),
                    await client.patch(
                        "/mytable/5",
                        json={"name": "locked out"},
                        headers={"Authorization": "Bearer w", "If-Match": warm.headers["etag"]},
                    ),
                ]
            after = await client.get("/mytable/1")
        return answers, after

    answers, after = serve_while(app, run)
    for response in answers:
        assert assert_problem(response, 503)["code"] == "55P03"
        assert response.headers["retry-after"] == "1"
    assert after.status_code == 200


def test_a_statement_that_runs_past_the_statement_timeout_is_a_504():
    """A statement MariaDB stopped at db.statement_timeout was "the database
    is unavailable" (503, Retry-After: 1): an invitation to run the same
    statement, for as long, again and again. It is a 504 with PostgreSQL's
    code for a cancelled statement, that says how to ask for less."""
    with mariadb_app(
        "CREATE VIEW probe_slow AS SELECT SLEEP(3) AS s, 1 AS id",
        **{"api.tables": "probe_slow", "db.statement_timeout": "1"},
    ) as client:
        response = client.get("/probe_slow/", status=504)
    assert response.content_type == "application/problem+json"
    assert response.json["code"] == "57014"
    assert "after 1 s (db.statement_timeout)" in response.json["message"]
    assert "Retry-After" not in response.headers


def test_a_stalled_database_is_503_and_the_worker_goes_on(seeded_mariadb):
    """The network to the database accepts and forwards nothing: reads, pages
    and writes answer 503 (their connections discarded), liveness answers,
    and all is well once the database answers again."""
    url = make_url(seeded_mariadb)
    proxy = TcpProxy(url.host, url.port or 3306, free_port())
    through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    proxy.up()
    app = make_app(through_proxy, **TIMEOUTS, **{"api.tokens": "w:read,write"})
    writer = {"Authorization": "Bearer w"}
    try:
        with (
            ThreadedServer(ASGIApp(app)) as server,
            httpx.Client(base_url=server.url, timeout=30) as http,
        ):
            etag = http.get("/mytable/7").headers["etag"]  # connections pooled now
            assert http.get("/mytable/?limit=2").status_code == 200
            proxy.stall()
            stalled = [
                http.get("/mytable/1"),
                http.get("/mytable/?limit=2"),
                http.get("/mytable/", headers={"Accept": "application/x-ndjson"}),
                http.patch("/mytable/7", json={"name": "x"}, headers={**writer, "If-Match": etag}),
            ]
            assert http.get("/__lbheartbeat__").status_code == 200
            proxy.resume()
            recovered = [http.get("/mytable/1"), http.get("/mytable/?limit=2")]
    finally:
        app.close()
        proxy.close()
    for response in stalled:
        assert_problem(response, 503)
        assert response.headers["retry-after"] == "1"
    assert [r.status_code for r in recovered] == [200, 200]


@contextlib.contextmanager
def database_user(database_url, options=""):
    """A user of its own on ``database_url``'s database, made with
    ``options``: the URL as that user, and the user's name."""
    url = make_url(database_url)
    user = f"user_{uuid.uuid4().hex[:8]}"
    run_sql(
        MARIADB_URL,
        f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw' {options}",
        f"GRANT ALL ON {url.database}.* TO '{user}'@'%'",
    )
    try:
        yield url.set(username=user, password="pw").render_as_string(hide_password=False), user
    finally:
        run_sql(MARIADB_URL, f"DROP USER '{user}'@'%'")


def test_idle_connections_go_back_to_the_server_so_writes_do_not_starve(seeded_mariadb):
    """A database user allowed 2 connections, both held idle by the read pool:
    writes fail (503) until the server closes the idle ones (db.idle_timeout),
    then succeed; reads go on too."""
    settings = {
        "db.read_pool_size": "2",
        "db.read_max_overflow": "0",
        "db.idle_timeout": "1",
        "db.pool_timeout": "1",
        "api.tokens": "w:read,write",
    }

    async def run(base_url):
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            async with table_locked(seeded_mariadb) as lock_holder:
                pages = [asyncio.create_task(client.get(f"/mytable/?limit={n}")) for n in (1, 2)]
                await statements_waiting_on_the_lock(lock_holder, count=2)  # both connections
            assert [(await page).status_code for page in pages] == [200, 200]
            statuses = []
            for _ in range(100):  # polls for a write connection, up to ~10 s
                response = await client.post(
                    "/mytable/", json={"name": "starved?"}, headers={"Authorization": "Bearer w"}
                )
                statuses.append(response.status_code)
                if response.status_code == 201:
                    break
                await asyncio.sleep(0.1)
            read_after = await client.get("/mytable/?limit=1")
        return statuses, read_after

    with database_user(seeded_mariadb, "WITH MAX_USER_CONNECTIONS 2") as (limited, _):
        statuses, read_after = serve_while(make_app(limited, **settings), run)
    assert statuses[0] == 503  # starved at first: the read pool held both connections
    assert statuses[-1] == 201, statuses
    assert read_after.status_code == 200


def test_writes_on_connections_the_server_dropped_run_again_on_new_ones(seeded_mariadb):
    """A restart, a failover or a KILL drops the pooled connections. The
    next write of each kind (one row's POST, committed with its group; a
    PATCH by filter; a PATCH with If-Match) was a 503, and so was a GET of
    a call, read on the same pool; each now runs again on a new
    connection, and a write lands once."""
    run_sql(
        seeded_mariadb,
        "CREATE PROCEDURE first_names() READS SQL DATA"
        " SELECT name FROM mytable ORDER BY id LIMIT 1",
    )
    name = f"dropped {uuid.uuid4().hex[:8]}"
    writer = {"Authorization": "Bearer w"}

    async def drop_its_connections(user):
        admin = create_async_engine(MARIADB_URL)
        async with admin.connect() as connection:
            found = await connection.execute(
                text("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = :user"),
                {"user": user},
            )
            for (connection_id,) in found.all():
                await connection.execute(text(f"KILL {connection_id}"))
        await admin.dispose()
        await asyncio.sleep(0.2)  # the API's event loop sees each one closed

    async def run(base_url, user):
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            created = await client.post("/mytable/", json={"name": name}, headers=writer)
            url = created.headers["location"]
            statuses = [created.status_code]
            await drop_its_connections(user)
            posted = await client.post("/mytable/", json={"name": name}, headers=writer)
            await drop_its_connections(user)
            by_filter = await client.patch(
                f"/mytable/?name=eq.{name}", json={"data": {"n": 1}}, headers=writer
            )
            await drop_its_connections(user)
            etag = {"If-Match": (await client.get(url)).headers["etag"]}
            await drop_its_connections(user)
            by_key = await client.patch(url, json={"data": {"n": 2}}, headers=writer | etag)
            await drop_its_connections(user)
            called = await client.get("/rpc/first_names")
            statuses += [posted.status_code, by_filter.status_code, by_key.status_code]
            statuses.append(called.status_code)
            rows = (await client.get(f"/mytable/?name=eq.{name}&order=id")).json()
        return statuses, rows

    try:
        with database_user(seeded_mariadb) as (url, user):
            settings = {"api.tokens": "w:read,write", "api.routines": "first_names"}
            app = make_app(url, **settings)
            statuses, rows = serve_while(app, lambda base_url: run(base_url, user))
    finally:
        run_sql(seeded_mariadb, "DROP PROCEDURE first_names")
    assert statuses == [201, 201, 204, 200, 200]
    assert [(row["data"], row["version"]) for row in rows] == [({"n": 2}, 3), ({"n": 1}, 2)]


def test_an_export_after_the_read_pool_sat_idle_is_served(seeded_mariadb):
    """MariaDB closes a pooled connection idle past db.idle_timeout. An
    export that took one failed as it set its snapshot: the first export
    after a quiet minute was a 500."""
    app = make_app(seeded_mariadb, **{"db.idle_timeout": "1"})

    async def run(base_url):
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            exports = []
            for kind in ("text/csv", "application/x-ndjson"):
                await asyncio.sleep(2.5)  # each pooled connection idles past the timeout
                exports.append(await client.get("/mytable/", headers={"Accept": kind}))
        return exports

    csv, ndjson = serve_while(app, run)
    assert (csv.status_code, ndjson.status_code) == (200, 200), csv.text + ndjson.text
    assert csv.text.startswith("id,name,data,version,")
    rows = [json.loads(line) for line in ndjson.text.splitlines()]
    assert len(rows) >= 300 and rows[0]["id"] == 1


def test_the_write_pool_rolls_back_a_connection_only_when_it_comes_back_in_a_transaction(
    seeded_mariadb,
):
    """The pool's ROLLBACK of a returning connection is a round trip of every
    write: it is left out after a COMMIT, and still made for a connection
    given back with its transaction open, whose changes are undone."""
    settings = make_app(seeded_mariadb, **{"db.pool_size": "1"}).registry.api_settings
    settings = dataclasses.replace(settings, db_max_overflow=0)
    name = f"never-committed-{uuid.uuid4().hex}"

    async def run():
        engine = create_engine(settings)

        async def rollbacks_and_name():
            async with engine.connect() as connection:  # the pool's one connection
                status = text("SHOW SESSION STATUS LIKE 'Com_rollback'")
                rollbacks = int((await connection.execute(status)).one()[1])
                named = await connection.scalar(text("SELECT name FROM mytable WHERE id = 1"))
                await connection.commit()
            return rollbacks, named

        before, _ = await rollbacks_and_name()
        after_commit, _ = await rollbacks_and_name()
        raw = await engine.raw_connection()

        def change_and_give_back_open():
            cursor = raw.cursor()
            cursor.execute("UPDATE mytable SET name = %s WHERE id = 1", (name,))
            cursor.close()
            raw.close()

        await run_in_greenlet(change_and_give_back_open)
        after_open, named = await rollbacks_and_name()
        await engine.dispose()
        return before, after_commit, after_open, named

    before, after_commit, after_open, named = asyncio.run(run())
    assert after_commit == before  # no ROLLBACK after the COMMIT
    assert after_open == after_commit + 1  # the open transaction was rolled back
    assert named != name


def test_writes_wait_their_turn_for_the_write_connections_and_give_them_back(seeded_mariadb):
    """One write connection: writes queue for it in arrival order (the write
    gate) and each gives it back whatever its answer, a lost If-Match too;
    twenty at once are all served."""
    settings = {
        "db.pool_size": "1",
        "db.max_overflow": "0",
        "db.pool_timeout": "5",
        "api.tokens": "w:read,write",
    }
    app = make_app(seeded_mariadb, **settings)
    writer = {"Authorization": "Bearer w"}

    async def run(base_url):
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            stale = {**writer, "If-Match": '"999"'}
            lost = await client.patch("/mytable/1", json={"name": "x"}, headers=stale)
            posts = [
                client.post("/mytable/", json={"name": f"queued {n}"}, headers=writer)
                for n in range(20)
            ]
            created = await asyncio.gather(*posts)
            return lost, created

    engines = app.registry.api_engines
    lost, created = serve_while(app, run)
    assert lost.status_code == 412
    assert [response.status_code for response in created] == [201] * 20
    assert len({response.headers["location"] for response in created}) == 20
    assert len(engines.by_loop) == 0  # the server's loop is gone, and its gate with it


def test_the_write_gate_is_as_wide_as_the_write_pool(seeded_mariadb):
    app = make_app(seeded_mariadb, **{"db.pool_size": "3", "db.max_overflow": "2"})

    async def width():
        gate = app.registry.api_engines.on_loop().write_gate
        await app.registry.api_engines.dispose(asyncio.get_running_loop())
        return gate.free

    assert asyncio.run(width()) == 5


def test_a_connection_whose_answer_was_left_half_read_serves_nothing_more(seeded_mariadb):
    """MySQL sends a cast of bytes to text as the bytes are: asyncmy's UTF-8
    decoding failed part way through the answer and left the rest on the
    wire. The connection went back to the pool, and the next statements on
    it read that rest ("Packet sequence number wrong"): one GET of
    ``picture::text`` on Sakila's staff made the next requests 500s. Such a
    connection is now invalidated, by SQLAlchemy's execution and by the
    compiled reads alike."""
    settings = make_app(seeded_mariadb, **{"db.pool_size": "1"}).registry.api_settings
    settings = dataclasses.replace(settings, db_max_overflow=0)  # one connection, reused
    # An encoded surrogate (U+D800): MariaDB lets it through, Python's UTF-8 does not.
    not_utf8 = sa.cast(sa.func.repeat(sa.literal_column("x'eda080'"), 50_000), sa.String).label(
        "t"
    )

    async def run():
        engine = create_engine(settings)
        answers = []
        try:
            for read in ("sqlalchemy", "compiled"):
                async with engine.connect() as connection:
                    with pytest.raises(Exception) as failed:
                        if read == "sqlalchemy":
                            await connection.execute(sa.select(not_utf8))
                        else:
                            compiled = CompiledSelect(sa.select(not_utf8), engine.dialect)
                            await connection.run_sync(compiled.dicts, {})
                    assert "decode" in str(failed.value)
                async with engine.connect() as connection:
                    answers.append(await connection.scalar(text("SELECT 42")))
        finally:
            await engine.dispose()
        return answers

    assert asyncio.run(run()) == [42, 42]
