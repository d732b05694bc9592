"""Engines per event loop, request sessions joined to ``request.tm``, and which one reads a row.

An AsyncEngine and its pool belong to the loop that created them. Gunicorn
builds the app in its master before it forks, so nothing here connects at
configuration time: each loop gets its engines lazily on first use, and
disposes of them when the loop stops (``add_loop_stopping_hook``).
"""

from __future__ import annotations

import asyncio
import functools
import math
import pathlib
import weakref
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.request import Request
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import ORMExecuteState, Session
from zope.sqlalchemy.datamanager import join_transaction, mark_changed

from api.bridge import await_, run_in_greenlet
from api.bridge.greenlets import in_request_greenlet
from api.bridge.wsgi import background_loop
from api.logs import misconfigured
from api.observe import metrics
from api.reads.gate import Gate
from api.reads.loader import CoalescingLoader
from api.reads.reader import Reader
from api.settings import Settings
from api.sql.compiled import Row
from api.sql.operators import json_contains
from api.sql.writes import load_row


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
    otherwise (a restarted server) fails its request once, with a 503, and is
    replaced.
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


def _rollback_if_in_transaction(dbapi_connection: Any, _record: object, state: Any) -> None:
    """The pool's reset of a connection coming back, in place of its
    unconditional ROLLBACK: none after a COMMIT or a ROLLBACK, when MySQL's
    last answer said no transaction was open (its SERVER_STATUS_IN_TRANS
    flag, which asyncmy keeps). Each statement's answer carries the flag, but
    an error does not: a transaction whose statement failed is rolled back by
    its session, as every failed request's is, before its connection returns."""
    if state.terminate_only or state.transaction_was_reset or not state.asyncio_safe:
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
    timeouts = (settings.db_pool_timeout, settings.db_statement_timeout)
    return Reader(engine, _connections(options), *timeouts, settings.max_exports)


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
        setup = functools.partial(
            _mysql_session,
            statement_timeout=settings.db_statement_timeout,
            idle_timeout=settings.db_idle_timeout,
        )
    event.listen(engine.sync_engine, "connect", setup)
    observed = metrics()
    if observed is not None:  # connections in use, per pool, summed over the workers
        pool = "read" if options.get("isolation_level") == "AUTOCOMMIT" else "write"
        in_use = observed.pool_in_use.labels(pool)
        event.listen(engine.sync_engine, "checkout", lambda *_: in_use.inc())
        event.listen(engine.sync_engine, "checkin", lambda *_: in_use.dec())
    return engine


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


