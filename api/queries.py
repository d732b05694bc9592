"""Every query the API runs, in one place: async loaders over registered tables.

Statements are built once per table and reused; rows come back as plain dicts
whose keys are ``str`` (SQLAlchemy's ``quoted_name`` keys upset orjson).
"""

from functools import cache

import sqlalchemy as sa


@cache
def _statements(table):
    (pk,) = table.primary_key.columns
    keys = tuple(str(column.name) for column in table.columns)
    return {
        "keys": keys,
        "pk": pk,
        "one": sa.select(table).where(pk == sa.bindparam("pk")),
        "page": sa.select(table)
        .where(pk > sa.bindparam("after"))
        .order_by(pk)
        .limit(sa.bindparam("limit")),
    }


def primary_key(table):
    return _statements(table)["pk"]


async def load_row(session, table, pk):
    """The row with primary key ``pk`` as a dict, or None."""
    statements = _statements(table)
    result = await session.execute(statements["one"], {"pk": pk})
    row = result.first()
    return None if row is None else dict(zip(statements["keys"], row, strict=True))


async def load_page(session, table, after, limit):
    """Up to ``limit`` rows with primary keys above ``after``, in key order."""
    statements = _statements(table)
    result = await session.execute(statements["page"], {"after": after, "limit": limit})
    keys = statements["keys"]
    return [dict(zip(keys, row, strict=True)) for row in result]


async def insert_row(session, table, values):
    """Insert one row and return it as the database holds it."""
    result = await session.execute(sa.insert(table).values(**values))
    (pk,) = result.inserted_primary_key
    return await load_row(session, table, pk)
