"""Engines per event loop, and request sessions joined to ``request.tm``.

An AsyncEngine and its pool belong to the loop that created them. Gunicorn
builds the app in its master before it forks, so nothing here connects at
configuration time: each loop gets its engine lazily on first use, and
disposes of it when the loop stops (``api.bridge.add_loop_stopping_hook``).
"""

import asyncio
import os
import weakref

import orjson
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from zope.sqlalchemy.datamanager import join_transaction, mark_changed

from api.bridge import await_, run_in_greenlet
from api.queries import CoalescingLoader, Reader

# Plain driver names that users write, mapped to the async drivers we run on.
_ASYNC_DRIVERS = {
    "mysql": "mysql+asyncmy",
    "mariadb": "mariadb+asyncmy",
    "mysql+pymysql": "mysql+asyncmy",
    "mysql+mysqldb": "mysql+asyncmy",
    "sqlite": "sqlite+aiosqlite",
}


def database_url(settings):
    """``DATABASE_URL`` from the environment wins; else ``sqlalchemy.url`` from the ini."""
    raw = os.environ.get("DATABASE_URL") or settings.get("sqlalchemy.url")
    if not raw:
        raise ValueError("no database URL: set DATABASE_URL or sqlalchemy.url")
    url = make_url(raw)
    return url.set(drivername=_ASYNC_DRIVERS.get(url.drivername, url.drivername))


def _int(settings, key, default):
    return int(settings.get(key, default))


def _json_loads(value):
    # SQLite gives a JSON column numeric affinity: a stored JSON number comes
    # back as a number, not as text to parse.
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def engine_options(settings, url, prefix="db."):
    options = {
        "pool_pre_ping": True,  # a connection lost while the database was away is replaced
        "json_serializer": lambda obj: orjson.dumps(obj).decode(),
        "json_deserializer": _json_loads,
    }
    if url.get_backend_name() == "sqlite":
        return options
    connect_timeout = _int(settings, "db.connect_timeout", 5)
    options.update(
        pool_size=_int(settings, f"{prefix}pool_size", _int(settings, "db.pool_size", 10)),
        max_overflow=_int(
            settings, f"{prefix}max_overflow", _int(settings, "db.max_overflow", 10)
        ),
        pool_timeout=_int(settings, "db.pool_timeout", 10),
        pool_recycle=_int(settings, "db.pool_recycle", 3600),
        connect_args={"connect_timeout": connect_timeout},
    )
    return options


# The reader's connections are in autocommit: nothing to roll back when they
# go back to the pool, and no ping when they come out of it (those were two of
# the three round trips of a read). A connection that died while pooled fails
# its statement instead, and the read is tried once more (queries.Reader).
READER_OPTIONS = {
    "isolation_level": "AUTOCOMMIT",
    "skip_autocommit_rollback": True,
    "pool_pre_ping": False,
}


def create_engine(settings):
    """The engine of request sessions (writes)."""
    url = database_url(settings)
    return _engine(url, engine_options(settings, url))


def create_reader(settings):
    """The engine of plain reads, as a ``queries.Reader``."""
    url = database_url(settings)
    options = {**engine_options(settings, url, prefix="db.read_"), **READER_OPTIONS}
    # SQLAlchemy's own pool defaults (5 + 10) where the settings give none (SQLite)
    connections = options.get("pool_size", 5) + options.get("max_overflow", 10)
    return Reader(_engine(url, options), connections, _int(settings, "db.pool_timeout", 10))