def _mysql_session(
    dbapi_connection: Any, _record: object, statement_timeout: float, idle_timeout: int
) -> None:
    """Every statement of the session bounded by the server: its run time, and
    its waits for row locks and for table locks (LOCK TABLES, DDL). A session
    left idle in a pool is closed by the server after ``idle_timeout``, so
    that one pool's idle connections never starve the other pool, or another
    client, of the server's connections for good (the pools replace a closed
    connection: pre-ping for writes, one retry for reads)."""
    seconds = max(1, math.ceil(statement_timeout))
    # TIMESTAMP values are read and written in UTC, as the API writes every instant.
    common = (
        f"innodb_lock_wait_timeout = {seconds}, lock_wait_timeout = {seconds}, "
        f"wait_timeout = {idle_timeout}, time_zone = '+00:00'"
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


class LoopEngines(NamedTuple):
    """What one event loop talks to the database through."""

    engine: AsyncEngine  # request sessions (writes, in transactions)
    reader: Reader  # reads that need no transaction
    # Request sessions wait here for a connection of ``engine``, in arrival
    # order: SQLAlchemy's pool hands one that comes back to whoever asks
    # next, and some writes waited a second at 128 connections (reads had
    # the same tail; ``Reader``).
    write_gate: Gate


class Engines:
    """The engines of one application, two per event loop: one for request
    sessions (writes, in transactions), one for reads that need none."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.by_loop: weakref.WeakKeyDictionary[Any, LoopEngines] = weakref.WeakKeyDictionary()
        self.loaders: weakref.WeakKeyDictionary[
            Any, dict[tuple[sa.Table, bool], CoalescingLoader]
        ] = weakref.WeakKeyDictionary()

    def on_loop(self) -> LoopEngines:
        """The engines of the running loop, made on its first request."""
        loop = asyncio.get_running_loop()
        found = self.by_loop.get(loop)
        if found is None:
            settings = self.settings
            pool = engine_options(settings, settings.db_pool_size, settings.db_max_overflow)
            gate = Gate(_connections(pool), settings.db_pool_timeout)
            engines = (create_engine(settings), create_reader(settings), gate)
            found = self.by_loop[loop] = LoopEngines(*engines)
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
        found = self.by_loop.pop(loop, None)
        if found is not None:
            await found.engine.dispose()
            await found.reader.engine.dispose()


def _engines(request_or_registry: Request | Registry) -> Engines:
    registry = getattr(request_or_registry, "registry", request_or_registry)
    return registry.api_engines


def get_engine(request_or_registry: Request | Registry) -> AsyncEngine:
    return _engines(request_or_registry).current()


def get_reader(request_or_registry: Request | Registry) -> Reader:
    return _engines(request_or_registry).reader()


class RequestSession(Session):
    """The sync session behind a request's AsyncSession, joined to ``info["tm"]``.

    zope.sqlalchemy's ``register()`` adds event listeners to each session it
    is given, which costs more than the rest of a point read. These listeners
    are registered once, on the class, and find the request's transaction
    manager in ``session.info``.
    """


@event.listens_for(RequestSession, "after_begin")
def _join_request_transaction(session: Session, transaction: Any, connection: Connection) -> None:
    join_transaction(session, transaction_manager=session.info["tm"])


@event.listens_for(RequestSession, "do_orm_execute")
def _mark_writes(execute_state: ORMExecuteState) -> None:
    """Core INSERT/UPDATE/DELETE count as changes too, not only ORM flushes.

    Without this a Core write leaves the session "unchanged" and is rolled
    back at the end of the request. Raw ``text()`` writes are still invisible:
    write through Core statements.
    """
    if execute_state.is_insert or execute_state.is_update or execute_state.is_delete:
        session = execute_state.session
        mark_changed(session, session.info["tm"])


@event.listens_for(RequestSession, "after_flush")
def _mark_flush(session: Session, flush_context: Any) -> None:
    mark_changed(session, session.info["tm"])


# Methods that write nothing: pyramid_tm leaves them alone (includeme).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def may_write(request: Request) -> bool:
    """pyramid_tm's activate hook: a transaction only for requests that may write.

    Beginning and committing an empty transaction costs a noticeable part of a
    point read.
    """
    return request.method not in SAFE_METHODS


def request_dbsession(request: Request) -> AsyncSession:
    """The request's AsyncSession, once a slot of the write gate is free.

    In a request that may write, it joins the request's transaction, which
    pyramid_tm commits or aborts. A safe request has no transaction manager:
    its session reads in a transaction of its own, rolled back and closed when
    the request finishes (a GET writes nothing). The slot is given back when
    the request is done with its connection.
    """
    engines = _engines(request).on_loop()
    engines.write_gate.acquire_in_greenlet()
    if request.environ.get("tm.active"):
        session = AsyncSession(
            engines.engine,
            sync_session_class=RequestSession,
            expire_on_commit=False,
            info={"tm": request.tm},
        )
    else:
        session = AsyncSession(engines.engine, expire_on_commit=False)
        request.add_finished_callback(lambda request: await_(session.close()))
    # Finished callbacks run after pyramid_tm's commit or abort closed the session.
    request.add_finished_callback(lambda request: engines.write_gate.release())
    return session


def fetch_row(
    request: Request, table: sa.Table, pk: Any, *, for_update: bool = False
) -> Row | None:
    """``request.fetch_row``: the row of ``table`` with primary key ``pk``, or None.

    A request with no session yet reads through the table's coalescing
    loader, with its peers, unless it locks the row (``for_update``): a
    write whose version settles it reads the row outside its transaction,
    which its UPDATE's version check makes safe. Any other reads in its own
    transaction: it sees its own writes, and ``for_update`` locks the row.
    """
    if not in_request_greenlet():
        # Pyramid's tools (pviews, pshell's root["mytable"]["1"]) traverse
        # outside any request: the lookup runs on the background loop.
        lookup = functools.partial(fetch_row, request, table, pk, for_update=for_update)
        return background_loop().run(run_in_greenlet(lookup))
    if not for_update and "dbsession" not in request.__dict__:
        parsed = request.method not in SAFE_METHODS
        return await_(request.registry.api_engines.point_loader(table, parsed).load(pk))
    return await_(load_row(request.dbsession, table, pk, for_update=for_update))


async def ping(reader: Reader, timeout: float) -> None:
    """Round-trip to the database, or raise within ``timeout`` seconds."""

    def select_one(connection: Connection) -> None:
        connection.execute(text("SELECT 1"))

    await asyncio.wait_for(run_in_greenlet(reader.run, select_one), timeout)


MIGRATIONS = pathlib.Path(__file__).parent / "migrations"


@functools.cache
def migrations_head() -> str | None:
    """The revision the shipped migrations end at (``alembic heads``)."""
    head: str | None = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    return head


async def schema_revision(reader: Reader, timeout: float) -> str | None:
    """The revision the database was migrated to; None if it never was."""

    def read(connection: Connection) -> str | None:
        try:
            revision: str | None = connection.execute(
                text("SELECT version_num FROM alembic_version")
            ).scalar()
        except DBAPIError as exc:
            if misconfigured(exc) is None:  # anything but a missing table
                raise
            return None
        return revision

    return await asyncio.wait_for(run_in_greenlet(reader.run, read), timeout)


def _dispose_engines(registry: Registry, loop: Any) -> None:
    await_(registry.api_engines.dispose(loop))


def includeme(config: Configurator) -> None:
    settings = config.registry.settings
    # One transaction manager per request: transaction.manager is thread-local,
    # and every request greenlet of a loop shares one thread.
    settings["tm.manager_hook"] = "pyramid_tm.explicit_manager"
    settings.setdefault("tm.annotate_user", "false")
    settings["tm.activate_hook"] = may_write
    config.include("pyramid_tm")
    config.registry.api_engines = Engines(config.registry.api_settings)
    config.add_request_method(request_dbsession, "dbsession", reify=True)
    config.add_request_method(fetch_row, "fetch_row")
    config.add_loop_stopping_hook(_dispose_engines)
