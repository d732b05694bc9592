"""Reads and writes in the request's transaction: the locked read before a write, and the writes.

Writes are Core statements, so that zope.sqlalchemy sees them (``api.db``);
rows come back as plain dicts whose keys are ``str`` (orjson rejects the
``quoted_name`` keys of SQLAlchemy's rows).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Result
from sqlalchemy.ext.asyncio import AsyncSession

from api.collections import describe
from api.errors import BadRequest
from api.models import utcnow
from api.querystring import shown_names
from api.reads.embeds import embed_rows
from api.sql.statements import (
    filter_shapes,
    key_clause,
    key_parameters,
    keys_in,
    locked_rows,
    row_statements,
)

Row = dict[str, Any]


def _dicts(result: Result[Any]) -> list[Row]:
    keys = list(map(str, result.keys()))
    # zip(strict=True) would check what the statement guarantees, at a cost per row.
    return [dict(zip(keys, row, strict=False)) for row in result.all()]


async def load_row(
    session: AsyncSession, table: sa.Table, pk: Any, *, for_update: bool = False
) -> Row | None:
    """The row with primary key ``pk``, or None.

    ``for_update`` locks the row until the transaction ends (MySQL/MariaDB),
    so that a read-modify-write sees the latest committed version.
    """
    statements = row_statements(table)
    statement = statements.one_for_update if for_update else statements.one
    rows = _dicts(await session.execute(statement, key_parameters(statements.key, pk)))
    return rows[0] if rows else None


async def insert_rows(session: AsyncSession, table: sa.Table, rows: list[Row]) -> list[Row]:
    """Insert ``rows`` (dicts of column values) and return them as stored, in
    order.

    Where the database has ``INSERT ... RETURNING`` (MariaDB 10.5+, SQLite
    3.35+), the rows that give the same columns are one multi-row statement
    that answers them as stored. Elsewhere (MySQL), a statement a row and
    one read of them by key; a table without a key answers its rows as sent.
    """
    now = utcnow()
    stamps = {name: now for name in ("created_at", "updated_at") if name in table.columns}
    connection = await session.connection()
    if connection.dialect.insert_executemany_returning_sort_by_parameter_order:
        returned: list[Row] = []
        for run in _runs_of_same_columns([{**row, **stamps} for row in rows]):
            statement = sa.insert(table).returning(*table.columns, sort_by_parameter_order=True)
            returned += _dicts(await session.execute(statement, run))
        return returned
    description = describe(table)
    pks = []
    for row in rows:
        result = await session.execute(sa.insert(table).values(**row, **stamps))
        key = result.inserted_primary_key  # type: ignore[attr-defined]  # a CursorResult
        pks.append(key[0] if len(key) == 1 else tuple(key))
    if not description.key:
        return rows
    statements = row_statements(table)
    stored = {
        description.key_of(row): row
        for row in _dicts(await session.execute(statements.many, {"pks": pks}))
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
) -> list[Row]:
    """Insert ``rows``, each in place of the row whose ``target`` columns (a
    unique key) hold its values: ``merge`` writes its values there (the
    version column counts it), else it is left as it is. One statement per
    set of columns the rows give: a column a row leaves out keeps its value,
    or takes its default (PostgREST's ``missing=default``). The rows as
    stored, found again by ``target``.

    MySQL/MariaDB's ON DUPLICATE KEY UPDATE acts on a clash on any unique key
    of the table, not only ``target``'s; SQLite's ON CONFLICT on ``target``'s.
    """
    groups: dict[tuple[str, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    for given, group in groups.items():
        await session.execute(_upsert_statement(session, table, group, given, target, merge))
    return await _rows_by(session, table, target, rows)


def _upsert_statement(
    session: AsyncSession,
    table: sa.Table,
    rows: list[Row],
    given: tuple[str, ...],
    target: tuple[sa.Column[Any], ...],
    merge: bool,
) -> Any:
    """The upsert of ``rows``, which all give the columns ``given``."""
    now = utcnow()
    stamps = {name: now for name in ("created_at", "updated_at") if name in table.columns}
    values = [{**row, **stamps} for row in rows]
    keep = [name for name in given if name not in {c.name for c in target}] or list(given[:1])
    version = describe(table).version
    if session.get_bind().dialect.name == "sqlite":
        sqlite_statement = sqlite.insert(table).values(values)
        if not merge:
            return sqlite_statement.on_conflict_do_nothing(index_elements=list(target))
        excluded = sqlite_statement.excluded
        changes = _counted(table, {name: excluded[name] for name in keep}, version, now)
        return sqlite_statement.on_conflict_do_update(index_elements=list(target), set_=changes)
    mysql_statement = mysql.insert(table).values(values)
    if not merge:  # a no-op: INSERT IGNORE would also hide errors that are no clash
        return mysql_statement.on_duplicate_key_update({target[0].name: target[0]})
    inserted = mysql_statement.inserted
    changes = _counted(table, {name: inserted[name] for name in keep}, version, now)
    return mysql_statement.on_duplicate_key_update(changes)


def _counted(table: sa.Table, changes: dict[Any, Any], version: Any, now: Any) -> dict[Any, Any]:
    """An upsert's changes, with the version counted and updated_at set."""
    if version is not None:
        changes[version.name] = version + 1
    if "updated_at" in table.columns:
        changes["updated_at"] = now
    return changes


async def _rows_by(
    session: AsyncSession, table: sa.Table, columns: tuple[sa.Column[Any], ...], rows: list[Row]
) -> list[Row]:
    """The stored rows whose ``columns`` hold the values of ``rows``, in their order."""

    def key(row: Row) -> tuple[Any, ...]:
        return tuple(row[column.name] for column in columns)

    wanted = [key(row) for row in rows]
    keys: sa.BindParameter[Any] = sa.bindparam("keys", expanding=True)
    if len(columns) == 1:
        statement = sa.select(table).where(columns[0].in_(keys))
        bound: list[Any] = [k[0] for k in wanted]
    else:
        statement = sa.select(table).where(sa.tuple_(*columns).in_(keys))
        bound = wanted
    found = {key(row): row for row in _dicts(await session.execute(statement, {"keys": bound}))}
    return [found[k] for k in dict.fromkeys(wanted) if k in found]


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
    key = describe(table).key
    statement = sa.update(table).where(key_clause(key)).values(**values)
    description = describe(table)
    version = description.version
    if version is not None:
        statement = statement.where(version == expected_version).values({version: version + 1})
    now = utcnow()
    if "updated_at" in table.columns:
        statement = statement.values(updated_at=now)
    result = await session.execute(statement, key_parameters(key, pk))
    if result.rowcount != 1:  # type: ignore[attr-defined]  # a CursorResult
        return None
    if current is not None and version is not None and description.writes_known:
        # The row as the UPDATE left it, known without reading it again: the
        # version matched, so nothing else wrote it since it was read.
        written = {**current, **values, str(version.name): expected_version + 1}
        return {**written, "updated_at": now} if "updated_at" in table.columns else written
    return await load_row(session, table, _key_after(table, pk, values))


async def locked_rows_where(
    session: AsyncSession, table: sa.Table, query: Any, limited: bool = False
) -> list[Row]:
    """The rows ``query``'s filters match, locked until the transaction ends;
    ``limited``: only the first ``query.limit`` of them in its order."""
    if not limited:
        statement = locked_rows(table, filter_shapes(query.filters))
        parameters = statement.parameters(query)
    else:
        statement = locked_rows(table, filter_shapes(query.filters), query.order)
        parameters = statement.parameters(query, query.limit)
    return _dicts(await session.execute(statement.statement, parameters))


async def update_rows(
    session: AsyncSession, table: sa.Table, rows: list[Row], values: Row
) -> list[Row]:
    """Write ``values`` to ``rows`` (read locked, by ``locked_rows_where``);
    the rows as stored. A table without a key is written by its whole rows,
    and answered as they were with ``values`` on them."""
    if not rows:
        return []
    description = describe(table)
    statement = sa.update(table).values(**values)
    version = description.version
    if version is not None:
        statement = statement.values({version: version + 1})
    if "updated_at" in table.columns:
        statement = statement.values(updated_at=utcnow())
    if not description.key:
        for row in rows:
            await session.execute(statement.where(*_whole_row(table, row)))
        return [{**row, **values} for row in rows]
    keys = [description.key_of(row) for row in rows]
    await session.execute(statement.where(keys_in(table)), {"pks": keys})
    after = [description.key_of({**row, **values}) for row in rows]
    stored = {
        description.key_of(row): row
        for row in _dicts(await session.execute(row_statements(table).many, {"pks": after}))
    }
    return [stored[key] for key in after if key in stored]


async def delete_rows(session: AsyncSession, table: sa.Table, rows: list[Row]) -> None:
    """Delete ``rows`` (read locked, by ``locked_rows_where``)."""
    description = describe(table)
    if not rows:
        return
    if not description.key:
        for row in rows:
            await session.execute(sa.delete(table).where(*_whole_row(table, row)))
        return
    keys = [description.key_of(row) for row in rows]
    await session.execute(sa.delete(table).where(keys_in(table)), {"pks": keys})


def _whole_row(table: sa.Table, row: Row) -> list[Any]:
    """A row of a table without a key, by every value it holds."""
    return [
        column.is_(None) if row[column.name] is None else column == row[column.name]
        for column in table.columns
    ]


def _key_after(table: sa.Table, pk: Any, values: Row) -> Any:
    """The row's key once ``values`` are written: a write may change it."""
    description = describe(table)
    parts = (pk,) if len(description.key) == 1 else pk
    return description.key_of(
        {**{str(c.name): part for c, part in zip(description.key, parts, strict=True)}, **values}
    )


async def delete_row(
    session: AsyncSession, table: sa.Table, pk: Any, expected_version: Any
) -> bool:
    """Delete row ``pk`` if it still has ``expected_version``; True when it did."""
    key = describe(table).key
    statement = sa.delete(table).where(key_clause(key))
    version = describe(table).version
    if version is not None:
        statement = statement.where(version == expected_version)
    result = await session.execute(statement, key_parameters(key, pk))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]  # a CursorResult


