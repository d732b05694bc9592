"""``pserve production.ini`` as it runs in production: gunicorn, uvicorn workers, MariaDB."""

import asyncio
import collections
import concurrent.futures
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from sqlalchemy.engine import make_url

from api.collections import StartupError
from tests.support import (
    ROOT,
    assert_problem,
    make_app,
    mariadb_database,
    run_sql,
    statements_waiting_on_the_lock,
    table_locked,
)
from tests.support.servers import TcpProxy, free_port, serve_while

PSERVE = pathlib.Path(sys.executable).parent / "pserve"


class Pserve:
    """``pserve production.ini`` in a subprocess, on a free port."""

    def __init__(self, log_path, database_url, gunicorn_args="", **environ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{self.port} {gunicorn_args}",
            **environ,
        }
        self.log_path = log_path
        with open(log_path, "w") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [str(PSERVE), "production.ini"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def __enter__(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                if httpx.get(f"{self.url}/__lbheartbeat__").status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.process.kill()
        raise AssertionError(f"pserve did not start:\n{self.output()}")

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(20)

    def output(self):
        return pathlib.Path(self.log_path).read_text()


async def _locked_reads(base_url, database_url, count):
    """Hold a write lock on mytable while ``count`` reads wait for it; then release.

    Liveness is asked while the lock is held: it can answer only if no read
    holds the worker. Then the reads still waiting are counted, the lock
    still held: all of them, had any thread been blocked or not.
    """
    limits = httpx.Limits(max_connections=count + 10)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        async with table_locked(database_url) as lock_holder:
            reads = [asyncio.create_task(client.get(f"/mytable/{n}")) for n in range(1, count + 1)]
            await statements_waiting_on_the_lock(lock_holder)
            liveness = [(await client.get("/__lbheartbeat__")).status_code for _ in range(3)]
            waiting = sum(not task.done() for task in reads)
        responses = await asyncio.gather(*reads)
    return waiting, liveness, responses


def test_200_reads_waiting_on_a_locked_table_hold_no_threads(seeded_mariadb, tmp_path):
    with Pserve(tmp_path / "pserve.log", seeded_mariadb, "--workers 2") as server:
        waiting, liveness, responses = asyncio.run(_locked_reads(server.url, seeded_mariadb, 200))
        log = server.output()
    assert log.count("Booting worker") == 2, log
    assert liveness == [200, 200, 200]
    assert waiting == 200  # none got through while the lock was held
    assert [r.status_code for r in responses] == [200] * 200
    assert [r.json()["id"] for r in responses] == list(range(1, 201))


def test_the_database_down_at_start_and_mid_run_is_503_until_it_comes_back(
    seeded_mariadb, tmp_path
):
    url = make_url(seeded_mariadb)
    proxy = TcpProxy(url.host, url.port or 3306, free_port())
    through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    try:
        with (
            Pserve(tmp_path / "pserve.log", through_proxy, "--workers 1") as server,
            httpx.Client(base_url=server.url, timeout=30) as http,
        ):
            # down at start: the server is up, the data is not
            assert http.get("/__lbheartbeat__").status_code == 200
            assert_problem(http.get("/__heartbeat__"), 503)
            assert_problem(http.get("/mytable/1"), 503)

            proxy.up()  # the database comes back: recovered with no restart
            assert http.get("/__heartbeat__").status_code == 200
            assert http.get("/mytable/1").json()["id"] == 1

            proxy.down()  # it goes away mid-run, pooled connections and all
            assert_problem(http.get("/mytable/2"), 503)
            assert_problem(http.get("/__heartbeat__"), 503)
            assert http.get("/__lbheartbeat__").status_code == 200

            proxy.up()
            assert http.get("/mytable/2").json()["id"] == 2

            # A restart between two requests: every pooled connection is dead
            # and the database is back. Reads (pages, point reads) still succeed
            # at the first try.
            for path in ("/mytable/?limit=2", "/mytable/3"):
                proxy.down()
                proxy.up()
                assert http.get(path).status_code == 200, path
            assert server.process.poll() is None
            assert "Traceback" not in server.output()
    finally:
        proxy.close()


def test_a_database_that_hangs_is_503_on_readiness_within_its_timeout(seeded_mariadb, tmp_path):
    """The database accepts connections but answers nothing: readiness says so
    in db.ping_timeout (2 s), the process keeps serving, and all is well once
    the database answers again."""
    url = make_url(seeded_mariadb)
    proxy = TcpProxy(url.host, url.port or 3306, free_port())
    through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    proxy.up()
    try:
        with (
            Pserve(tmp_path / "pserve.log", through_proxy, "--workers 1") as server,
            httpx.Client(base_url=server.url, timeout=30) as http,
        ):
            assert http.get("/__heartbeat__").status_code == 200  # pooled connections now
            proxy.stall()
            started = time.monotonic()
            assert_problem(http.get("/__heartbeat__"), 503)
            assert 1.5 < time.monotonic() - started < 5
            assert http.get("/__lbheartbeat__").status_code == 200
            proxy.resume()
            assert http.get("/__heartbeat__").status_code == 200
            assert http.get("/mytable/1").json()["id"] == 1
            assert server.process.poll() is None
            assert "Traceback" not in server.output()
    finally:
        proxy.close()


def test_a_read_that_gets_no_connection_within_the_pool_timeout_is_503(seeded_mariadb):
    """Reads queue for their connections; one that waits past db.pool_timeout is
    told so (503) instead of hanging, and the read that held it still succeeds."""
    settings = {"db.read_pool_size": "1", "db.read_max_overflow": "0", "db.pool_timeout": "1"}
    app = make_app(seeded_mariadb, **settings)

    async def run(base_url):
        async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
            async with table_locked(seeded_mariadb) as lock_holder:
                holding = asyncio.create_task(client.get("/mytable/?limit=1"))
                # it holds the only read connection, waiting on the lock
                await statements_waiting_on_the_lock(lock_holder)
                queued = await client.get("/mytable/?limit=2")
            held = await holding
        return queued, held

    queued, held = serve_while(app, run)
    assert_problem(queued, 503)  # while the lock was held: it gave up, db.pool_timeout
    assert held.status_code == 200
    assert [row["id"] for row in held.json()] == [1]


def _answers_for(url, seconds):
    """The statuses of liveness asked again and again on one keep-alive
    connection for ``seconds``, and the errors of the requests that got none."""
    answers = collections.Counter()
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=10) as http:
        while time.monotonic() < deadline:
            try:
                answers[http.get("/__lbheartbeat__").status_code] += 1
            except httpx.TransportError as exc:
                answers[type(exc).__name__] += 1
    return answers


def test_start_up_waits_for_a_database_started_beside_it(seeded_mariadb, tmp_path):
    """As in a compose file: the API starts before its database is up. It
    stopped at once; it now tries again (db.startup_timeout), then serves."""
    url = make_url(seeded_mariadb)
    proxy = TcpProxy(url.host, url.port or 3306, free_port())
    through_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    comes_up = threading.Timer(5, proxy.up)  # pserve takes a second or two to get there
    comes_up.start()
    try:
        served = Pserve(tmp_path / "pserve.log", through_proxy, "--workers 1", API_TABLES="*")
        with served as server, httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.get("/mytable/1").json()["id"] == 1
        assert "start-up: no database at" in server.output()
    finally:
        comes_up.cancel()
        proxy.close()


def test_start_up_does_not_wait_for_a_database_that_refuses_it(seeded_mariadb, caplog):
    """Credentials the server refuses: no retry mends them, so no wait."""
    refused = make_url(seeded_mariadb).set(username="nobody", password="wrong")
    with pytest.raises(StartupError, match="refused the API's credentials"):
        make_app(refused.render_as_string(hide_password=False), **{"api.tables": "*"})
    assert "trying again" not in caplog.text


def test_start_up_with_no_patience_stops_at_once_for_a_database_away(seeded_mariadb, caplog):
    away = make_url(seeded_mariadb).set(port=free_port()).render_as_string(hide_password=False)
    settings = {"api.tables": "*", "db.startup_timeout": "0"}
    with pytest.raises(StartupError, match="could not read the database"):
        make_app(away, **settings)
    assert "trying again" not in caplog.text


def test_a_column_dropped_says_to_reload_and_sighup_serves_the_schema_as_it_is(tmp_path):
    """After a migration that drops a column, reads of its table failed as
    "database unavailable" with Retry-After, for ever. They now say what
    mends it, and SIGHUP to gunicorn's master builds the app again: the
    workers it starts serve the table's columns as they are now. Clients
    reading all along get every answer."""
    url, drop = mariadb_database()
    run_sql(url, "CREATE TABLE evolving (id INT PRIMARY KEY, a INT, b INT)")
    run_sql(url, "INSERT INTO evolving VALUES (1, 2, 3)")
    server = Pserve(
        tmp_path / "pserve.log", url, "--workers 2", API_TABLES="*", API_DECLARED_TABLES="false"
    )
    try:
        with server, httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/evolving/1").json() == {"id": 1, "a": 2, "b": 3}
            run_sql(url, "ALTER TABLE evolving DROP COLUMN b, ADD COLUMN c INT DEFAULT 4")
            stale = assert_problem(http.get("/evolving/1"), 503)
            assert "reload" in stale["detail"]
            assert "retry-after" not in http.get("/evolving/").headers
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                reading = [pool.submit(_answers_for, server.url, 3.0) for _ in range(16)]
                time.sleep(0.5)
                server.process.send_signal(signal.SIGHUP)
                answered = collections.Counter()
                for done in reading:
                    answered.update(done.result())
            # Each old worker's keep-alive connections were closed under
            # requests already sent: RemoteProtocolError, before drain_grace.
            assert set(answered) == {200}, answered
            deadline = time.monotonic() + 30
            while http.get("/evolving/1").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            answers = [http.get("/evolving/1") for _ in range(20)]  # from each new worker
            assert {(r.status_code, r.text) for r in answers} == {(200, '{"id":1,"a":2,"c":4}')}
            document = http.get("/openapi.json").json()
            assert set(document["components"]["schemas"]["evolvingRow"]["properties"]) == {
                "id",
                "a",
                "c",
            }
        assert "reload: the app was built again" in server.output()
    finally:
        drop()
