"""Every query the API runs, in one place: async loaders and writers over registered tables.

Statements are built once per table, or per query shape, and reused; rows come
back as plain dicts whose keys are ``str`` (``quoted_name`` keys upset orjson).
Writes are Core statements, so that zope.sqlalchemy sees them (api.db).
"""

import asyncio
import collections
import dataclasses
from functools import cache, lru_cache

import orjson
import sqlalchemy as sa

from api.bridge import await_, run_in_greenlet
from api.models import utcnow


class Gate:
    """A first-come-first-served semaphore whose waiters give up after ``timeout`` seconds.

    asyncio's Semaphore inside ``asyncio.timeout()`` does the same with a
    timer per waiter (7% of a page's CPU when reads queue). As every waiter
    waits the same time, their deadlines come in queue order: one timer, set
    for the head of the queue, serves them all.
    """

    def __init__(self, width, timeout):
        self.free = width
        self.timeout = timeout
        self.waiters = collections.deque()  # (deadline, future), oldest first
        self.timer = None

    async def acquire(self):
        """A slot, or TimeoutError after ``timeout`` seconds in the queue."""
        if self.free and not self.waiters:
            self.free -= 1
            return
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiters.append((loop.time() + self.timeout, future))
        if self.timer is None:
            self.timer = loop.call_at(self.waiters[0][0], self._expire)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release()  # handed a slot just as the caller was cancelled: pass it on
            raise

    def release(self):
        while self.waiters:
            _, future = self.waiters.popleft()
            if not future.done():  # else it timed out or was cancelled
                future.set_result(None)  # the slot goes straight to the oldest waiter
                return
        self.free += 1

    def _expire(self):
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self.waiters and self.waiters[0][0] <= now:
            _, future = self.waiters.popleft()
            if not future.done():
                future.set_exception(TimeoutError("no connection came free in time"))
        # The head may have been served long before its deadline; then this ran early.
        self.timer = loop.call_at(self.waiters[0][0], self._expire) if self.waiters else None


class Reader:
    """The engine of plain reads, behind a first-come-first-served gate as wide as its pool.

    A read runs in one greenlet on the engine's synchronous facade, whose
    driver calls ``await_()``: the async loaders hand it over with
    ``run_in_greenlet``. Each call of the async facade would start a greenlet
    of its own (a quarter of a page's CPU went to that).

    SQLAlchemy's pool hands a connection that comes back to whoever asks
    next, not to whoever has waited longest: with more concurrent reads than
    connections, some waited for seconds (p99 of pages at 256 connections,
    one worker: 4.2 s). The gate serves its waiters in order.
    """

    def __init__(self, engine, connections, timeout):
        self.engine = engine
        # seconds to wait for a connection; then TimeoutError (503)
        self.gate = Gate(connections, timeout)

    def run(self, work):
        """``work(connection)``; once more on a fresh connection if it was dead.

        Call it in a greenlet (``run_in_greenlet``). Connections are not
        pinged as they leave the pool. One that died while pooled (the
        database restarted) fails its first statement, and SQLAlchemy marks
        every connection pooled before it as stale: the second try connects
        afresh, and fails for real only if the database is away.
        """
        await_(self.gate.acquire())
        try:
            try:
                with self.engine.sync_engine.connect() as connection:
                    return work(connection)
            except sa.exc.DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
            with self.engine.sync_engine.connect() as connection:
                return work(connection)
        finally:
            self.gate.release()


def _passed_through(column):
    """How a plain read selects ``column``: JSON as its stored text, which
    ``PlainRead`` hands to orjson as is, instead of parsing it only to write
    it again (a tenth of a page). The text is valid JSON: MariaDB checks it
    (JSON is LONGTEXT with a json_valid CHECK), and on SQLite the column is
    written through this API, which writes it with orjson."""
    if isinstance(column.type, sa.JSON):
        return sa.type_coerce(column, sa.Text).label(column.name)
    return column


def _json_keys(columns):
    return frozenset(str(column.name) for column in columns if isinstance(column.type, sa.JSON))


def _dicts(result):
    keys = list(map(str, result.keys()))
    # zip(strict=True) would check what the statement guarantees, at a third of the cost.
    return [dict(zip(keys, row, strict=False)) for row in result.all()]


