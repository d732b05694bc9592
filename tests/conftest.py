"""Fixtures: real databases (SQLite always, MariaDB when reachable, required in CI)
built by ``alembic upgrade head``, and real HTTP servers over the ASGI front door."""

import asyncio
import os
import pathlib
import socket
import threading
import uuid

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
import webtest
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from api import main
from api.bridge.asgi import ASGIApp
from api.seed import seed
from api.serve import HTTPProtocol

ROOT = pathlib.Path(__file__).resolve().parent.parent
MARIADB_URL = os.environ.get("TEST_MARIADB_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")
SEEDED_ROWS = 120
IN_CI = bool(os.environ.get("CI"))

# The app prefers DATABASE_URL over its settings; tests name their databases.
os.environ.pop("DATABASE_URL", None)


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


async def _create_probe_table(url):
    from tests.probe_views import PROBE_ROWS, probe_metadata, probe_nullable

    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(probe_metadata.create_all)
            await connection.execute(sa.insert(probe_nullable), PROBE_ROWS)
    finally:
        await engine.dispose()


def run_sql(url, *statements):
    asyncio.run(_run_sql(url, *statements))


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


def make_app(url, **settings):
    return main({}, **{"sqlalchemy.url": url, **settings})


@pytest.fixture(scope="session")
def backend(database_url):
    return make_url(database_url).get_backend_name()


WRITER = {"Authorization": "Bearer writer-secret"}
READER = {"Authorization": "Bearer reader-secret"}
HASHED_WRITER = {"Authorization": "Bearer hashed-secret"}
TOKENS = (
    "writer-secret:read,write reader-secret:read "
    # sha256 of "hashed-secret"
    "sha256:4e598f5daafc2fda61641ddbb5956deb23fde6616366dc9dd5a7c9f47da4d787:write"
)
PROBE_SETTINGS = {
    "pyramid.includes": "tests.probe_views",
    "api.max_body_bytes": str(64 * 1024),
    "api.tokens": TOKENS,
    "api.max_batch_rows": "5",
    "api.export_batch_rows": "7",  # every export test reads several batches
}


@pytest.fixture(scope="session")
def wsgi_app(database_url):
    app = make_app(database_url, **PROBE_SETTINGS)
    yield app
    app.close()


@pytest.fixture
def testapp(wsgi_app):
    """WebTest over the WSGI front door."""
    return webtest.TestApp(wsgi_app)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThreadedServer:
    """Uvicorn serving an ASGI app from a thread of the test process."""

    def __init__(self, app):
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", http=HTTPProtocol
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            threading.Event().wait(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def server(wsgi_app):
    """A real HTTP server (uvicorn, ASGI front door) over the backend's database."""
    with ThreadedServer(ASGIApp(wsgi_app)) as running:
        yield running


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client
