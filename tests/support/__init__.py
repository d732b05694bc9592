"""What the tests share: databases, the app, tokens, and helpers that read as a user would.

Fixtures live in ``tests/conftest.py``; everything else shared lives here.
"""

import asyncio
import contextlib
import os
import pathlib
import re
import sys
import uuid

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from api import main

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
BIN = pathlib.Path(sys.executable).parent  # the venv's commands: alembic, schemathesis, ...
MARIADB_URL = os.environ.get("TEST_MARIADB_URL", "mysql+asyncmy://root@127.0.0.1:3306/")
IN_CI = bool(os.environ.get("CI"))
# Demo rows every test database starts with (api-seed), so that the API has data.
SEEDED_ROWS = 120

# Writes to a collection answer their rows only when asked, as PostgREST's do.
WRITER = {"Authorization": "Bearer writer-secret", "Prefer": "return=representation"}
# ... and one row as an object under PostgREST's singular media type.
WRITER_ONE = {**WRITER, "Accept": "application/vnd.pgrst.object+json"}
READER = {"Authorization": "Bearer reader-secret"}
HASHED_WRITER = {"Authorization": "Bearer hashed-secret"}
TOKENS = (
    "writer-secret:read,write reader-secret:read "
    # sha256 of "hashed-secret"
    "sha256:4e598f5daafc2fda61641ddbb5956deb23fde6616366dc9dd5a7c9f47da4d787:write"
)
PROBE_SETTINGS = {
    "pyramid.includes": "tests.support.probe_views",
    "api.max_body_bytes": str(64 * 1024),
    "api.tokens": TOKENS,
    "api.max_batch_rows": "5",
    "api.export_batch_rows": "7",  # every export test reads several batches
    "api.aggregates_enabled": "true",
    "api.plan_enabled": "true",
}
PROBLEM = "application/problem+json"


def make_app(url, **settings):
    return main({}, **{"sqlalchemy.url": url, **settings})


def alembic(url, *args):
    """Run an Alembic command (upgrade/downgrade) against ``url``."""
    config = Config(toml_file=str(ROOT / "pyproject.toml"))
    config.attributes["settings"] = {"sqlalchemy.url": url}
    getattr(command, args[0])(config, *args[1:])


async def _run_sql(url, *statements):
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(sa.text(statement))
    finally:
        await engine.dispose()


def run_sql(url, *statements):
    asyncio.run(_run_sql(url, *statements))


async def _fetch_sql(url, statement):
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(sa.text(statement))]
    finally:
        await engine.dispose()


def fetch_sql(url, statement):
    """The rows of ``statement``, read straight from the database at ``url``, as tuples."""
    return asyncio.run(_fetch_sql(url, statement))


def mariadb_database():
    """A fresh database on the MariaDB server; its URL, and a function to drop it."""
    name = f"api_test_{uuid.uuid4().hex[:12]}"
    try:
        run_sql(MARIADB_URL, f"CREATE DATABASE {name}")
    except Exception as exc:
        message = f"MariaDB is not reachable at {MARIADB_URL}: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    url = make_url(MARIADB_URL).set(database=name).render_as_string(hide_password=False)
    return url, lambda: run_sql(MARIADB_URL, f"DROP DATABASE IF EXISTS {name}")


@contextlib.contextmanager
def mariadb_app(*statements, **settings):
    """A WebTest client of the API (tokens ``TOKENS``, and ``settings``) over
    a fresh MariaDB database that ``statements`` make; dropped after."""
    import webtest

    url, drop = mariadb_database()
    try:
        run_sql(url, *statements)
        app = make_app(url, **{"api.tokens": TOKENS, **settings})
        try:
            yield webtest.TestApp(app)
        finally:
            app.close()
    finally:
        drop()


def assert_problem(response, status):
    """``response`` is a problem+json of ``status``, with no traceback; its body."""
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert "Traceback" not in response.text
    return body


def parameters_of(document, operation):
    """An OpenAPI operation's parameters, each component it refers to read."""
    components = document["components"]["parameters"]
    return [
        components[p["$ref"].rpartition("/")[2]] if "$ref" in p else p
        for p in operation["parameters"]
    ]