@cache
def _statements(table):
    (pk,) = table.primary_key.columns
    one = sa.select(table).where(pk == sa.bindparam("pk"))
    pks = pk.in_(sa.bindparam("pks", expanding=True))
    return {
        "pk": pk,
        "one": one,
        "one_for_update": one.with_for_update(),
        "many": sa.select(table).where(pks),
    }


def primary_key(table):
    return _statements(table)["pk"]


async def load_row(session, table, pk, *, for_update=False):
    """The row with primary key ``pk`` as a dict, or None.

    ``for_update`` locks the row until the transaction ends (MySQL/MariaDB),
    so that a read-modify-write sees the latest committed version.
    """
    statements = _statements(table)
    statement = statements["one_for_update" if for_update else "one"]
    rows = _dicts(await session.execute(statement, {"pk": pk}))
    return rows[0] if rows else None


class CoalescingLoader:
    """Point reads of one table, coalesced: one ``SELECT ... WHERE pk IN (...)`` a batch.

    Reads that arrive while a batch is forming, or while the previous batch is
    in flight, wait for the next batch; each caller gets its own row. Batches
    hold at most ``max_batch`` keys and run one at a time, on a connection of
    their own: they see committed rows only, so a request that has written
    must read through its own session instead (``Collection.__getitem__``).
    One loader per table and event loop (``api.db.Engines``).
    """

    def __init__(self, reader, table, max_batch=200):
        self.reader = reader
        self.table = table
        self.max_batch = max_batch
        self.waiting = {}  # pk -> futures of the callers that asked for it
        self.running = False
        self.in_flight = None  # the task of the batch in flight

    async def load(self, pk):
        future = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(pk, []).append(future)
        if not self.running:
            self.running = True
            asyncio.get_running_loop().call_soon(self._next_batch)
        return await future

    def _next_batch(self):
        if not self.waiting:
            self.running = False
            return
        keys = list(self.waiting)[: self.max_batch]
        batch = {key: self.waiting.pop(key) for key in keys}
        # Held here: the loop keeps only a weak reference to a task.
        self.in_flight = asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch):
        pk_name = primary_key(self.table).name

        def select_batch(connection):
            read, values = _batch_read(self.table, list(batch), connection.dialect)
            rows = read.dicts(connection, values)
            return {row[pk_name]: row for row in rows}

        try:
            rows = await run_in_greenlet(self.reader.run, select_batch)
        except Exception as exc:
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
        else:
            for key, futures in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(rows.get(key))
        finally:
            self._next_batch()  # what arrived meanwhile goes next


# --- lists: filters, order, keyset pages, counts, exports ----------------------------
#
# List statements are cached by the shape of their query: the columns, the
# filters without their values, the order, and which cursor values are NULL.
# Every value is a bound parameter. Building a statement and its cache key
# anew cost a fifth of a page. The caches are bounded: clients pick the shapes.
STATEMENT_CACHE_SIZE = 256


def _shape(query):
    """(filters, after) of ``query`` without values; with its columns and order, a cache key."""
    filters = tuple((f.column, f.operator, f.negated, _shaped_value(f)) for f in query.filters)
    after = None if query.after is None else tuple(value is None for value in query.after)
    return filters, after


def _shaped_value(query_filter):
    """What of a filter's value its statement is built with: is.VALUE, and how many IN values."""
    if query_filter.operator == "is":
        return query_filter.value
    if query_filter.operator == "in":
        return len(query_filter.value)
    return None


def _parameters(query):
    """The values the statement of ``query``'s shape binds."""
    values = {}
    for i, f in enumerate(query.filters):
        if f.operator == "in":
            values.update((f"f{i}_{j}", value) for j, value in enumerate(f.value))
        elif f.operator != "is":
            values[f"f{i}"] = f.value
    for i, value in enumerate(query.after or ()):
        if value is not None:
            values[f"a{i}"] = value
    return values


def _filter_clause(index, shape):
    column, operator, negated, shaped_value = shape
    value = sa.bindparam(f"f{index}")
    match operator:
        case "is":
            clause = column.is_(None) if shaped_value is None else column == shaped_value
        case "in":
            # A parameter per value rather than an expanding one: the SQL is
            # then final when compiled, as PlainRead needs.
            clause = column.in_([sa.bindparam(f"f{index}_{j}") for j in range(shaped_value)])
        case "like":
            clause = column.like(value, escape="\\")
        case "ilike":
            clause = column.ilike(value, escape="\\")
        case "eq":
            clause = column == value
        case "neq":
            clause = column != value
        case "gt":
            clause = column > value
        case "gte":
            clause = column >= value
        case "lt":
            clause = column < value
        case "lte":
            clause = column <= value
    return sa.not_(clause) if negated else clause


