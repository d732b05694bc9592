"""The WHERE of PostgREST's filters, built from their shapes (a filter
without its value) with each bind parameter's source: where in a query
(a ``ListQuery``, an ``Embed``) its value is found. Lists, their embeds and
writes by filters build their conditions here."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement

from api.charsets import cannot_hold
from api.columns import SET, mapping
from api.querystring import FULL_TEXT, Logic
from api.sql.operators import (
    CaseSensitiveLike,
    InUtf8mb4,
    JsonContains,
    Match,
    Regexp,
    set_contains,
)

Source = Callable[[Any], Any]  # a value, from a query


FiltersOf = Callable[[Any], tuple[Any, ...]]  # where a statement's filters are in its query


def top_filters(query: Any) -> tuple[Any, ...]:  # a ListQuery's own
    return query.filters


def _filter_value(filters_of: FiltersOf, index: int) -> Source:
    return lambda query: filters_of(query)[index].value


def _in_value(filters_of: FiltersOf, index: int, position: int) -> Source:
    return lambda query: filters_of(query)[index].value[position]


class Binds:
    """The bind parameters of one statement, each with the source of its value."""

    def __init__(self) -> None:
        self.sources: dict[str, Source] = {}

    def __call__(self, source: Source, type_: Any = None) -> sa.BindParameter[Any]:
        name = f"p{len(self.sources)}"
        self.sources[name] = source
        return sa.bindparam(name, type_=type_)


# A filter without its value: (column, operator, negated, what shapes the SQL)
FilterShape = tuple[sa.Column[Any] | None, str, bool, Any]  # column None: a Logic


def filter_shapes(filters: tuple[Any, ...]) -> tuple[FilterShape, ...]:
    """Filters without their values; a Logic's shape holds its items' shapes."""
    return tuple(
        (None, f.operator, f.negated, filter_shapes(f.items))
        if isinstance(f, Logic)
        else (_compared(f), f.operator, f.negated, _shaped_value(f))
        for f in filters
    )


# Operators that compare a text column with the text of their value.
TEXT_COMPARISONS = frozenset(
    {"eq", "neq", "gt", "gte", "lt", "lte", "isdistinct", "in", "like", "ilike", "match", "imatch"}
)


def _compared(query_filter: Any) -> Any:
    """What a filter compares its value with: its column, or the column as
    utf8mb4 when the value holds a character its character set has not (an
    emoji in a utf8mb3 column, Cyrillic in a latin1 one, typed in a search
    box), which MySQL refused to compare (a 400) and PostgreSQL would just
    not find."""
    column = query_filter.column
    if query_filter.operator in TEXT_COMPARISONS and cannot_hold(column, query_filter.value):
        return in_utf8mb4(column)
    return column


@lru_cache(maxsize=1024)
def in_utf8mb4(column: Any) -> InUtf8mb4:
    """The column as utf8mb4, made once per column so that shapes stay equal."""
    return InUtf8mb4(column)


def _shaped_value(query_filter: Any) -> Any:
    """What of a filter's value its statement is built with: is.VALUE, and how many IN values."""
    if query_filter.operator == "is":
        return query_filter.value
    if query_filter.operator == "in":
        return len(query_filter.value)
    if query_filter.operator in FULL_TEXT:
        return query_filter.value[1]  # the FULLTEXT index's columns
    return None


def _filter_clause(
    binds: Binds, filters_of: FiltersOf, index: int, shape: FilterShape
) -> ColumnElement[bool]:
    column, operator, negated, shaped_value = shape
    clause: ColumnElement[bool]
    if column is None:  # or=(...), and=(...): their items, from their own place in the query

        def items_of(query: Any) -> tuple[Any, ...]:
            return filters_of(query)[index].items

        combine = sa.or_ if operator == "or" else sa.and_
        clause = combine(*where_of(binds, shaped_value, items_of))
    elif operator == "is":
        clause = column.is_(None) if shaped_value is None else column == shaped_value
    elif operator == "in":
        # A parameter per value rather than an expanding one: the SQL is then
        # final when compiled, as the compiled reads need. Each of the
        # column's type, as eq's is (a list of parameters keeps none).
        clause = column.in_(
            [
                binds(_in_value(filters_of, index, position), column.type)
                for position in range(shaped_value)
            ]
        )
    else:
        source = _filter_value(filters_of, index)
        match operator:
            case "like":  # the value: (LIKE pattern, the same as GLOB's) for SQLite
                pattern = binds(lambda query: source(query)[0])
                glob = binds(lambda query: source(query)[1])
                clause = CaseSensitiveLike(column, pattern, glob)
            case "ilike":
                clause = sa.func.lower(column).like(sa.func.lower(binds(source)), escape="\\")
            case "match" | "imatch":
                clause = Regexp(column, binds(source), options=(operator == "match",))
            case "isdistinct":
                clause = column.is_distinct_from(binds(source))
            case "cs" | "cd" | "ov" if mapping(column) is SET:
                clause = set_contains(column, operator, binds(source))
            case "cs" | "cd" | "ov":
                clause = JsonContains(column, binds(source), options=(operator,))
            case "fts" | "plfts" | "phfts" | "wfts":
                search = binds(lambda query: source(query)[0])
                clause = Match(*shaped_value, search, options=(operator == "plfts",)) > 0
            case "eq":
                clause = column == binds(source)
            case "neq":
                clause = column != binds(source)
            case "gt":
                clause = column > binds(source)
            case "gte":
                clause = column >= binds(source)
            case "lt":
                clause = column < binds(source)
            case "lte":
                clause = column <= binds(source)
    return sa.not_(clause) if negated else clause


def where_of(
    binds: Binds, filters: tuple[FilterShape, ...], filters_of: FiltersOf = top_filters
) -> list[ColumnElement[bool]]:
    return [_filter_clause(binds, filters_of, index, shape) for index, shape in enumerate(filters)]


def filter_clauses(
    filters: tuple[FilterShape, ...],
) -> tuple[list[ColumnElement[bool]], dict[str, Source]]:
    """The WHERE of a write by filters (their shapes), and the sources of
    its binds' values, as ``ListStatement`` holds them."""
    binds = Binds()
    return where_of(binds, filters), binds.sources
