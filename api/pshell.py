"""pshell's setup (``[pshell] setup = api.pshell.setup`` in the ini files):
what a person at the prompt needs to read rows and write them by hand.

    >>> root["mytable"]["1"].row                 # an item, as traversal finds it
    >>> rows("mytable", name="demo 1")           # rows whose columns equal these
    >>> in_transaction(lambda session: session.execute(
    ...     sa.update(tables["mytable"]).where(tables["mytable"].c.id == 1).values(name="x")))

Each call runs on the process's background event loop, in a request
greenlet (``api.bridge``); ``in_transaction`` commits unless ``fn`` raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from api.bridge.wsgi import background_loop
from api.db import get_engine

T = TypeVar("T")


def setup(env: dict[str, Any]) -> None:
    registry = env["registry"]
    tables: dict[str, sa.Table] = dict(registry.api_collections)

    def in_transaction(fn: Callable[[Session], T]) -> T:
        """``fn(session)``, a synchronous SQLAlchemy session, in one
        transaction: committed when ``fn`` returns, rolled back if it raises."""

        async def run() -> T:
            async with AsyncSession(get_engine(registry)) as session, session.begin():
                return await session.run_sync(fn)

        return background_loop().run(run())

    def rows(name: str, limit: int = 20, **equal: Any) -> list[dict[str, Any]]:
        """Up to ``limit`` rows of the collection ``name`` whose columns equal ``equal``."""
        table = tables[name]
        statement = sa.select(table).where(*(table.c[k] == v for k, v in equal.items()))
        statement = statement.order_by(*table.primary_key.columns).limit(limit)

        def read(session: Session) -> list[dict[str, Any]]:
            return [dict(row._mapping) for row in session.execute(statement)]

        return in_transaction(read)

    env.update(sa=sa, tables=tables, rows=rows, in_transaction=in_transaction)
    env["help"] = (
        "root['mytable']['1'].row, rows('mytable', name='demo 1'), "
        "in_transaction(lambda session: ...), tables, sa"
    )