def _where(filters):
    return [_filter_clause(index, shape) for index, shape in enumerate(filters)]


def _order_by(order):
    """ORDER BY with NULL placement spelled out, so every database sorts alike."""
    clauses = []
    for item in order:
        column = item.column
        if column.nullable:
            is_null = column.is_(None)
            clauses.append(is_null.desc() if item.nulls_first else is_null.asc())
        clauses.append(column.desc() if item.descending else column.asc())
    return clauses


def _after(order, nulls):
    """Rows strictly after the cursor's values in ``order``: the keyset predicate.

    (k1 after v1) OR (k1 = v1 AND k2 after v2) OR ...; the primary key, last in
    every order, makes it total. ``nulls`` says which values are NULL (only a
    nullable column holds one); the others are the parameters a0, a1, ...
    """
    alternatives, equal_so_far = [], []
    for index, (item, is_null) in enumerate(zip(order, nulls, strict=True)):
        column = item.column
        if is_null:
            after = column.is_not(None) if item.nulls_first else sa.false()
            equal = column.is_(None)
        else:
            bound = sa.bindparam(f"a{index}", type_=column.type)
            beyond = column < bound if item.descending else column > bound
            if column.nullable and not item.nulls_first:
                beyond = sa.or_(beyond, column.is_(None))
            after, equal = beyond, column == bound
        alternatives.append(sa.and_(*equal_so_far, after))
        equal_so_far.append(equal)
    return sa.or_(*alternatives)


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def _page_statement(columns, order, filters, after):
    """A page (of ``page_limit`` rows) of a query's shape, with its order columns."""
    needed = dict.fromkeys((*columns, *(item.column for item in order)))
    statement = sa.select(*map(_passed_through, needed)).where(*_where(filters))
    if after is not None:
        statement = statement.where(_after(order, after))
    statement = statement.order_by(*_order_by(order))
    return statement.limit(sa.bindparam("page_limit", type_=sa.Integer))


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def _count_statement(table, filters):
    return sa.select(sa.func.count()).select_from(table).where(*_where(filters))


async def read_page(reader, table, query, count=None):
    """(rows, whether more follow, (count, how) or None) of a page of ``query``.

    ``count`` is None, "exact" or "estimated" (``count_rows``). Read on a
    connection of its own: a page is never part of a request's transaction.
    """

    def page(connection):
        counted = None
        if count is not None:
            counted = count_rows(connection, table, query, estimated=count == "estimated")
        return (*load_list_page(connection, query), counted)

    return await run_in_greenlet(reader.run, page)


