"""A write that breaks a constraint of the table: a unique or foreign key
(409, naming which, as PostgREST's messages do), a check or a NOT NULL
(400); with PostgreSQL's SQLSTATE, which PostgREST passes on."""

from __future__ import annotations

import logging
import re
from typing import Any

import sqlalchemy as sa
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import exception_view_config
from sqlalchemy import exc as sa_exc

from api.collections import unique_keys
from api.errors import problem_response
from api.logs import database_error, error_number
from api.observe import count_error

log = logging.getLogger(__name__)

# MySQL/MariaDB's error numbers, as PostgreSQL's SQLSTATEs (which PostgREST passes on).
# 1761 and 1762: an ON UPDATE CASCADE that would make a duplicate in the child table.
SQLSTATES = {
    1062: "23505",
    1761: "23505",
    1762: "23505",
    1451: "23503",
    1452: "23503",
    1048: "23502",
}

CHECK_FAILED = "A value breaks a check constraint of the table."

NOT_NULL_FAILED = "A column that takes no null was given one."


def server_says(exc: Exception) -> str | None:
    """The database's message for an error about the request's own values,
    which names the column or the constraint."""
    orig = getattr(exc, "orig", None)
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if len(args) > 1 and isinstance(args[0], int):  # MySQL's (errno, message)
        return str(args[1])
    return str(orig) if type(orig).__module__ == "sqlite3" else None


def _sqlstate(exc: sa_exc.DBAPIError) -> str | None:
    errno = error_number(exc)
    if errno is not None:
        return SQLSTATES.get(errno)
    text = str(exc.orig)  # SQLite says it in words
    if "UNIQUE" in text:
        return "23505"
    if "CHECK" in text:
        return "23514"
    if "NOT NULL" in text:
        return "23502"
    return "23503" if "FOREIGN KEY" in text else None


@exception_view_config(sa_exc.IntegrityError)
def integrity_error(exc: sa_exc.IntegrityError, request: Request) -> Response:
    count_error("integrity")
    log.info("integrity error: %s", database_error(exc))
    sqlstate = _sqlstate(exc)
    says = server_says(exc)
    if sqlstate == "23514":  # as MySQL's check constraint, which is no conflict
        return problem_response(400, CHECK_FAILED, code=sqlstate, details=says)
    if sqlstate == "23502":  # a null the API let through: a trigger's, a default of NULL
        return problem_response(400, NOT_NULL_FAILED, code=sqlstate, details=says)
    table = getattr(request.context, "table", None)
    return problem_response(
        409, _conflict(error_number(exc), says, table), code=sqlstate or "23000", details=says
    )


CONFLICT = "The write conflicts with existing data (a unique or foreign key)."

# What the database's message of a conflict names, to say which key in the
# answer, which is what a client shows its user. A server set to another
# language words it otherwise: the answer is then CONFLICT, and ``details``
# still carries the server's words.
_DUPLICATE = re.compile(
    r"Duplicate entry '(?P<value>.*)' for key '(?:.*\.)?(?P<key>[^'.]*)'", re.S
)
_FOREIGN_KEY = re.compile(
    r"fails \(`[^`]*`\.`(?P<child>[^`]*)`, CONSTRAINT `(?P<name>[^`]*)` "
    r"FOREIGN KEY \((?P<columns>[^)]*)\) REFERENCES `(?P<parent>[^`]*)`"
)
_CASCADED_DUPLICATE = re.compile(
    r"would lead to a duplicate entry in table '(?P<child>[^']*)', key '(?P<key>[^']*)'"
)
_SQLITE_UNIQUE = "UNIQUE constraint failed: "


def _conflict(errno: int | None, says: str | None, table: sa.Table | None) -> str:
    """Which unique key's value is taken, or which foreign key the write
    breaks and how, as PostgREST's messages say; else CONFLICT."""
    says = says or ""
    duplicate = _DUPLICATE.match(says) if errno == 1062 else None
    if duplicate:
        columns = _unique_columns(table, duplicate["key"])
        named = ", ".join(columns) if columns else f"value of the unique key {duplicate['key']}"
        return f"Another row already has this {named} ('{duplicate['value']}')."
    if says.startswith(_SQLITE_UNIQUE):
        columns = [name.rpartition(".")[2] for name in says[len(_SQLITE_UNIQUE) :].split(", ")]
        return f"Another row already has this {', '.join(columns)}."
    cascaded = _CASCADED_DUPLICATE.search(says) if errno == 1761 else None
    if cascaded:
        return (
            f"The change would reach rows of {cascaded['child']} through a foreign key,"
            f" and give two of them the same value of the unique key {cascaded['key']}."
        )
    foreign = _FOREIGN_KEY.search(says) if errno in (1451, 1452) else None
    if foreign:
        keyed = foreign["columns"].replace("`", "")
        if errno == 1452:
            parent, name = foreign["parent"], foreign["name"]
            return f"{keyed} names no row of {parent} (foreign key {name})."
        return (
            f"Rows of {foreign['child']} still refer to this row by {keyed}"
            f" (foreign key {foreign['name']})."
        )
    return CONFLICT


def _unique_columns(table: sa.Table | None, key: str) -> list[str]:
    """The columns of the table's unique key of that name, or none where
    the table does not say."""
    if table is None:
        return []
    named = (columns for name, columns in unique_keys(table) if name == key)
    return [str(column.name) for column in next(named, ())]
