"""Engines per event loop: one for request sessions, one for plain reads.

An AsyncEngine and its pool belong to the loop that created them. Gunicorn
builds the app in its master before it forks, so nothing here connects at
configuration time: each loop gets its engines lazily on first use, and
disposes of them when the loop stops (``add_loop_stopping_hook``).
"""

from __future__ import annotations

import asyncio
import functools
import math
import weakref
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from pyramid.registry import Registry
from pyramid.request import Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from api.bridge import await_
from api.db.groups import GroupCommit
from api.logs import error_number
from api.observe import metrics
from api.reads.gate import Gate
from api.reads.loader import CoalescingLoader
from api.reads.reader import Reader
from api.settings import Settings
from api.sql.locks import NAMED_LOCKS
from api.sql.operators import json_contains, regexp


def _json_loads(value: Any) -> Any:
    # SQLite gives a JSON column numeric affinity: a stored JSON number comes
    # back as a number, not as text to parse.
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def engine_options(settings: Settings, pool_size: int, max_overflow: int) -> dict[str, Any]:
    options: dict[str, Any] = {
        "pool_pre_ping": True,  # a connection lost while the database was away is replaced
        "hide_parameters": True,  # row values stay out of error messages, and so of logs
        "json_serializer": lambda obj: orjson.dumps(obj).decode(),
        "json_deserializer": _json_loads,
    }
    if settings.database_url.get_backend_name() == "sqlite":
        return options
    options.update(
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        connect_args={"connect_timeout": settings.db_connect_timeout},
    )
    return options


# The reader's connections are in autocommit: nothing to roll back when they
# go back to the pool, and no ping when they come out of it (those were two of
# the three round trips of a read). A connection that died while pooled fails
# its statement instead, and the read is tried once more (reads.reader.Reader).
READER_OPTIONS = {
    "isolation_level": "AUTOCOMMIT",
    "skip_autocommit_rollback": True,
    "pool_pre_ping": False,
}


def create_engine(settings: Settings) -> AsyncEngine:
    """The engine of request sessions (writes).

    No ping when a connection comes out of the pool (a round trip of every
    write): a connection is renewed before MariaDB would close it for being
    idle (``db.idle_timeout``), as its age bounds its idle time; one that died
    otherwise (a restarted server) fails its first statement before sending
    it, and the request runs again on a new one
    (``database_errors.connection_gone``).
    """
    options = engine_options(settings, settings.db_pool_size, settings.db_max_overflow)
    if "pool_recycle" in options:
        options["pool_pre_ping"] = False
        renew = max(1, settings.db_idle_timeout - 5)
        recycle = options["pool_recycle"]
        options["pool_recycle"] = renew if recycle < 0 else min(recycle, renew)
    asyncmy = settings.database_url.get_driver_name() == "asyncmy"
    if asyncmy:
        # The pool's ROLLBACK of a connection coming back, a round trip of
        # every write, is left out when the server says no transaction is open.
        options["pool_reset_on_return"] = None
    engine = _engine(settings, options)
    if asyncmy:
        event.listen(engine.sync_engine, "reset", _rollback_if_in_transaction)
    return engine


def _rollback_if_in_transaction(dbapi_connection: Any, record: Any, state: Any) -> None:
    """The pool's reset of a connection coming back: its locks by name
    released (``lock_by_name``); in place of its
    unconditional ROLLBACK: none after a COMMIT or a ROLLBACK, when MySQL's
    last answer said no transaction was open (its SERVER_STATUS_IN_TRANS
    flag, which asyncmy keeps). Each statement's answer carries the flag, but
    an error does not: a transaction whose statement failed is rolled back by
    its session, as every failed request's is, before its connection returns."""
    if state.terminate_only or not state.asyncio_safe:
        return  # a connection closed: its locks go with it
    if record.info.pop(NAMED_LOCKS, False):
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("DO RELEASE_ALL_LOCKS()")
        finally:
            cursor.close()
    if state.transaction_was_reset:
        return
    if dbapi_connection.driver_connection.get_transaction_status():
        dbapi_connection.rollback()


def create_reader(settings: Settings) -> Reader:
    """The engine of plain reads, as a ``reads.reader.Reader``."""
    options = {
        **engine_options(settings, settings.read_pool_size, settings.read_max_overflow),
        **READER_OPTIONS,
    }
    engine = _engine(settings, options)
    timeouts = (settings.db_pool_timeout, stall_timeout(settings))
    return Reader(engine, _connections(options), *timeouts, settings.max_exports)


def stall_timeout(settings: Settings) -> float:
    """Seconds the API waits for work no request's deadline covers (a batch
    of point reads, a group of writes), for a network that stalls: a second
    longer than the server's own bound, so that a server that is there
    answers first, and says whether a statement ran or waited too long."""
    return settings.db_statement_timeout + 1.0


def _connections(options: dict[str, Any]) -> int:
    """How many connections a pool of ``options`` lends at once; SQLAlchemy's
    own pool defaults (5 + 10) where the settings give none (SQLite)."""
    return int(options.get("pool_size", 5)) + int(options.get("max_overflow", 10))