def _engine(url, options):
    engine = create_async_engine(url, **options)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside a writer; a busy timeout queues writers
    # instead of failing them at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Engines:
    """The engines of one application, two per event loop: one for request
    sessions (writes, in transactions), one for reads that need none."""

    def __init__(self, settings):
        self.settings = settings
        self.by_loop = weakref.WeakKeyDictionary()  # loop -> (engine, reader)
        self.loaders = weakref.WeakKeyDictionary()  # loop -> {table: CoalescingLoader}

    def _pair(self):
        loop = asyncio.get_running_loop()
        pair = self.by_loop.get(loop)
        if pair is None:
            settings = self.settings
            pair = self.by_loop[loop] = (create_engine(settings), create_reader(settings))
        return pair

    def current(self):
        """The engine of request sessions on the running loop."""
        return self._pair()[0]

    def reader(self):
        """The ``queries.Reader`` of reads outside any transaction on the running loop."""
        return self._pair()[1]

    def point_loader(self, table):
        """The coalescing point loader of ``table`` on the running loop."""
        loop = asyncio.get_running_loop()
        loaders = self.loaders.get(loop)
        if loaders is None:
            loaders = self.loaders[loop] = {}
        loader = loaders.get(table)
        if loader is None:
            loader = loaders[table] = CoalescingLoader(self.reader(), table)
        return loader

    async def dispose(self, loop):
        self.loaders.pop(loop, None)
        pair = self.by_loop.pop(loop, None)
        if pair is not None:
            engine, reader = pair
            await engine.dispose()
            await reader.engine.dispose()


def _engines(request_or_registry):
    return getattr(request_or_registry, "registry", request_or_registry).api_engines


def get_engine(request_or_registry):
    return _engines(request_or_registry).current()


def get_reader(request_or_registry):
    return _engines(request_or_registry).reader()


class RequestSession(Session):
    """The sync session behind a request's AsyncSession, joined to ``info["tm"]``.

    zope.sqlalchemy's ``register()`` adds event listeners to each session it
    is given, which costs more than the rest of a point read. These listeners
    are registered once, on the class, and find the request's transaction
    manager in ``session.info``.
    """


@event.listens_for(RequestSession, "after_begin")
def _join_request_transaction(session, transaction, connection):
    join_transaction(session, transaction_manager=session.info["tm"])


@event.listens_for(RequestSession, "do_orm_execute")
def _mark_writes(execute_state):
    """Core INSERT/UPDATE/DELETE count as changes too, not only ORM flushes.

    Without this a Core write leaves the session "unchanged" and is rolled
    back at the end of the request. Raw ``text()`` writes are still invisible:
    write through Core statements.
    """
    if execute_state.is_insert or execute_state.is_update or execute_state.is_delete:
        session = execute_state.session
        mark_changed(session, session.info["tm"])


@event.listens_for(RequestSession, "after_flush")
def _mark_flush(session, flush_context):
    mark_changed(session, session.info["tm"])


# Methods that write nothing: pyramid_tm leaves them alone (api.db.includeme).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def may_write(request):
    """pyramid_tm's activate hook: a transaction only for requests that may write.

    Beginning and committing an empty transaction costs ~8% of a point read.
    """
    return request.method not in SAFE_METHODS


def request_dbsession(request):
    """The request's AsyncSession.

    In a request that may write, it joins the request's transaction, which
    pyramid_tm commits or aborts. A safe request has no transaction manager:
    its session reads in a transaction of its own, rolled back and closed when
    the request finishes (a GET writes nothing).
    """
    engine = get_engine(request)
    if request.environ.get("tm.active"):
        return AsyncSession(
            engine,
            sync_session_class=RequestSession,
            expire_on_commit=False,
            info={"tm": request.tm},
        )
    session = AsyncSession(engine, expire_on_commit=False)
    request.add_finished_callback(lambda request: await_(session.close()))
    return session


async def ping(reader, timeout):
    """Round-trip to the database, or raise within ``timeout`` seconds."""

    def select_one(connection):
        connection.execute(text("SELECT 1"))

    await asyncio.wait_for(run_in_greenlet(reader.run, select_one), timeout)


def _dispose_engines(registry, loop):
    await_(registry.api_engines.dispose(loop))


def includeme(config):
    settings = config.registry.settings
    # One transaction manager per request: transaction.manager is thread-local,
    # and every request greenlet of a loop shares one thread.
    settings["tm.manager_hook"] = "pyramid_tm.explicit_manager"
    settings.setdefault("tm.annotate_user", "false")
    settings["tm.activate_hook"] = may_write
    config.include("pyramid_tm")
    database_url(settings)  # fail at start on a missing URL, without connecting
    config.registry.api_engines = Engines(settings)
    config.registry.api_ping_timeout = float(settings.get("db.ping_timeout", 2))
    config.add_request_method(request_dbsession, "dbsession", reify=True)
    config.add_loop_stopping_hook(_dispose_engines)
