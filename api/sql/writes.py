"""Reads and writes in the request's transaction: the locked read before a write, and the writes.

Writes are Core statements, so that zope.sqlalchemy sees them (``api.db``);
rows come back as plain dicts whose keys are ``str`` (orjson rejects the
``quoted_name`` keys of SQLAlchemy's rows).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Result
from sqlalchemy.ext.asyncio import AsyncSession

from api.collections import describe
from api.models import utcnow
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
    order; a table without a key cannot be read back: its rows as sent."""
    now = utcnow()
    stamps = {name: now for name in ("created_at", "updated_at") if name in table.columns}
    description = describe(table)
    pks = []
    for values in rows:
        result = await session.execute(sa.insert(table).values(**values, **stamps))
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


async def update_row(
    session: AsyncSession, table: sa.Table, pk: Any, values: Row, expected_version: Any
) -> Row | None:
    """Write ``values`` to row ``pk`` only if it still has ``expected_version``.

    The check and the write are one statement, so two writers racing on one
    version cannot both succeed. A table without a version column is written
    as it is: its caller read the row under its lock. Returns the row as
    stored, or None when the version did not match (or the row is gone).
    """
    key = describe(table).key
    statement = sa.update(table).where(key_clause(key)).values(**values)
    version = describe(table).version
    if version is not None:
        statement = statement.where(version == expected_version).values({version: version + 1})
    if "updated_at" in table.columns:
        statement = statement.values(updated_at=utcnow())
    result = await session.execute(statement, key_parameters(key, pk))
    if result.rowcount != 1:  # type: ignore[attr-defined]  # a CursorResult
        return None
    return await load_row(session, table, _key_after(table, pk, values))


async def locked_rows_where(session: AsyncSession, table: sa.Table, query: Any) -> list[Row]:
    """The rows ``query``'s filters match, locked until the transaction ends."""
    statement = locked_rows(table, filter_shapes(query.filters))
    return _dicts(await session.execute(statement.statement, statement.parameters(query)))


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
