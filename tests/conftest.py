"""Fixtures: real databases (SQLite always, MariaDB when reachable, required in CI)
built by ``alembic upgrade head``, and real HTTP servers over the ASGI front door.
Shared helpers are in ``tests/support``."""

import asyncio
import os

import httpx
import pytest
import sqlalchemy as sa
import webtest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from api.bridge.asgi import ASGIApp
from api.seed import seed
from tests.support import (
    PROBE_SETTINGS,
    SEEDED_ROWS,
    TOKENS,
    OwnRows,
    alembic,
    make_app,
    mariadb_database,
    run_sql,
)
from tests.support.sakila import MYSQL_TYPES, load_sakila
from tests.support.servers import ThreadedServer

# The app prefers DATABASE_URL over its settings; tests name their databases.
os.environ.pop("DATABASE_URL", None)


async def _create_probe_table(url):
    from tests.support.probe_views import BOOK_ROWS, PROBE_ROWS, probe_metadata, probe_nullable

    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(probe_metadata.create_all)
            await connection.execute(sa.insert(probe_nullable), PROBE_ROWS)
            for table, rows in BOOK_ROWS.items():
                await connection.execute(sa.insert(table), rows)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def mariadb_url():
    url, drop = mariadb_database()
    yield url
    drop()


@pytest.fixture(scope="session", params=["sqlite", "mariadb"])
def database_url(request, tmp_path_factory):
    """A migrated database with SEEDED_ROWS demo rows, per backend."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "api.sqlite"
        url, drop = f"sqlite+aiosqlite:///{path}", lambda: None
    else:
        url, drop = mariadb_database()
    alembic(url, "upgrade", "head")
    asyncio.run(_create_probe_table(url))
    app = make_app(url)
    app.run(seed, app.registry, SEEDED_ROWS)
    app.close()
    yield url
    drop()


@pytest.fixture(scope="session")
def backend(database_url):
    return make_url(database_url).get_backend_name()


@pytest.fixture(scope="session")
def wsgi_app(database_url):
    app = make_app(database_url, **PROBE_SETTINGS)
    yield app
    app.close()


@pytest.fixture
def testapp(wsgi_app):
    """WebTest over the WSGI front door."""
    return webtest.TestApp(wsgi_app)


@pytest.fixture(scope="session")
def server(wsgi_app):
    """A real HTTP server (uvicorn, ASGI front door) over the backend's database."""
    with ThreadedServer(ASGIApp(wsgi_app)) as running:
        yield running


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def own_rows(server):
    """30 rows of this test module's own (``OwnRows``), per backend."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield OwnRows(client, 30)


@pytest.fixture(scope="session")
def seeded_mariadb(mariadb_url):
    """A migrated MariaDB database with 300 demo rows, for the servers tests start."""
    alembic(mariadb_url, "upgrade", "head")
    app = make_app(mariadb_url)
    app.run(seed, app.registry, 300)
    app.close()
    return mariadb_url


@pytest.fixture(scope="session")
def sakila_url():
    """MariaDB holding MySQL's Sakila sample database, and the API's own tables."""
    url, drop = mariadb_database()
    load_sakila(url)
    run_sql(url, *MYSQL_TYPES.split(";"))
    alembic(url, "upgrade", "head")
    yield url
    drop()


@pytest.fixture(scope="session")
def sakila_server(sakila_url):
    """The API serving every table, view and stored routine of Sakila by
    reflection (api.tables = *, api.routines = *)."""
    settings = {"api.tables": "*", "api.routines": "*", "api.aggregates_enabled": "true"}
    app = make_app(sakila_url, **settings, **{"api.tokens": TOKENS})
    with ThreadedServer(ASGIApp(app)) as running:
        yield running
    app.close()


@pytest.fixture
def sakila(sakila_server):
    with httpx.Client(base_url=sakila_server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def large_mariadb():
    """A migrated MariaDB database of 131,072 rows: exports larger than any socket buffer."""
    url, drop = mariadb_database()
    alembic(url, "upgrade", "head")
    copy = (
        "INSERT INTO mytable (name, data, version, created_at, updated_at) "
        "SELECT name, data, version, created_at, updated_at FROM mytable"
    )
    first = (
        "INSERT INTO mytable (name, data, version, created_at, updated_at) "
        "VALUES ('a row of a large table', '{\"n\": 1}', 1, NOW(6), NOW(6))"
    )
    run_sql(url, first, *[copy] * 17)
    yield url
    drop()
