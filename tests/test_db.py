"""Engines per event loop, and pyramid_tm owning the request's transaction."""

import asyncio
import threading
import uuid

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from api.bridge.asgi import ASGIApp
from tests.support import make_app, names_in_table


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
        engine = engines.by_loop[asyncio.get_running_loop()]
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
    total = int(
        http.get("/mytable/?limit=1", headers={"Prefer": "count=exact"}).headers["Total-Count"]
    )
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