def _engine(settings: Settings, options: dict[str, Any]) -> AsyncEngine:
    url = settings.database_url
    engine = create_async_engine(url, **options)
    if url.get_backend_name() == "sqlite":
        setup = functools.partial(_sqlite_session, statement_timeout=settings.db_statement_timeout)
    else:
        _bytes_as_hex_literals()
        server: dict[str, int] = {}  # what the server's sessions take, once learned
        setup = functools.partial(
            _mysql_session,
            statement_timeout=settings.db_statement_timeout,
            idle_timeout=settings.db_idle_timeout,
            server=server,
        )
        event.listen(engine.sync_engine, "handle_error", _discard_if_out_of_step)
        too_large = functools.partial(_refuse_if_too_large, server=server)
        event.listen(engine.sync_engine, "handle_error", too_large)
    event.listen(engine.sync_engine, "connect", setup)
    observed = metrics()
    if observed is not None:  # connections in use, per pool, summed over the workers
        pool = "read" if options.get("isolation_level") == "AUTOCOMMIT" else "write"
        in_use = observed.pool_in_use.labels(pool)
        event.listen(engine.sync_engine, "checkout", lambda *_: in_use.inc())
        event.listen(engine.sync_engine, "checkin", lambda *_: in_use.dec())
    return engine


def _bytes_as_hex_literals() -> None:
    """asyncmy writes every value into the statement's text, and escapes
    bytes with backslashes whatever the server's sql_mode (strings heed
    NO_BACKSLASH_ESCAPES; bytes do not). Under that mode a quote in a BLOB
    ended its literal and the rest ran as SQL, for its connections take
    several statements at once: a POST dropped a table. A hex literal reads
    alike in every mode. Patched in the driver, as no setting reaches it."""
    import asyncmy.converters

    asyncmy.converters.escape_bytes_prefixed = _hex_literal


def _hex_literal(value: bytes | bytearray, mapping: Any = None) -> str:
    return f"_binary X'{value.hex()}'"


def _discard_if_out_of_step(context: Any) -> None:
    """A statement that failed while its answer was being read (text that is
    not UTF-8, raised inside the driver) leaves the rest of the answer on the
    wire, which the connection's next statement would read for its own
    ("Packet sequence number wrong"). Such a connection serves nothing more:
    it is invalidated, alone, as a lost one is; Reader.run then retries a
    read on a fresh one."""
    error = context.original_exception
    if not isinstance(error, context.dialect.loaded_dbapi.Error) or OUT_OF_STEP in str(error):
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = False


# asyncmy's word for an answer that is not the one its statement awaited.
OUT_OF_STEP = "Packet sequence number wrong"


def _sqlite_session(dbapi_connection: Any, _record: object, statement_timeout: float) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside a writer; a busy timeout queues writers
    # instead of failing them at once, for as long as a statement may take.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(statement_timeout * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    # JSON containment (cs, cd), which SQLite lacks; deterministic, so usable anywhere.
    dbapi_connection.create_function("json_contains", 2, json_contains, deterministic=True)
    # In place of SQLAlchemy's REGEXP (Python's re), which a pattern could hold for ever.
    dbapi_connection.create_function("regexp", 2, regexp, deterministic=True)


def _mysql_session(
    dbapi_connection: Any,
    _record: object,
    statement_timeout: float,
    idle_timeout: int,
    server: dict[str, int],
) -> None:
    """Every statement of the session bounded by the server: its run time, and
    its waits for row locks and for table locks (LOCK TABLES, DDL). A session
    left idle in a pool is closed by the server after ``idle_timeout``, so
    that one pool's idle connections never starve the other pool, or another
    client, of the server's connections for good (the pools replace a closed
    connection: pre-ping for writes, one retry for reads)."""
    # A lock wait ends a second before the statement's bound, so that the
    # server says which it was: a wait (1205), worth a retry, or a statement
    # that ran too long (1969), which would run too long again.
    seconds = max(1, math.ceil(statement_timeout) - 1)
    # TIMESTAMP values are read and written in UTC, as the API writes every
    # instant. Strict, whatever the server's sql_mode: without it, a value
    # its column cannot hold (an emoji in utf8mb3) was stored changed ("?")
    # and answered 201, where strict mode refuses it (422).
    common = (
        f"innodb_lock_wait_timeout = {seconds}, lock_wait_timeout = {seconds}, "
        f"wait_timeout = {idle_timeout}, time_zone = '+00:00', "
        "sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')"
    )
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"SET SESSION max_statement_time = {statement_timeout:.3f}, {common}")
    except Exception:  # MySQL: SELECTs only, in milliseconds
        cursor.execute(
            f"SET SESSION max_execution_time = {int(statement_timeout * 1000)}, {common}"
        )
    finally:
        cursor.close()
    if "max_allowed_packet" not in server:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT @@max_allowed_packet")
            server["max_allowed_packet"] = int(cursor.fetchone()[0])
        finally:
            cursor.close()


