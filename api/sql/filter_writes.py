"""Writes by filters, and what a write answers.

PostgREST's PATCH and DELETE of a collection: the rows the filters match,
read locked in the request's transaction, then their UPDATE or DELETE by
key. And the columns and embeds a ``select`` asks of rows just written,
read in the same transaction. Single rows and arrays: ``api.sql.writes``.
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from api.bridge import give_way
from api.collections import describe
from api.errors import BadRequest
from api.models import utcnow
from api.querystring import shown_names
from api.reads.embeds import embed_rows
from api.sql import write_statements
from api.sql.conditions import filter_shapes
from api.sql.grouped import CountedWrite, ShownUpdate
from api.sql.keys import keys_in, row_statements
from api.sql.statements import locked_rows
from api.sql.writes import Row, dicts


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
    return dicts(await session.execute(statement.statement, parameters))


async def update_rows(
    session: AsyncSession, table: sa.Table, rows: list[Row], values: Row
) -> list[Row]:
    """Write ``values`` to ``rows`` (read locked, by ``locked_rows_where``);
    the rows as stored. A table without a key is written by its whole rows,
    and answered as they were with ``values`` on them."""
    if not rows:
        return rows
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
    give_way()  # binding the UPDATE's keys takes as long again
    await session.execute(statement.where(keys_in(table)), {"pks": keys})
    after = [description.key_of({**row, **values}) for row in rows]
    give_way()
    stored = {
        description.key_of(row): row
        for row in dicts(await session.execute(row_statements(table).many, {"pks": after}))
    }
    return [stored[key] for key in after if key in stored]


async def update_matching(session: AsyncSession, table: sa.Table, query: Any, values: Row) -> int:
    """PostgREST's PATCH of a collection as one UPDATE of ``values`` where
    ``query``'s filters match (``update_rows`` writes them alike): the count
    of rows it matched. For an answer that shows no rows: none is read, so
    none is held in the worker, however many it writes."""
    names = tuple(values)
    update, sources = write_statements.update_where(table, names, filter_shapes(query.filters))
    result = await session.execute(update, _parameters(query, sources, values))
    return int(result.rowcount)  # type: ignore[attr-defined]  # a CursorResult


async def delete_matching(session: AsyncSession, table: sa.Table, query: Any) -> int:
    """PostgREST's DELETE of a collection as one DELETE where ``query``'s
    filters match: the count of rows it matched (``update_matching``)."""
    delete, sources = write_statements.delete_where(table, filter_shapes(query.filters))
    result = await session.execute(delete, _parameters(query, sources, {}))
    return int(result.rowcount)  # type: ignore[attr-defined]  # a CursorResult


def _parameters(query: Any, sources: dict[str, Any], values: Row) -> dict[str, Any]:
    """The values of a write by filters: its filters' (from ``query``), the
    columns it sets, and the time it stamps."""
    return {
        **{name: source(query) for name, source in sources.items()},
        **{f"set_{name}": value for name, value in values.items()},
        "now": utcnow(),
    }


def update_where_for_group(
    table: sa.Table, query: Any, values: Row, pk: Any, shown: bool = False
) -> CountedWrite:
    """The UPDATE of ``values`` to every row ``query``'s filters match, as
    one statement (``update_rows`` writes them alike: the version counted,
    ``updated_at`` stamped), for a group to commit (``api.db.groups``):
    the rows it matched; ``shown``, the row as it left it, or None
    (``ShownUpdate``). For a write of the one row of key ``pk``, as the
    filters name it: for many, nothing but the locked read would tell
    which rows they were."""
    names = tuple(values)
    update, sources = write_statements.update_where(table, names, filter_shapes(query.filters))
    parameters = _parameters(query, sources, values)
    statement = functools.partial(write_statements.compiled_write, update)
    if shown:
        return ShownUpdate(statement, parameters, table, pk, values)
    return CountedWrite(statement, parameters, table, pk)


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
    if not shown_as_stored(table, columns, embeds):
        if not all(isinstance(c, sa.Column) and c.table is table for c in columns):
            rows = await _selected_by_key(session, table, rows, columns, embeds)
        if embeds:
            await session.run_sync(lambda sync: embed_rows(sync.connection(), rows, embeds))
    return shown_of(rows, columns, embeds)


def shown_as_stored(table: sa.Table, columns: tuple[Any, ...], embeds: tuple[Any, ...]) -> bool:
    """Whether a select of ``columns`` and ``embeds`` shows of rows just
    written only what they hold: plain columns of ``table``, no embeds."""
    return not embeds and all(isinstance(c, sa.Column) and c.table is table for c in columns)


def shown_of(rows: list[Row], columns: tuple[Any, ...], embeds: tuple[Any, ...]) -> list[Row]:
    """The names a select shows, of ``rows`` that hold them."""
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
        for row in dicts(await session.execute(statement, {"pks": _keys(table, rows)}))
    }
    return [found[tuple(row[column.name] for column in key)] for row in rows]


def _keys(table: sa.Table, rows: list[Row]) -> list[Any]:
    description = describe(table)
    return [description.key_of(row) for row in rows]
