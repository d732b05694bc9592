"""Writes of single rows and arrays, and the read of a row by key, in the request's transaction.

Writes by filters, and what a write answers of a ``select``, are
``api.sql.filter_writes``. The writes of single rows and of arrays, and the
read of a row by key, are
statements compiled once per table and shape (``sql.write_statements``) and
run on the session's connection, in its transaction, which they mark changed
for zope.sqlalchemy. The rest are Core statements through the session, which
``api.db`` marks. A conditional UPDATE whose row is known without a read
(``update_for_group``) and a DELETE by key (``delete_for_group``) may be
run by their group instead (``api.db.groups``), on the group's connection,
as one row's INSERT may (``api.sql.grouped``). Rows come back as plain
dicts whose keys are ``str`` (orjson rejects the ``quoted_name`` keys of
SQLAlchemy's rows).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from operator import itemgetter
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Result
from sqlalchemy.ext.asyncio import AsyncSession
from zope.sqlalchemy import mark_changed

from api.bridge import give_way, run_in_greenlet
from api.collections import describe, unique_keys
from api.models import utcnow
from api.sql import write_statements
from api.sql.grouped import CountedWrite, key_after, lock_order_of, new_row_stamps
from api.sql.keys import key_parameters, pair_as_the_database_does, row_statements
from api.sql.locks import lock_row

Row = dict[str, Any]
T = TypeVar("T")


async def _dialect(session: AsyncSession) -> Dialect:
    """The dialect of the session's engine, as its first connection told it
    (whether MariaDB, whether the server has RETURNING)."""
    bind = session.bind
    assert bind is not None  # request sessions are bound to the engine of writes
    if bind.dialect.server_version_info is None:  # no connection yet: connect first
        await session.connection()
    return bind.dialect


async def _on_connection(session: AsyncSession, run: Callable[[Connection], T], writes: bool) -> T:
    """``run(connection)`` on the session's connection, in its transaction;
    ``writes``: counted as a change, which pyramid_tm commits. Called from a
    request greenlet, it runs there, with no greenlet of its own."""

    def on_connection() -> T:
        sync = session.sync_session
        connection = sync.connection()
        if writes and "tm" in sync.info:  # a session joined to a request's transaction
            mark_changed(sync, sync.info["tm"])
        return run(connection)

    return await run_in_greenlet(on_connection)


def dicts(result: Result[Any]) -> list[Row]:
    keys = list(map(str, result.keys()))
    rows = result.all()
    give_way()  # a large result takes as long to copy as it took to read
    # zip(strict=True) would check what the statement guarantees, at a cost per row.
    return [dict(zip(keys, row, strict=False)) for row in rows]


async def load_row(
    session: AsyncSession, table: sa.Table, pk: Any, *, for_update: bool = False
) -> Row | None:
    """The row with primary key ``pk``, or None.

    ``for_update`` locks the row until the transaction ends (MySQL/MariaDB),
    so that a read-modify-write sees the latest committed version.
    """
    parameters = key_parameters(row_statements(table).key, pk)

    def read(connection: Connection) -> list[Row]:
        return write_statements.row_by_key(table, for_update, connection.dialect).dicts(
            connection, parameters
        )

    if for_update and "engine_without_transactions" in table.info:
        await _on_connection(session, functools.partial(_lock_row_by_name, table, read), False)
    rows = await _on_connection(session, read, writes=False)
    return rows[0] if rows else None


def _lock_row_by_name(
    table: sa.Table, read: Callable[[Connection], list[Row]], connection: Connection
) -> None:
    """The lock ``FOR UPDATE`` cannot take on a table whose engine locks no
    rows (MyISAM), taken by name, as the server's GET_LOCK: concurrent JSON
    merges of one row kept 46 keys of 64, and If-Match without a version
    column let two writers through. Named by the key as stored (read first),
    which a case-insensitive collation equates with the key as sent."""
    rows = read(connection)
    if rows:
        lock_row(connection, table, describe(table).key_of(rows[0]))


async def insert_rows(
    session: AsyncSession, table: sa.Table, rows: list[Row], returned: bool = True
) -> list[Row]:
    """Insert ``rows`` (dicts of column values) and return them as stored, in
    order; none when not ``returned`` (an answer that shows no rows).

    Where the database has ``INSERT ... RETURNING`` (MariaDB 10.5+, SQLite
    3.35+), the rows that give the same columns are one multi-row statement
    that answers them as stored. Elsewhere (MySQL), a statement a row and
    one read of them by key; a table without a key answers its rows as sent.
    """
    dialect = await _dialect(session)
    stamps = new_row_stamps(table, dialect)
    if dialect.insert_returning:

        def insert(connection: Connection) -> list[Row]:
            stored: list[Row] = []
            for run in _runs_of_same_columns(rows):
                names = tuple(dict.fromkeys([*run[0], *stamps]))
                statement = write_statements.insert(table, names, returned, connection.dialect)
                stored += statement.run_many(connection, run, stamps)
            return stored

        return await _on_connection(session, insert, writes=True)
    description = describe(table)
    pks = []
    for row in rows:
        result = await session.execute(sa.insert(table).values(**row, **stamps))
        key = result.inserted_primary_key  # type: ignore[attr-defined]  # a CursorResult
        pks.append(key[0] if len(key) == 1 else tuple(key))
    if not returned:
        return []
    if not description.key:
        return rows
    statements = row_statements(table)
    stored = {
        description.key_of(row): row
        for row in dicts(await session.execute(statements.many, {"pks": pks}))
    }
    return [stored[pk] for pk in pks]


def _runs_of_same_columns(rows: list[Row]) -> list[list[Row]]:
    """``rows`` in runs that give the same columns, in their order."""
    runs: list[list[Row]] = []
    for row in rows:
        if runs and runs[-1][0].keys() == row.keys():
            runs[-1].append(row)
        else:
            runs.append([row])
    return runs


async def upsert_rows(
    session: AsyncSession,
    table: sa.Table,
    rows: list[Row],
    target: tuple[sa.Column[Any], ...],
    merge: bool,
    returned: bool = True,
) -> list[Row]:
    """Insert ``rows``, each in place of the row whose ``target`` columns (a
    unique key) hold its values: ``merge`` writes its values there (the
    version column counts it), else it is left as it is. One statement per
    set of columns the rows give: a column a row leaves out keeps its value,
    or takes its default (PostgREST's ``missing=default``). The rows as
    stored, found again by ``target``: with ``merge``, every row; else, as
    PostgREST's ON CONFLICT DO NOTHING RETURNING answers, only those it
    inserted. None when not ``returned``. A row without a value for
    ``target`` (an auto-increment key left out) is inserted. The answer
    follows the order of ``rows``, as PostgREST's RETURNING does.

    MySQL/MariaDB's ON DUPLICATE KEY UPDATE acts on a clash on any unique key
    of the table, not only ``target``'s (SQLite's ON CONFLICT on ``target``'s):
    such a clash is a 409 (``_refuse_a_clash_on_another_key``).
    """
    keyless_at = [
        at for at, row in enumerate(rows) if any(v is None for v in _values_of(target, row))
    ]
    if keyless_at:  # no key to clash on: each is an INSERT, as ON CONFLICT (key) makes it
        keyless, skipped = [rows[at] for at in keyless_at], set(keyless_at)
        keyed = [row for at, row in enumerate(rows) if at not in skipped]
        upserted = (
            await upsert_rows(session, table, keyed, target, merge, returned) if keyed else []
        )
        inserted = await insert_rows(session, table, keyless, returned)
        if not returned:
            return []
        places = _first_rows_of(target, rows, upserted) + keyless_at
        answers = zip(places, upserted + inserted, strict=True)
        return [row for _, row in sorted(answers, key=itemgetter(0))]
    if returned and not merge:
        # The keys there before, read first. On InnoDB that read also takes
        # the snapshot the last one reads: a row another transaction inserts
        # meanwhile, which this upsert leaves alone, is not answered as its own.
        left = await _rows_by(session, table, target, rows, shown=target)
        await upsert_rows(session, table, rows, target, merge=False, returned=False)
        return _without(target, await _rows_by(session, table, target, rows), left)
    dialect = await _dialect(session)
    stamps = new_row_stamps(table, dialect)
    groups: dict[tuple[str, ...], list[Row]] = {}
    for row in sorted(rows, key=_lock_order(target)):
        groups.setdefault(tuple(row), []).append(row)
    give_way()  # sorting a long array takes about as long as checking it
    stored: list[Row] = []
    read_back: list[Row] | None = None  # the rows as stored, found again by ``target``
    if not dialect.insert_returning:  # MySQL: one statement, read back
        for given, group in groups.items():
            stamped = [{**row, **stamps} for row in group]
            statement = write_statements.upsert_statement(
                dialect, table, given, target, merge, stamped
            )
            await session.execute(statement)
        if returned:
            read_back = await _rows_by(session, table, target, rows)
    else:
        # The rows a merge leaves are RETURNed; those an ignore leaves as they
        # were are not (SQLite), and are read again. So are a merge's where a
        # column takes the time of each change: MariaDB RETURNs that time for
        # a row the merge left as it was, and stores none.
        returning = returned and merge and not write_statements.stamped_on_update(table)

        def upsert(connection: Connection) -> list[Row]:
            stored: list[Row] = []
            for given, group in groups.items():
                statement = write_statements.upsert(
                    table, given, target, merge, returning, connection.dialect
                )
                stored += statement.run_many(connection, group, stamps)
            return stored

        stored = await _on_connection(session, upsert, writes=True)
        if returned and not returning:
            read_back = await _rows_by(session, table, target, rows)
    if dialect.name == "mysql":
        await _refuse_a_clash_on_another_key(session, table, target, rows, read_back)
    if not returned:
        return []
    return read_back if read_back is not None else _in_order_of(target, rows, stored)


async def _refuse_a_clash_on_another_key(
    session: AsyncSession,
    table: sa.Table,
    target: tuple[sa.Column[Any], ...],
    rows: list[Row],
    read_back: list[Row] | None,
) -> None:
    """409 where a row of an upsert clashed on a unique key other than
    ``target``'s. MySQL's ON DUPLICATE KEY UPDATE acts on a clash on any of
    them: a merge updated the other row (one that gave a new email and a
    taken username rewrote that user's row), an ignore dropped the row, and
    either answered 2xx. So after it, each row's ``target`` values must name
    a row, as the database compares them; PostgREST's ON CONFLICT (target)
    raises the other key's violation. The request's transaction then rolls
    the upsert back. ``read_back``: the rows found by ``target`` already,
    if the answer read them (never those RETURNed: they hold the other row)."""
    if len(unique_keys(table)) < 2:
        return
    key = functools.partial(_values_of, target)
    if read_back is None:
        read_back = await _rows_by(session, table, target, rows, shown=target)
    found = {key(row): row for row in read_back}
    for left in pair_as_the_database_does(found, map(key, rows)):
        alone = {str(column.name): value for column, value in zip(target, left, strict=True)}
        if not await _rows_by(session, table, target, [alone], shown=target):
            names = tuple(str(column.name) for column in target)
            raise ClashOnAnotherKey(names, describe(table).engine_without_transactions)


class ClashOnAnotherKey(Exception):
    """A row of an upsert clashed on a unique key other than the one it
    names (``target``, its columns' names): a 409. ``engine``: the table's,
    where it cannot undo what the upsert did to the row it clashed with."""

    def __init__(self, target: tuple[str, ...], engine: str | None) -> None:
        super().__init__(target)
        self.target = target
        self.engine = engine


def _lock_order(target: tuple[sa.Column[Any], ...]) -> Callable[[Row], tuple[Any, ...]]:
    """The order an upsert writes its rows in: by their ``target`` values,
    the same order for every request. Each row's statement locks its row in
    turn, and two upserts that took the same rows in different orders each
    waited for the other until MariaDB failed one (a deadlock). A stable
    sort: of two rows with one key, the later one is still written last."""
    names = [str(column.name) for column in target]
    return lambda row: tuple(lock_order_of(row.get(name)) for name in names)


def _in_order_of(
    columns: tuple[sa.Column[Any], ...], rows: list[Row], returned: list[Row]
) -> list[Row]:
    """The ``returned`` rows in the order of the ``rows`` sent, matched by
    ``columns``; each once."""
    key = functools.partial(_values_of, columns)
    found = {key(row): row for row in returned}
    asked = list(dict.fromkeys(map(key, rows)))
    pair_as_the_database_does(found, asked)  # "nld" sent, "NLD" stored
    return [found[k] for k in asked if k in found]


def _values_of(columns: tuple[sa.Column[Any], ...], row: Row) -> tuple[Any, ...]:
    """What ``row`` holds in ``columns`` (None where it leaves one out)."""
    return tuple(row.get(column.name) for column in columns)


def _first_rows_of(
    columns: tuple[sa.Column[Any], ...], rows: list[Row], answers: list[Row]
) -> list[int]:
    """For each of ``answers``, the place in ``rows`` of the first row whose
    ``columns`` hold its values, as the database pairs them."""
    key = functools.partial(_values_of, columns)
    first: dict[tuple[Any, ...], int] = {}
    for at, row in enumerate(rows):
        first.setdefault(key(row), at)
    found = {key(answer): at for at, answer in enumerate(answers)}
    pair_as_the_database_does(found, first)  # "nld" sent, "NLD" stored
    places = [len(rows)] * len(answers)
    for asked, at in first.items():
        if asked in found:
            places[found[asked]] = min(places[found[asked]], at)
    return places


def _without(columns: tuple[sa.Column[Any], ...], rows: list[Row], left: list[Row]) -> list[Row]:
    """``rows`` but those whose ``columns`` hold the values of one of ``left``
    (both as stored: spelled alike)."""
    key = functools.partial(_values_of, columns)
    were_there = set(map(key, left))
    return [row for row in rows if key(row) not in were_there]


async def _rows_by(
    session: AsyncSession,
    table: sa.Table,
    columns: tuple[sa.Column[Any], ...],
    rows: list[Row],
    shown: tuple[sa.Column[Any], ...] | None = None,
) -> list[Row]:
    """The stored rows whose ``columns`` hold the values of ``rows``, in
    their order; only the ``shown`` columns, else all."""
    wanted = [tuple(row[column.name] for column in columns) for row in rows]
    keys: sa.BindParameter[Any] = sa.bindparam("keys", expanding=True)
    selected = sa.select(*(shown or table.columns))
    if len(columns) == 1:
        statement = selected.where(columns[0].in_(keys))
        bound: list[Any] = [k[0] for k in wanted]
    else:
        statement = selected.where(sa.tuple_(*columns).in_(keys))
        bound = wanted
    found = dicts(await session.execute(statement, {"keys": bound}))
    return _in_order_of(columns, rows, found)


async def update_row(
    session: AsyncSession,
    table: sa.Table,
    pk: Any,
    values: Row,
    expected_version: Any,
    current: Row | None = None,
) -> Row | None:
    """Write ``values`` to row ``pk`` only if it still has ``expected_version``.

    The check and the write are one statement, so two writers racing on one
    version cannot both succeed. A table without a version column is written
    as it is: its caller read the row under its lock. Returns the row as
    stored, or None when the version did not match (or the row is gone).
    """
    if sets_nothing(table, values):  # PostgREST's empty PATCH: the row as it is
        return current if current is not None else await load_row(session, table, pk)
    update, now = _update(table, pk, values, expected_version)
    if await _on_connection(session, update, writes=True) != 1:
        return None
    if current is not None and known_when_written(table):
        return _as_written(table, current, values, expected_version, now)
    return await load_row(session, table, key_after(table, pk, values))


def sets_nothing(table: sa.Table, values: Row) -> bool:
    """Whether an UPDATE of ``values`` would set no column, which SQL cannot
    say: an empty patch of a table that counts no version and stamps no
    ``updated_at``."""
    return not values and describe(table).version is None and "updated_at" not in table.columns


def known_when_written(table: sa.Table) -> bool:
    """Whether an UPDATE whose version matched leaves a row the API can
    tell without reading it back: the row as read, the values written, the
    version counted up and ``updated_at`` stamped."""
    description = describe(table)
    return description.version is not None and description.writes_known


def update_for_group(
    table: sa.Table, pk: Any, values: Row, expected_version: Any, current: Row
) -> tuple[Row, CountedWrite]:
    """A conditional UPDATE for a group to commit (``api.db.groups``): the
    row as it will leave ``current`` (``known_when_written``), and the
    write, which answers the rows it matched."""
    update, now = _update(table, pk, values, expected_version)
    return _as_written(table, current, values, expected_version, now), update


def _update(
    table: sa.Table, pk: Any, values: Row, expected_version: Any
) -> tuple[CountedWrite, datetime]:
    """The UPDATE of ``values`` to row ``pk`` at ``expected_version`` (the
    rows it matched), and the time it stamps."""
    now = utcnow()
    parameters = {
        **{f"set_{name}": value for name, value in values.items()},
        **key_parameters(describe(table).key, pk),
        "expected": expected_version,
        "now": now,
    }
    statement = functools.partial(write_statements.update_by_key, table, tuple(values))
    return CountedWrite(statement, parameters, table, pk), now


def _as_written(
    table: sa.Table, current: Row, values: Row, expected_version: Any, now: datetime
) -> Row:
    """The row as the UPDATE left it, known without reading it again: the
    version matched, so nothing else wrote it since it was read."""
    version = describe(table).version
    assert version is not None  # known_when_written
    written = {**current, **values, str(version.name): expected_version + 1}
    return {**written, "updated_at": now} if "updated_at" in table.columns else written


async def delete_row(
    session: AsyncSession, table: sa.Table, pk: Any, expected_version: Any
) -> bool:
    """Delete row ``pk`` if it still has ``expected_version``; True when it did."""
    delete = delete_for_group(table, pk, expected_version)
    return await _on_connection(session, delete, writes=True) == 1


def delete_for_group(
    table: sa.Table, pk: Any, expected_version: Any, checked: bool = True
) -> CountedWrite:
    """The DELETE of row ``pk`` while it has ``expected_version`` (any
    version, unless ``checked``): the rows it matched. Run by the request's
    session, or by its group (``api.db.groups``)."""
    parameters = {**key_parameters(describe(table).key, pk), "expected": expected_version}
    statement = functools.partial(write_statements.delete_by_key, table, checked=checked)
    return CountedWrite(statement, parameters, table, pk)