class PlainRead:
    """A SELECT compiled once for one dialect, run straight on the driver's cursor.

    SQLAlchemy's execution of even a cached statement (its cache key, an
    execution context, a result and Row objects) cost a third of a page's CPU.
    Here the statement is compiled once; a read binds its values in order,
    runs the SQL on the DBAPI cursor, and applies each column type's result
    processor, as SQLAlchemy would. A driver error goes through SQLAlchemy's
    own handling: the same wrapped exceptions, and a dead connection
    invalidated with the pool behind it (``Reader.run`` retries on that).
    The engine's cursor events fire, but cannot rewrite the statement.
    Only for statements without expanding parameters.

    On asyncmy, the production driver, the statement goes to the driver's own
    cursor in one ``await_()``: SQLAlchemy's adapted cursor takes three
    (enter, execute, close), a tenth of a page's CPU.
    """

    def __init__(self, statement, dialect, json_keys=frozenset()):
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        # The bind names in the order the (positional) paramstyle takes them.
        self.names = compiled.positiontup
        binds = compiled.binds
        self.bind_processors = [
            binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.names
        ]
        # Values the statement holds itself (SQLite's "OFFSET ?" after a LIMIT)
        self.fixed = {name: b.effective_value for name, b in binds.items() if not b.required}
        columns = statement.selected_columns
        self.keys = [str(column.name) for column in columns]
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]
        self.to_dicts = _row_converter(self.keys, processors, json_keys)
        self.on_driver_cursor = dialect.driver == "asyncmy"

    def dicts(self, connection, values):
        """The rows for the bound ``values`` (by name), as dicts keyed by column,
        ready for a JSON response (the text of ``json_keys`` columns passed
        through), not for writing back."""
        parameters = [
            value if process is None or value is None else process(value)
            for value, process in zip(
                map({**self.fixed, **values}.__getitem__, self.names),
                self.bind_processors,
                strict=True,
            )
        ]
        return self.to_dicts(self._fetch(connection, parameters))

    def _fetch(self, connection, parameters):
        """The rows as the driver gives them."""
        pooled = connection.connection
        cursor = pooled.driver_connection.cursor() if self.on_driver_cursor else pooled.cursor()
        events = connection.dispatch  # listeners (tracing, statement counts) see these reads too
        try:
            if events.before_cursor_execute:
                events.before_cursor_execute(connection, cursor, self.sql, parameters, None, False)
            if self.on_driver_cursor:
                fetched = _fetch_all(pooled.dbapi_connection, cursor, self.sql, parameters)
                rows = await_(fetched)
            else:
                cursor.execute(self.sql, parameters)
                rows = cursor.fetchall()
                cursor.close()
            if events.after_cursor_execute:
                events.after_cursor_execute(connection, cursor, self.sql, parameters, None, False)
            return rows
        except Exception as error:
            # SQLAlchemy's handling of a driver error, as in Connection.execute.
            # It closes SQLAlchemy's cursor; the driver's has nothing to close.
            sa_cursor = None if self.on_driver_cursor else cursor
            connection._handle_dbapi_exception(error, self.sql, parameters, sa_cursor, None)
            raise


def _row_converter(keys, processors, json_keys):
    """A function from a statement's rows (tuples) to dicts, made for that statement.

    Its source is a list comprehension with one dict display, the keys as
    constants (``repr``), each value through its column type's result
    processor: a third of the time of ``dict(zip(keys, row))`` and a pass
    over the dicts for the JSON columns (in-process, 51 rows: 63 -> 26 µs).
    """
    names = [f"c{i}" for i in range(len(keys))]
    namespace = {"as_json": _as_json}
    entries = []
    for name, key, process in zip(names, keys, processors, strict=True):
        value = name
        if process is not None:
            namespace[f"process_{name}"] = process
            value = f"process_{name}({value})"
        if key in json_keys:
            value = f"as_json({value})"
        entries.append(f"{key!r}: {value}")
    source = f"lambda rows: [{{{', '.join(entries)}}} for ({', '.join(names)},) in rows]"
    return eval(source, namespace)  # our own source: the keys are repr()'d constants


def _as_json(value):
    """Stored JSON text, written out as it is. SQLite hands back a JSON number
    as a number (and NULL as None), which are JSON already."""
    return orjson.Fragment(value) if isinstance(value, str) else value


async def _fetch_all(adapted, cursor, sql, parameters):
    """Every row of ``sql`` on the driver's own ``cursor``; errors raised as
    SQLAlchemy's cursor over ``adapted`` (its adapter of the connection) would."""
    try:
        await cursor.execute(sql, parameters)
        rows = await cursor.fetchall()
        await cursor.close()
        return rows
    except Exception as error:
        adapted._handle_exception(error)


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def _page_read(columns, order, filters, after, dialect):
    statement = _page_statement(columns, order, filters, after)
    return PlainRead(statement, dialect, _json_keys(columns))  # JSON is never an order key


def _batch_read(table, keys, dialect):
    """(PlainRead, values) of the rows of ``table`` whose primary keys are ``keys``.

    The IN list is padded to a power of two with the last key again, so that
    batches of any size share eight statements (up to 256 keys).
    """
    size = 1 << (len(keys) - 1).bit_length()
    padded = keys + keys[-1:] * (size - len(keys))
    return _batch_statement(table, size, dialect), {f"k{i}": key for i, key in enumerate(padded)}


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def _batch_statement(table, size, dialect):
    pk = primary_key(table)
    keys = [sa.bindparam(f"k{i}", type_=pk.type) for i in range(size)]
    statement = sa.select(*map(_passed_through, table.columns)).where(pk.in_(keys))
    return PlainRead(statement, dialect, _json_keys(table.columns))


