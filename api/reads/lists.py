"""Pages, counts and exports of a collection's query, outside any transaction."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Iterator
from functools import lru_cache
from typing import Any, Literal, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from api.bridge import await_, run_in_greenlet
from api.querystring import ListQuery
from api.querystring.ordering import may_tie
from api.reads.embeds import embed_rows, fold_joined
from api.reads.reader import Reader
from api.sql import STATEMENT_CACHE_SIZE
from api.sql.compiled import CompiledSelect, Row
from api.sql.keys import json_keys
from api.sql.statements import (
    ListShape,
    count_statement,
    export_statement,
    page_statement,
    shape_of,
)

CountMethod = Literal["exact", "planned", "estimated"]


class Count(NamedTuple):
    total: int
    how: CountMethod  # what was done: an estimate is exact where it cannot be had


class Page(NamedTuple):
    rows: list[Row]  # with every column the query needs, its order columns included
    more: bool  # whether rows follow
    counted: Count | None  # when a count was asked for
    following: Row | None = None  # the first row of the next page, where there is one


async def read_page(
    reader: Reader,
    table: sa.Table,
    query: ListQuery,
    count: CountMethod | None = None,
    exact_up_to: int = 0,
) -> Page:
    """A page of ``query``, counted when ``count`` asks for it (``count_rows``).

    Read on a connection of its own: a page is never part of a request's
    transaction.
    """

    def counted_page(connection: Connection) -> Page:
        counted = None
        if count is not None:
            counted = count_rows(connection, table, query, count, exact_up_to)
        page = load_page(connection, query)
        if query.group_by is None:
            embed_rows(connection, page.rows, query.embeds)
        else:  # read in the page's statement, joined
            fold_joined(page.rows, query.embeds)
        return page if counted is None else page._replace(counted=counted)

    return await run_in_greenlet(reader.run, counted_page)


async def explain_page(reader: Reader, query: ListQuery) -> Any:
    """The database's plan of the statement a page of ``query`` runs:
    MySQL/MariaDB's ``EXPLAIN FORMAT=JSON``, SQLite's ``EXPLAIN QUERY PLAN`` rows."""

    def explain(connection: Connection) -> Any:
        statement = page_statement(shape_of(query))
        compiled = statement.statement.compile(dialect=connection.dialect)
        # construct_params: the statement's own literal binds, with the query's.
        parameters = compiled.construct_params(statement.parameters(query, limit=query.limit + 1))
        values = tuple(parameters[name] for name in compiled.positiontup or ())
        if connection.dialect.name == "sqlite":
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled.string}", values)
            return [dict(row._mapping) for row in plan]
        text = connection.exec_driver_sql(f"EXPLAIN FORMAT=JSON {compiled.string}", values)
        return orjson.loads(text.scalar_one())

    return await run_in_greenlet(reader.run, explain)


def load_page(connection: Connection, query: ListQuery) -> Page:
    """A page of ``query``, not counted."""
    shape = shape_of(query)
    statement = page_statement(shape)
    read = _compiled_page(shape, connection.dialect)
    rows = read.dicts(connection, statement.parameters(query, limit=query.limit + 1))
    more = 0 < query.limit < len(rows)
    return Page(rows[: query.limit], more, None, rows[query.limit] if more else None)


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def _compiled_page(shape: ListShape, dialect: Dialect) -> CompiledSelect:
    # JSON is never an order key: only the requested columns may be passed through.
    return CompiledSelect(page_statement(shape).statement, dialect, json_keys(shape.columns))


def count_rows(
    connection: Connection,
    table: sa.Table,
    query: ListQuery,
    method: CountMethod = "exact",
    exact_up_to: int = 0,
) -> Count:
    """The rows ``query`` matches, as PostgREST counts them: ``exact`` runs a
    COUNT; ``planned`` takes MySQL/MariaDB's optimizer estimate (EXPLAIN);
    ``estimated`` is exact up to ``exact_up_to`` rows, planned beyond. Where
    there is no plan to read (SQLite), the count is exact."""
    shape = shape_of(query)._replace(order=(), after=None, offset=False)
    statement = count_statement(table, shape)
    parameters = statement.parameters(query)
    if method == "exact" or connection.dialect.name not in ("mysql", "mariadb"):
        return Count(connection.scalar(statement.statement, parameters), "exact")
    planned = _planned_rows(connection, statement.statement, parameters)
    if method == "planned" or planned > exact_up_to:
        return Count(planned, method)
    return Count(connection.scalar(statement.statement, parameters), method)


def _planned_rows(connection: Connection, count: Any, parameters: dict[str, Any]) -> int:
    """The optimizer's estimate of the rows a COUNT statement reads: EXPLAIN's
    ``rows`` of its first table (the table counted; an !inner EXISTS comes after)."""
    compiled = count.compile(dialect=connection.dialect)
    # construct_params: the statement's own literal binds (a grouped count's), with the query's.
    bound = compiled.construct_params(parameters)
    values = tuple(bound[name] for name in compiled.positiontup or ())
    plan = connection.exec_driver_sql(f"EXPLAIN {compiled.string}", values).mappings().first()
    return planned_rows(plan["rows"] if plan is not None else None)


def planned_rows(rows: Any) -> int:
    """EXPLAIN's ``rows`` as a number. Where MariaDB plans a rowid filter
    (``range|filter``) it writes the filter's share beside it: "1 (33%)"."""
    return int(str(rows).split()[0]) if rows else 0