def unique_name(prefix="row"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create(http, **fields):
    """POST one row (a unique name unless given); the 201 response."""
    body = {"name": unique_name(), **fields}
    response = http.post("/mytable/", json=body, headers=WRITER_ONE)
    assert response.status_code == 201, response.text
    return response


class OwnRows:
    """Rows a test made for itself: named ``"{tag} {n}"`` for n = 1, 2, ...,
    with ``data`` ``{"n": n, "tags": [...]}``, and ids in the order made."""

    def __init__(self, http, count, batch=5):
        self.tag = "own" + uuid.uuid4().hex[:8]
        self.rows = []
        for first in range(1, count + 1, batch):
            body = [self.body(n) for n in range(first, min(first + batch, count + 1))]
            response = http.post("/mytable/", json=body, headers=WRITER)
            assert response.status_code == 201, response.text
            self.rows += response.json()
        self.ids = [row["id"] for row in self.rows]
        # Only these rows: the filter every query of the test adds.
        self.only = f"name=like.{self.tag}%20*"

    def body(self, n):
        return {
            "name": f"{self.tag} {n}",
            "data": {"n": n, "tags": ["own", "odd" if n % 2 else "even"]},
        }

    def id(self, n):
        """The id of row ``n`` (from 1)."""
        return self.ids[n - 1]


def next_link(response):
    """The URL of the next page (``Link: <...>; rel="next"``), or None;
    of an httpx or a WebTest response."""
    match = re.match(r'<([^>]*)>; rel="next"', response.headers.get("Link", ""))
    return match.group(1) if match else None


def total_of(response):
    """The count a collection's answer gives in Content-Range (``0-24/1000``)."""
    return int(response.headers["content-range"].rpartition("/")[2])


def names_in_table(http):
    names, url = [], "/mytable/?limit=500"
    while url:
        response = http.get(url)
        names += [row["name"] for row in response.json()]
        url = next_link(response)
    return names


@contextlib.asynccontextmanager
async def table_locked(database_url):
    """``LOCK TABLES mytable WRITE`` from a connection of its own, until the block ends."""
    import asyncmy

    url = make_url(database_url)
    lock_holder = await asyncmy.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        database=url.database,
    )
    try:
        async with lock_holder.cursor() as cursor:
            await cursor.execute("LOCK TABLES mytable WRITE")
        yield lock_holder
    finally:
        await lock_holder.ensure_closed()  # the lock goes with the connection


async def statements_waiting_on_the_lock(lock_holder, count=1):
    """Returns once ``count`` statements of other connections wait for the table lock."""
    async with lock_holder.cursor() as cursor:
        while True:
            await cursor.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                "WHERE ID <> CONNECTION_ID() AND STATE LIKE 'Waiting for table%'"
            )
            (waiting,) = await cursor.fetchone()
            if waiting >= count:
                return
            await asyncio.sleep(0.01)


def race_increments(base_url, url, count, setting, clients=16, increments=10):
    """``clients`` clients each add 1, ``increments`` times, to the counter of
    the row at ``url`` (``count(row)`` reads it, ``setting(n)`` is the PATCH
    body that writes it): read, PATCH with If-Match, and on 412 read again.
    Every 412, a write that lost the race after its check too, carries the
    row's current ETag. The row at the end, and how many 412s there were."""

    async def client_loop(client):
        conflicts = 0
        for _ in range(increments):
            while True:
                current = await client.get(url)
                response = await client.patch(
                    url,
                    json=setting(count(current.json()) + 1),
                    headers={**WRITER, "If-Match": current.headers["etag"]},
                )
                if response.status_code == 200:
                    break
                assert response.status_code == 412, response.text
                assert response.headers["etag"] != current.headers["etag"]
                conflicts += 1
        return conflicts

    async def race():
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
            return await asyncio.gather(*(client_loop(client) for _ in range(clients)))

    conflicts = asyncio.run(race())
    with httpx.Client(base_url=base_url, timeout=30) as client:
        return client.get(url).json(), sum(conflicts)


async def deadlocks_counted(connection):
    """MariaDB's count of deadlocks since it started (``Innodb_deadlocks``)."""
    found = await connection.execute(sa.text("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'"))
    return int(found.one()[1])


async def until_a_lock_wait(connection):
    """Once a transaction waits for a lock (or after 5 s): the moment a
    rival can close a deadlock's cycle."""
    waiting = sa.text(
        "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'"
    )
    for _ in range(100):
        if (await connection.execute(waiting)).scalar():
            return
        await asyncio.sleep(0.05)
