"""The engine of plain reads, behind a first-come-first-served gate as wide as its pool."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import ServerBusy
from api.observe import metrics
from api.reads.gate import Gate

# The isolation level in which one transaction reads one snapshot, by dialect
# (the read engine's connections are otherwise in autocommit).
SNAPSHOT_ISOLATION = {"sqlite": "SERIALIZABLE"}

T = TypeVar("T")
A = TypeVar("A")


class Reader:
    """Runs reads on connections of its engine, in arrival order.

    A read runs in one greenlet on the engine's synchronous facade, whose
    driver calls ``await_()``: callers hand it over with ``run_in_greenlet``,
    as each call of the async facade would start a greenlet of its own.

    SQLAlchemy's pool hands a connection that comes back to whoever asks
    next, not to whoever has waited longest, which starved some reads for
    seconds under load: the gate serves its waiters in order.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        connections: int,
        timeout: float,
        statement_timeout: float,
        max_exports: int,
    ) -> None:
        self.engine = engine
        # seconds to wait for a connection; then TimeoutError (503)
        self.gate = Gate(connections, timeout)
        # seconds a read may take, for reads that no request's deadline bounds
        self.statement_timeout = statement_timeout
        # An export holds a connection for as long as its client reads: so
        # many at most, so that the others are left to every other read.
        self.max_exports = max_exports
        self.exports_running = 0

    @contextlib.contextmanager
    def connection_for_export(self) -> Iterator[Connection]:
        """A connection of the read pool held for one export, in one snapshot;
        ServerBusy when ``max_exports`` are running already."""
        if self.exports_running >= self.max_exports:
            raise ServerBusy(f"{self.max_exports} exports are running; try again shortly.")
        self.exports_running += 1
        observed = metrics()
        if observed is not None:
            observed.exports.inc()
        try:
            self.gate.acquire_in_greenlet()  # a timeout here must free the export's slot too
            try:
                with self._connection_in_snapshot() as snapshot, snapshot.begin():
                    yield snapshot
            finally:
                self.gate.release()
        finally:
            self.exports_running -= 1
            if observed is not None:
                observed.exports.dec()

    def _connection_in_snapshot(self) -> Connection:
        """A connection of the pool, at the isolation level of a snapshot.
        Setting it is the connection's first round trip, so one that died
        while pooled (MariaDB closes one idle past ``db.idle_timeout``) fails
        there, and is replaced once, as ``run`` replaces one: the first export
        after a quiet minute was a 500."""
        level = SNAPSHOT_ISOLATION.get(self.engine.dialect.name, "REPEATABLE READ")
        return _once_more_if_dead(self._connection_at, level)

    def _connection_at(self, level: str) -> Connection:
        """A connection at ``level``. What fails in setting it is raised by
        the driver itself, not through a statement: SQLAlchemy neither wraps
        it (for the exception views) nor invalidates a dead connection, so
        both are done here."""
        connection = self.engine.sync_engine.connect()
        try:
            return connection.execution_options(isolation_level=level)
        except self.engine.dialect.loaded_dbapi.Error as exc:
            dead = self.engine.dialect.is_disconnect(exc, None, None)
            if dead:
                connection.invalidate()
            connection.close()
            raise sa.exc.DBAPIError.instance(
                "SET TRANSACTION ISOLATION LEVEL",
                None,
                exc,
                self.engine.dialect.loaded_dbapi.Error,
                connection_invalidated=dead,
            ) from exc

    def run(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)``; once more on a fresh connection if it was dead.

        Call it in a greenlet (``run_in_greenlet``). Connections are not
        pinged as they leave the pool. One that died while pooled (the
        database restarted) fails its first statement, and SQLAlchemy marks
        every connection pooled before it as stale: the second try connects
        afresh, and fails for real only if the database is away.
        """
        self.gate.acquire_in_greenlet()
        try:
            return _once_more_if_dead(self._run_on_a_connection, work)
        finally:
            self.gate.release()

    def _run_on_a_connection(self, work: Callable[[Connection], T]) -> T:
        with self.engine.sync_engine.connect() as connection:
            return work(connection)


def _once_more_if_dead(attempt: Callable[[A], T], argument: A) -> T:
    """``attempt(argument)``, and once more if its connection was found dead
    (and invalidated, with every connection pooled before it)."""
    try:
        return attempt(argument)
    except sa.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    return attempt(argument)