def stream_rows(
    reader: Reader,
    query: ListQuery,
    batch: int,
    timeout: float,
    limit: int | None = None,
    keyed: bool = True,
) -> Iterator[tuple[Any, ...]]:
    """The rows of ``query`` after its offset, the first ``limit`` (None:
    all), its first batch read already: a query the database refuses, or a
    database that is away, fails here, before the response's status is
    sent, not as a body that breaks off after a 200."""
    rows = _batches(reader, query, batch, timeout, limit, keyed)
    try:
        first = next(rows)
    except StopIteration:
        return iter(())
    return itertools.chain((first,), rows)


def _batches(
    reader: Reader, query: ListQuery, batch: int, timeout: float, limit: int | None, keyed: bool
) -> Iterator[tuple[Any, ...]]:
    """The rows of ``query`` after its offset, up to ``limit`` of them (None:
    all), as tuples of its columns, read in keyset batches of ``batch``
    rows: the page statement, each batch after the last row of the one
    before (only the first skips ``offset`` rows). A table without a key
    (not ``keyed``) has rows alike in every column it is ordered by, which
    a batch after one of them would skip: its batches read a row more, and
    where that row may tie with the last (``may_tie``), the next batch goes
    on by offset from the last batch that ended clean.

    Not a server-side cursor: asyncmy reads a result as fast as the server
    sends it, with no pause, so a client slower than the database would make
    the worker hold the rest of the export in memory. A batch is read whole,
    and the next asked for when the client has taken it. The batches share
    one connection and transaction: on InnoDB (REPEATABLE READ) they read one
    snapshot.

    A generator for the request greenlet: it runs the async engine's sync
    facade, whose driver calls ``await_()``. Its connection is one of the read
    pool's, held until the generator ends or is closed (a client gone).
    """
    width = len(query.columns)
    left = limit
    lookahead = 0 if keyed else 1
    base, taken = query, 0  # where the last batch that ended clean ended, and rows since
    with reader.connection_for_export() as connection:
        while left != 0:
            size = batch if left is None else min(batch, left)
            export = export_statement(shape_of(query))
            parameters = export.batch.parameters(query, limit=size + lookahead)
            rows = _read_batch(connection, export.batch.statement, parameters, timeout)
            for row in rows[:size]:
                yield row[:width]
            if len(rows) < size + lookahead:
                return
            left = None if left is None else left - size
            taken += size
            last = tuple(rows[size - 1][i] for i in export.keys_at)
            if keyed or not may_tie(last, tuple(rows[size][i] for i in export.keys_at)):
                base, taken = dataclasses.replace(query, after=last, offset=0), 0
                query = base
            else:
                query = dataclasses.replace(base, offset=base.offset + taken)


def _read_batch(
    connection: Connection, statement: Any, parameters: dict[str, Any], timeout: float
) -> list[Any]:
    """A batch's rows, or TimeoutError after ``timeout`` seconds.

    Read in a greenlet of its own (the coroutine runs in a task, outside the
    request's greenlet), so that the deadline can cancel the statement in
    flight; SQLAlchemy then discards the connection.
    """

    def fetch() -> list[Any]:
        return list(connection.execute(statement, parameters).all())

    return await_(asyncio.wait_for(run_in_greenlet(fetch), timeout))
