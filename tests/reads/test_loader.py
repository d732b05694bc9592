"""The coalescing point loader: concurrent reads share SELECTs, each gets its row."""

import asyncio
import threading
import uuid

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from api.bridge import await_
from api.models import mytable
from api.reads.loader import CoalescingLoader
from api.reads.reader import Reader
from api.sql.keys import pair_as_the_database_does
from tests.support import WRITER
from tests.support.probe_views import probe_coded


def test_concurrent_point_reads_are_coalesced_and_each_gets_its_row(
    http, server, wsgi_app, own_rows, monkeypatch
):
    assert http.get("/mytable/1").status_code == 200  # the server's engine and loader exist now
    wanted = [own_rows.id(n % 30 + 1) for n in range(300)]  # repeats included
    arrived = 0
    everyone_arrived = asyncio.Event()  # set on the server's loop

    def counting(load):
        async def counted_load(pk):
            nonlocal arrived
            arrived += 1
            if arrived == len(wanted):
                everyone_arrived.set()
            return await load(pk)

        return counted_load

    # The server's loop has a loader; so may the WSGI front door's, from other tests.
    for loaders in wsgi_app.registry.api_engines.loaders.values():
        reads = loaders.get((mytable, False))  # the loader of reads, not of writes' rows
        if reads is not None:
            monkeypatch.setattr(reads, "load", counting(reads.load))
    statements, lock = [], threading.Lock()

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "mytable" in statement:
            with lock:
                statements.append(statement)
            if len(statements) == 1:
                # The first batch is slow to answer: it waits (in the server's
                # loop) until every request has reached the loader, however
                # slowly this machine's client sends them.
                await_(asyncio.wait_for(everyone_arrived.wait(), 30))

    on_loops = wsgi_app.registry.api_engines.by_loop.values()
    engines = [e for found in on_loops for e in (found.engine, found.reader.engine)]
    for engine in engines:
        event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:

        async def fire():
            limits = httpx.Limits(max_connections=300)
            async with httpx.AsyncClient(base_url=server.url, limits=limits) as client:
                return await asyncio.gather(*(client.get(f"/mytable/{n}") for n in wanted))

        responses = asyncio.run(fire())
    finally:
        for engine in engines:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert [r.json()["id"] for r in responses] == wanted
    names = {row["id"]: row["name"] for row in own_rows.rows}
    assert [r.json()["name"] for r in responses] == [names[pk] for pk in wanted]
    # The first batch, then everything that arrived while it was in flight
    # (30 distinct rows: one batch of at most 200 keys).
    assert arrived == len(wanted)
    assert 1 <= len(statements) <= 2, len(statements)
    assert all(" IN " in s.upper() for s in statements)


def test_a_missing_row_in_a_batch_is_404_for_its_caller_only(server):
    async def fire():
        async with httpx.AsyncClient(base_url=server.url) as client:
            return await asyncio.gather(
                client.get("/mytable/1"),
                client.get("/mytable/999999999"),
                client.get("/mytable/2"),
            )

    ok, missing, also_ok = asyncio.run(fire())
    assert (ok.status_code, missing.status_code, also_ok.status_code) == (200, 404, 200)


def test_a_batch_that_asks_for_two_spellings_of_a_key_finds_the_row_for_both(
    http, database_url, backend
):
    """``abc`` and ``ABC`` in one batch: the row came back under ``abc``,
    which was asked for, so ``ABC`` went unpaired and 404'd on MariaDB (a
    third of the runs of the test above, as batches happened to form)."""
    code = f"ab{uuid.uuid4().hex[:5]}"
    assert http.post("/probe_coded/", json={"code": code}, headers=WRITER).status_code == 201

    async def in_one_batch():
        engine = create_async_engine(database_url)
        loader = CoalescingLoader(Reader(engine, 2, 10, 10, 1), probe_coded)
        try:
            spellings = (code, code.upper(), "none-such")
            return await asyncio.gather(*(loader.load(spelling) for spelling in spellings))
        finally:
            await engine.dispose()

    exact, upper, missing = asyncio.run(in_one_batch())
    assert exact == {"code": code, "label": None}
    assert upper == (exact if backend == "mysql" else None)  # SQLite's = is exact
    assert missing is None


def test_an_item_url_finds_the_row_its_key_s_filter_finds(http, server, backend):
    """MariaDB's case-insensitive collation finds the row of ``abc`` for
    ``ABC``, as a filter or a write by that key does: the item URL read
    ``ABC`` and 404'd, while a PATCH of the same URL wrote the row. On
    SQLite both miss. Sent together, so that the spellings share a batch."""
    code = f"ab{uuid.uuid4().hex[:5]}"  # letters, to spell in other cases
    assert http.post("/probe_coded/", json={"code": code}, headers=WRITER).status_code == 201
    spellings = [code, code.upper(), code.capitalize(), f"{code} ", "none-such"]

    async def fire():
        async with httpx.AsyncClient(base_url=server.url) as client:
            return await asyncio.gather(*(client.get(f"/probe_coded/{s}") for s in spellings))

    for spelling, response in zip(spellings, asyncio.run(fire()), strict=True):
        by_filter = http.get("/probe_coded/", params={"code": f"eq.{spelling}"}).json()
        if by_filter:
            assert response.json() == by_filter[0] == {"code": code, "label": None}, spelling
        else:
            assert response.status_code == 404, spelling
    filters = [{"code": f"eq.{spelling}"} for spelling in spellings]
    found = sum(bool(http.get("/probe_coded/", params=f).json()) for f in filters)
    assert found == {"sqlite": 1}.get(backend, 4)  # MariaDB's PAD SPACE finds "abc " too
    assert http.delete(f"/probe_coded/{code}", headers=WRITER).status_code == 204


def test_keys_the_database_equates_pair_with_the_rows_it_found():
    found = {"USA": "row USA", "nld": "row nld"}
    assert pair_as_the_database_does(found, ["usa", "nld"]) == []  # one and one
    assert found["usa"] == "row USA"
    # several: each key with the one row that lower case equates it with
    found = {"USA": "row USA", "NLD ": "row NLD", ("A", 1): "row A1", "Café": "row Café"}
    left = pair_as_the_database_does(found, ["usa", "nld", "x", ("a", 1), "CAFE"])
    assert (found["usa"], found["nld"], found[("a", 1)], found["CAFE"], left) == (
        "row USA",
        "row NLD",
        "row A1",
        "row Café",
        ["x"],  # no row: the database is asked, by the loader
    )
