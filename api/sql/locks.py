"""Locks by name, for the rows of a table whose engine locks none (MyISAM:
``FOR UPDATE`` holds nothing past its statement): the server's GET_LOCK,
held until the connection returns to the pool, which releases them
(``db.engines``)."""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa

# Its wait bounded as a row lock's is.
ROW_LOCK = "SELECT GET_LOCK(%s, @@SESSION.innodb_lock_wait_timeout)"
NAMED_LOCKS = "api_named_locks"  # in a connection's info: it holds some


def lock_row(connection: Any, table: sa.Table, key: Any) -> None:
    """``ROW_LOCK`` on the row of ``table`` with ``key`` (as stored) for
    ``connection`` (SQLAlchemy's); ``LockWaitTimeout`` when another
    connection held it past the bound. Named by a hash: MySQL takes names
    of at most 64 characters."""
    digest = hashlib.sha1(f"{table.schema}.{table.name}:{key!r}".encode()).hexdigest()
    name = f"api:{digest}"
    connection.info[NAMED_LOCKS] = True
    if connection.exec_driver_sql(ROW_LOCK, (name,)).scalar() != 1:
        raise LockWaitTimeout(name)


class LockWaitTimeout(Exception):
    """A lock by name that another request held past the bound of a wait."""
