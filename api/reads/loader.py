"""Point reads of one table, coalesced into one ``SELECT ... WHERE pk IN (...)`` a batch."""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from api.bridge import run_in_greenlet
from api.collections import describe
from api.observe import metrics
from api.reads.reader import Reader
from api.sql import STATEMENT_CACHE_SIZE
from api.sql.compiled import CompiledSelect, Row
from api.sql.keys import batch, json_keys, loose, pair_as_the_database_does


class CoalescingLoader:
    """Point reads of one table, coalesced: one statement a batch.

    Reads that arrive while a batch is forming, or while the previous batch is
    in flight, wait for the next batch; each caller gets its own row. Batches
    hold at most ``max_batch`` keys and run one at a time, on a connection of
    their own: they see committed rows only, so a request that has written
    must read through its own session instead (``api.db.sessions.fetch_row``).
    Rows hold JSON as its stored text, for a response, unless ``parsed``, for
    a write to merge into. One loader per table, kind and event loop
    (``api.db.engines.Engines``).
    """

    def __init__(
        self, reader: Reader, table: sa.Table, max_batch: int = 200, parsed: bool = False
    ) -> None:
        self.reader = reader
        self.table = table
        self.max_batch = max_batch
        self.parsed = parsed
        self.waiting: dict[Any, list[asyncio.Future[Row | None]]] = {}  # pk -> its callers
        self.running = False
        self.in_flight: asyncio.Task[None] | None = None  # the batch in flight

    async def load(self, pk: Any) -> Row | None:
        future: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(pk, []).append(future)
        if not self.running:
            self.running = True
            asyncio.get_running_loop().call_soon(self._next_batch)
        return await future

    def _next_batch(self) -> None:
        if not self.waiting:
            self.running = False
            return
        keys = list(self.waiting)[: self.max_batch]
        waiting = {key: self.waiting.pop(key) for key in keys}
        observed = metrics()
        if observed is not None:
            observed.batch_size.observe(len(keys))
        # Held here: the loop keeps only a weak reference to a task.
        self.in_flight = asyncio.get_running_loop().create_task(self._run(waiting))

    async def _run(self, waiting: dict[Any, list[asyncio.Future[Row | None]]]) -> None:
        key_of = describe(self.table).key_of

        passed = frozenset() if self.parsed else json_keys(self.table.columns)

        def select(connection: Connection, keys: list[Any]) -> dict[Any, Row]:
            statement, values = batch(self.table, keys, self.parsed)
            rows = _compiled(statement, connection.dialect, passed).dicts(connection, values)
            return {key_of(row): row for row in rows}

        def select_batch(connection: Connection) -> dict[Any, Row]:
            found = select(connection, list(waiting))
            if _spelled_otherwise(found, waiting):
                for key in pair_as_the_database_does(found, waiting):
                    alone = select(connection, [key])  # the database says which
                    if alone:
                        found[key] = next(iter(alone.values()))
            return found

        try:
            # No request's deadline covers a batch: a stalled database would
            # hold it, and every point read queued behind it, for good.
            async with asyncio.timeout(self.reader.statement_timeout):
                rows = await run_in_greenlet(self.reader.run, select_batch)
        except Exception as exc:
            for futures in waiting.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
        else:
            for key, futures in waiting.items():
                for future in futures:
                    if not future.done():
                        future.set_result(rows.get(key))
        finally:
            self._next_batch()  # what arrived meanwhile goes next


def _spelled_otherwise(found: dict[Any, Row], asked: dict[Any, Any]) -> bool:
    """Whether a key asked for may have found its row under another
    spelling (MySQL's ``USA`` for ``usa``): a row came under a key no one
    asked for, or a key without a row is near one that has it (``loose``),
    which a batch that asked for both spellings finds once."""
    if any(key not in asked for key in found):
        return True
    missing = [key for key in asked if key not in found]
    if not missing:
        return False
    near = {loose(key) for key in found}
    return any(loose(key) in near for key in missing)


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def _compiled(
    statement: sa.Select[Any], dialect: Dialect, json_keys: frozenset[str]
) -> CompiledSelect:
    return CompiledSelect(statement, dialect, json_keys)