def load_list_page(connection, query):
    """A page of ``query``: (rows with every needed column, whether more follow)."""
    read = _page_read(query.columns, query.order, *_shape(query), connection.dialect)
    rows = read.dicts(connection, {**_parameters(query), "page_limit": query.limit + 1})
    return rows[: query.limit], len(rows) > query.limit


def count_rows(connection, table, query, estimated=False):
    """(count, how): an exact COUNT, or MySQL/MariaDB's table statistics when
    ``estimated`` and nothing filters the rows (else the exact count)."""
    dialect = connection.dialect.name
    if estimated and not query.filters and dialect in ("mysql", "mariadb"):
        estimate = connection.scalar(
            sa.text(
                "SELECT TABLE_ROWS FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :name"
            ),
            {"name": table.name},
        )
        return int(estimate or 0), "estimated"
    filters, _ = _shape(query)
    return connection.scalar(_count_statement(table, filters), _parameters(query)), "exact"


def stream_list(engine, table, query, batch=5000):
    """Every row of ``query`` (no page), as tuples of its columns, read in
    keyset batches of ``batch`` rows: the page statement, each batch after
    the last row of the one before.

    Not a server-side cursor: asyncmy reads a result as fast as the server
    sends it, with no pause, so a client slower than the database made the
    worker hold the rest of the export in memory (a million rows: 500 MiB).
    A batch is read whole, and the next asked for when the client has taken
    it. The batches share one connection and transaction: on InnoDB
    (REPEATABLE READ) they read one snapshot.

    A generator for the request greenlet: it runs the async engine's sync
    facade, whose driver calls ``await_()``. Its connection is its own, as the
    request's transaction has ended by the time the body is sent.
    """
    width = len(query.columns)
    with engine.sync_engine.connect() as connection:
        while True:
            statement, keys_at = _export_statement(query.columns, query.order, *_shape(query))
            parameters = {**_parameters(query), "page_limit": batch}
            rows = connection.execute(statement, parameters).all()
            for row in rows:
                yield row[:width]
            if len(rows) < batch:
                return
            query = dataclasses.replace(query, after=tuple(rows[-1][i] for i in keys_at))


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def _export_statement(columns, order, filters, after):
    """(statement, where its order keys are) of an export batch: a page, with
    every column as its type reads it (JSON parsed, for CSV) and the order
    columns after the requested ones."""
    selected = tuple(dict.fromkeys((*columns, *(item.column for item in order))))
    statement = _page_statement(columns, order, filters, after).with_only_columns(*selected)
    return statement, tuple(selected.index(item.column) for item in order)


def _has_version(table):
    return "version" in table.columns


async def insert_rows(session, table, rows):
    """Insert ``rows`` (dicts of column values) and return them as stored, in order."""
    now = utcnow()
    stamps = {name: now for name in ("created_at", "updated_at") if name in table.columns}
    pks = []
    for values in rows:
        result = await session.execute(sa.insert(table).values(**values, **stamps))
        pks.append(result.inserted_primary_key[0])
    statement = _statements(table)["many"]
    stored = {
        row[primary_key(table).name]: row
        for row in _dicts(await session.execute(statement, {"pks": pks}))
    }
    return [stored[pk] for pk in pks]


async def update_row(session, table, pk, values, expected_version):
    """Write ``values`` to row ``pk`` only if it still has ``expected_version``.

    The check and the write are one statement, so two writers racing on one
    version cannot both succeed. Returns the row as stored, or None when the
    version did not match (or the row is gone).
    """
    key = primary_key(table)
    statement = sa.update(table).where(key == pk).values(**values)
    if _has_version(table):
        statement = statement.where(table.c.version == expected_version).values(
            version=table.c.version + 1
        )
    if "updated_at" in table.columns:
        statement = statement.values(updated_at=utcnow())
    result = await session.execute(statement)
    if result.rowcount != 1:
        return None
    return await load_row(session, table, pk)


async def delete_row(session, table, pk, expected_version):
    """Delete row ``pk`` if it still has ``expected_version``; True when it did."""
    statement = sa.delete(table).where(primary_key(table) == pk)
    if _has_version(table):
        statement = statement.where(table.c.version == expected_version)
    result = await session.execute(statement)
    return result.rowcount == 1
