"""Exports cannot be abused: they stop when their client goes or stalls, and
a worker runs a bounded number of them, on the read side."""

import asyncio
import socket
import threading

import httpx
import pytest
from sqlalchemy import event

from api.bridge.asgi import ASGIApp
from tests.support import (
    assert_problem,
    make_app,
    statements_waiting_on_the_lock,
    table_locked,
)
from tests.support.servers import ThreadedServer, serve_while

NDJSON = {"Accept": "application/x-ndjson"}
EXPORT = b"GET /mytable/ HTTP/1.1\r\nHost: t\r\nAccept: application/x-ndjson\r\n\r\n"


@pytest.fixture
def export_server(large_mariadb):
    """One export at a time, batches of 1,000 rows, a client stalled for 1 s dropped."""
    settings = {"api.max_exports": "1", "api.export_batch_rows": "1000", "api.send_timeout": "1"}
    app = make_app(large_mariadb, **settings)
    with ThreadedServer(ASGIApp(app)) as server:
        yield app, server
    app.close()


def _admitted_again(server):
    """Asks for an export until one is admitted (the single slot is free again)."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(200):
            with client.stream("GET", "/mytable/?limit=1", headers=NDJSON) as response:
                if response.status_code == 200:
                    return True
                response.read()
                assert_problem(response, 503)
            threading.Event().wait(0.05)  # polls for the slot, up to 10 s
    return False


def test_a_second_export_is_503_and_a_stalled_client_is_dropped(export_server):
    _, server = export_server
    with socket.create_connection(("127.0.0.1", server.port)) as stalled:
        stalled.sendall(EXPORT)  # and never reads: the server's writes back up
        with httpx.Client(base_url=server.url, timeout=30) as client:
            second = client.get("/mytable/", headers=NDJSON)
        assert_problem(second, 503)
        assert second.headers["retry-after"] == "1"
        # The stalled client is dropped after api.send_timeout: its slot comes free.
        assert _admitted_again(server)


def test_an_export_stops_within_a_chunk_of_its_client_going_away(export_server):
    app, server = export_server
    batches = []

    def count(conn, cursor, statement, *args):
        if "FROM mytable" in statement:
            batches.append(statement)

    with socket.create_connection(("127.0.0.1", server.port)) as client:
        client.sendall(EXPORT)
        assert client.recv(65536).startswith(b"HTTP/1.1 200")
        readers = [found.reader for found in app.registry.api_engines.by_loop.values()]
        for reader in readers:
            event.listen(reader.engine.sync_engine, "before_cursor_execute", count)
    # gone: the export stops, and gives its slot back (the server runs in this process)
    try:
        for _ in range(200):  # polls, up to 10 s
            if not any(reader.exports_running for reader in readers):
                break
            threading.Event().wait(0.05)
        assert not any(reader.exports_running for reader in readers)
    finally:
        for reader in readers:
            event.remove(reader.engine.sync_engine, "before_cursor_execute", count)
    # 132 batches in all: the export read at most a few after its client went
    assert len(batches) <= 3, len(batches)


def test_an_export_that_waited_in_vain_for_a_connection_frees_its_slot(seeded_mariadb):
    """One read connection, held by a page waiting on a lock: an export gives
    up at the gate (503); once the lock goes, the next export is served."""
    settings = {
        "db.read_pool_size": "1",
        "db.read_max_overflow": "0",
        "db.pool_timeout": "1",
        "api.max_exports": "1",
    }

    async def run(base_url):
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            async with table_locked(seeded_mariadb) as lock_holder:
                holding = asyncio.create_task(client.get("/mytable/?limit=1"))
                await statements_waiting_on_the_lock(lock_holder)
                gave_up = await client.get("/mytable/", headers=NDJSON)
            await holding
            later = await client.get("/mytable/?limit=3", headers=NDJSON)
        return gave_up, later

    gave_up, later = serve_while(make_app(seeded_mariadb, **settings), run)
    assert_problem(gave_up, 503)
    assert later.status_code == 200
    assert len(later.content.splitlines()) == 3