async def returned_rows(
    session: AsyncSession,
    table: sa.Table,
    rows: list[Row],
    columns: tuple[Any, ...],
    embeds: tuple[Any, ...],
) -> list[Row]:
    """What a write answers of ``rows`` (just written, in the request's
    transaction): the ``columns`` a select asked for and its ``embeds``.

    Plain columns are taken from the rows; aliases, casts and JSON paths are
    read again by key, in the same transaction.
    """
    plain = all(isinstance(c, sa.Column) and c.table is table for c in columns)
    if not plain:
        rows = await _selected_by_key(session, table, rows, columns, embeds)
    if embeds:
        await session.run_sync(lambda sync: embed_rows(sync.connection(), rows, embeds))
    shown = shown_names(columns, embeds)
    return [{name: row[name] for name in shown} for row in rows]


async def _selected_by_key(
    session: AsyncSession,
    table: sa.Table,
    rows: list[Row],
    columns: tuple[Any, ...],
    embeds: tuple[Any, ...],
) -> list[Row]:
    key = describe(table).key
    if not key:
        raise BadRequest(
            "A write to a table without a key answers its columns, not expressions",
            parameter="select",
        )
    keys = [sa.type_coerce(column, column.type).label(f"key_{i}") for i, column in enumerate(key)]
    joins = {column for embed in embeds for column in embed.link.near} - set(columns)
    statement = sa.select(*keys, *columns, *joins).where(keys_in(table))
    found = {
        tuple(row[f"key_{i}"] for i in range(len(key))): row
        for row in _dicts(await session.execute(statement, {"pks": _keys(table, rows)}))
    }
    return [found[tuple(row[column.name] for column in key)] for row in rows]


def _keys(table: sa.Table, rows: list[Row]) -> list[Any]:
    description = describe(table)
    return [description.key_of(row) for row in rows]
