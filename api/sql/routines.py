"""Calls of stored routines (``/rpc/{name}``): the statements, made once per
routine, and the call in the request's session.

A FUNCTION is ``SELECT f(:p0, ...)``. A PROCEDURE is ``CALL p(:p0, @rpc_1)``:
its OUT and INOUT parameters go through session variables (an INOUT one is
set first), read back by one ``SELECT`` after the call, and its first result
set, if it makes one, is its rows: at most ``api.page_limit_max`` of them, as
PostgREST's db-max-rows bounds a function's, read unbuffered so that a larger
set is never held in the worker.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncSession
from zope.sqlalchemy import mark_changed

from api.errors import RoutineFailed
from api.routines import Routine
from api.sql.compiled import CompiledCall

Row = dict[str, Any]

# Errors of a routine's own making, as PL/pgSQL's SQLSTATEs (a 400, as
# PostgREST answers what a function raises): ER_TOO_MANY_ROWS, a SELECT ...
# INTO that found more than one row (Sakila's inventory_held_by_customer, for
# an item rented twice and not returned). A SIGNAL, in a routine or a
# trigger, is answered by ``database_errors.signalled``.
ROUTINE_ERRORS = {1172: "P0003"}


@dataclasses.dataclass(frozen=True)
class Called:
    """What a call gave: a function's value, or a procedure's rows and outputs."""

    value: Any = None
    rows: list[Row] | None = None  # None: the procedure made no result set
    outputs: Row | None = None
    more_rows: bool = False  # the result set held more rows than were read


@dataclasses.dataclass(frozen=True)
class CallStatements:
    setup: tuple[sa.TextClause, ...]  # SET @rpc_i = :pi, for INOUT parameters
    call: sa.Executable
    outputs: sa.Executable | None


# How the names of routines and outputs are quoted in the statements' text.
PREPARER = mysql.dialect().identifier_preparer


@functools.cache
def call_statements(routine: Routine) -> CallStatements:
    name = PREPARER.quote_identifier(routine.name)
    if routine.schema is not None:
        name = f"{PREPARER.quote_identifier(routine.schema)}.{name}"
    binds = [sa.bindparam(f"p{i}", type_=c.type) for i, c in enumerate(routine.parameters)]
    if routine.kind == "FUNCTION":
        assert routine.returns is not None
        placeholders = ", ".join(f":{b.key}" for b in binds)
        value = (
            sa.text(f"SELECT {name}({placeholders}) AS value")
            .bindparams(*binds)
            .columns(sa.column("value", routine.returns.type))
        )
        return CallStatements((), value, None)
    setup, arguments, outputs, in_binds = [], [], [], []
    given = iter(binds)
    for position, (mode, column) in enumerate(routine.declared):
        if mode == "IN":
            bind = next(given)
            arguments.append(f":{bind.key}")
            in_binds.append(bind)
            continue
        variable = f"@rpc_{position}"
        arguments.append(variable)
        outputs.append((variable, column))
        if mode == "INOUT":
            bind = next(given)
            setup.append(sa.text(f"SET {variable} = :{bind.key}").bindparams(bind))
    call = sa.text(f"CALL {name}({', '.join(arguments)})").bindparams(*in_binds)
    read_back = None
    if outputs:
        labels = ", ".join(f"{v} AS {PREPARER.quote_identifier(str(c.name))}" for v, c in outputs)
        read_back = sa.text(f"SELECT {labels}").columns(
            *(sa.column(str(c.name), c.type) for _, c in outputs)
        )
    return CallStatements(tuple(setup), call, read_back)


async def call_routine(
    session: AsyncSession, routine: Routine, arguments: list[Any], max_rows: int
) -> Called:
    """Call ``routine`` with ``arguments`` (its parameters' values, in order)."""
    statements = call_statements(routine)
    parameters = {f"p{i}": value for i, value in enumerate(arguments)}
    tm = session.sync_session.info.get("tm")
    if tm is not None:  # a CALL may write, and zope.sqlalchemy cannot see it
        mark_changed(session.sync_session, tm)
    try:
        for statement in statements.setup:
            await session.execute(statement, parameters)
        if routine.kind == "FUNCTION":
            result = await session.execute(statements.call, parameters)
            return Called(value=result.scalar_one())
        rows = await _first_rows(session, statements.call, parameters, max_rows + 1)
        outputs = None
        if statements.outputs is not None:
            read_back = (await session.execute(statements.outputs)).one()
            outputs = {str(c.name): v for c, v in zip(routine.outputs, read_back, strict=True)}
        if rows is not None and len(rows) > max_rows:
            return Called(rows=rows[:max_rows], outputs=outputs, more_rows=True)
        return Called(rows=rows, outputs=outputs)
    except sa_exc.DBAPIError as exc:
        errno, *message = getattr(exc.orig, "args", (None,))
        if errno in ROUTINE_ERRORS:
            text = str(message[0]) if message else str(exc.orig)
            raise RoutineFailed(ROUTINE_ERRORS[errno], text) from exc
        raise


async def _first_rows(
    session: AsyncSession, call: sa.Executable, parameters: dict[str, Any], limit: int
) -> list[Row] | None:
    """The first ``limit`` rows of the CALL's first result set (None if it
    makes none): on asyncmy, through its unbuffered cursor (``CompiledCall``);
    on another driver, read whole as SQLAlchemy reads them."""
    connection = await session.connection()
    dialect = connection.dialect
    if dialect.driver == "asyncmy":
        compiled = _compiled_call(call, dialect)
        return await connection.run_sync(compiled.first_rows, parameters, limit)
    result = await session.execute(call, parameters)
    if not result.returns_rows:  # type: ignore[attr-defined]  # a CursorResult
        return None
    keys = list(map(str, result.keys()))
    return [dict(zip(keys, row, strict=True)) for row in result.all()[:limit]]


@functools.cache
def _compiled_call(call: sa.Executable, dialect: sa.Dialect) -> CompiledCall:
    return CompiledCall(call, dialect)