class StatementTooLarge(Exception):
    """A statement longer than the server takes (``max_allowed_packet``):
    it closes the connection, which reads as the database gone."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a statement of about {size} bytes, over {limit}")
        self.size = size
        self.limit = limit


# What the server says, or does, when a statement is over its max_allowed_packet:
# ER_NET_PACKET_TOO_LARGE, ER_NET_PACKET_TOO_LARGE's reply, and a connection cut.
PACKET_ERRORS = frozenset({1153, 1162, 2006, 2013})


def _refuse_if_too_large(context: Any, server: dict[str, int]) -> None:
    """A statement that failed as a connection lost, and that was longer
    than the server takes, is ``StatementTooLarge``: the request's to mend
    (413), where a lost connection invites the same request again (503).
    The connection is discarded, as a lost one is."""
    limit = server.get("max_allowed_packet")
    if limit is None or error_number(context.original_exception) not in PACKET_ERRORS:
        return
    size = len(context.statement or "") + _size_of(context.parameters)
    if size > limit:
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = False
        raise StatementTooLarge(size, limit)


def _size_of(value: Any) -> int:
    """About the bytes ``value`` (a statement's parameters) takes on the wire."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bytes | bytearray):
        return 2 * len(value) + 11  # as _hex_literal writes it
    if isinstance(value, dict):
        return sum(_size_of(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_size_of(v) for v in value)
    return 8


class LoopEngines(NamedTuple):
    """What one event loop talks to the database through."""

    engine: AsyncEngine  # request sessions (writes, in transactions)
    reader: Reader  # reads that need no transaction
    # Request sessions wait here for a connection of ``engine``, in arrival
    # order: SQLAlchemy's pool hands one that comes back to whoever asks
    # next, and some writes waited a second at 128 connections (reads had
    # the same tail; ``Reader``).
    write_gate: Gate
    # Conditional single-row writes of concurrent requests, committed together.
    group: GroupCommit


class Engines:
    """The engines of one application, two per event loop: one for request
    sessions (writes, in transactions), one for reads that need none."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.by_loop: weakref.WeakKeyDictionary[Any, LoopEngines] = weakref.WeakKeyDictionary()
        self.loaders: weakref.WeakKeyDictionary[
            Any, dict[tuple[sa.Table, bool], CoalescingLoader]
        ] = weakref.WeakKeyDictionary()
        # The loop asked for last, and its engines: a worker runs one loop, and
        # this spares the weak dictionary's lookup, twice in every write.
        self._last: tuple[Any, LoopEngines | None] = (lambda: None, None)

    def on_loop(self) -> LoopEngines:
        """The engines of the running loop, made on its first request."""
        loop = asyncio.get_running_loop()
        last_loop, last = self._last
        if last is not None and last_loop() is loop:
            return last
        found = self.by_loop.get(loop)
        if found is None:
            settings = self.settings
            pool = engine_options(settings, settings.db_pool_size, settings.db_max_overflow)
            gate = Gate(_connections(pool), settings.db_pool_timeout)
            engine = create_engine(settings)
            group = GroupCommit(engine, gate, stall_timeout(settings))
            found = self.by_loop[loop] = LoopEngines(engine, create_reader(settings), gate, group)
        self._last = (weakref.ref(loop), found)
        return found

    def current(self) -> AsyncEngine:
        """The engine of request sessions on the running loop."""
        return self.on_loop().engine

    def reader(self) -> Reader:
        """The ``Reader`` of reads outside any transaction on the running loop."""
        return self.on_loop().reader

    def point_loader(self, table: sa.Table, parsed: bool = False) -> CoalescingLoader:
        """The coalescing point loader of ``table`` on the running loop; of
        rows whose JSON is ``parsed`` (for writes), or passed through."""
        loop = asyncio.get_running_loop()
        loaders = self.loaders.get(loop)
        if loaders is None:
            loaders = self.loaders[loop] = {}
        loader = loaders.get((table, parsed))
        if loader is None:
            loader = CoalescingLoader(self.reader(), table, parsed=parsed)
            loaders[table, parsed] = loader
        return loader

    async def dispose(self, loop: Any) -> None:
        self.loaders.pop(loop, None)
        self._last = (lambda: None, None)
        found = self.by_loop.pop(loop, None)
        if found is not None:
            await found.engine.dispose()
            await found.reader.engine.dispose()


def engines_of(request_or_registry: Request | Registry) -> Engines:
    registry = getattr(request_or_registry, "registry", request_or_registry)
    return registry.api_engines


def get_engine(request_or_registry: Request | Registry) -> AsyncEngine:
    return engines_of(request_or_registry).current()


def get_reader(request_or_registry: Request | Registry) -> Reader:
    return engines_of(request_or_registry).reader()


def dispose_engines(registry: Registry, loop: Any) -> None:
    """A loop-stopping hook: the loop's engines closed, their connections with them."""
    await_(registry.api_engines.dispose(loop))
