"""Every query the API runs, in one place: async loaders and writers over registered tables.

Statements are built once per table and reused; rows come back as plain dicts
whose keys are ``str`` (SQLAlchemy's ``quoted_name`` keys upset orjson).
Writes are Core statements, so that zope.sqlalchemy sees them (api.db).
"""

from functools import cache

import sqlalchemy as sa

from api.models import utcnow


@cache
def _statements(table):
    (pk,) = table.primary_key.columns
    one = sa.select(table).where(pk == sa.bindparam("pk"))
    return {
        "keys": tuple(str(column.name) for column in table.columns),
        "pk": pk,
        "one": one,
        "one_for_update": one.with_for_update(),
        "many": sa.select(table).where(pk.in_(sa.bindparam("pks", expanding=True))),
        "page": sa.select(table)
        .where(pk > sa.bindparam("after"))
        .order_by(pk)
        .limit(sa.bindparam("limit")),
    }


def primary_key(table):
    return _statements(table)["pk"]


def _dicts(table, result):
    keys = _statements(table)["keys"]
    return [dict(zip(keys, row, strict=True)) for row in result]


async def load_row(session, table, pk, *, for_update=False):
    """The row with primary key ``pk`` as a dict, or None.

    ``for_update`` locks the row until the transaction ends (MySQL/MariaDB),
    so that a read-modify-write sees the latest committed version.
    """
    statements = _statements(table)
    statement = statements["one_for_update" if for_update else "one"]
    rows = _dicts(table, await session.execute(statement, {"pk": pk}))
    return rows[0] if rows else None


async def load_page(session, table, after, limit):
    """Up to ``limit`` rows with primary keys above ``after``, in key order."""
    statement = _statements(table)["page"]
    return _dicts(table, await session.execute(statement, {"after": after, "limit": limit}))


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
        for row in _dicts(table, await session.execute(statement, {"pks": pks}))
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
