"""Statement builders of the lists of PostgREST's query language, and of their embeds.

A list statement is built once per shape of its query (the columns, the
filters without their values, the order, which cursor values are NULL) and
cached: clients pick the shapes, so the caches are bounded. ``Binds``
(``api.sql.conditions``, with the filters' WHERE) makes each bind parameter
together with where its value comes from in the query, so that a statement
and its parameters are built in one pass and cannot disagree.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.util import ClauseAdapter

from api.collections import Link, of_own_alias
from api.columns import ENUM, enum_members, mapping
from api.querystring import ListQuery, OrderItem
from api.querystring.aggregates import Aggregate
from api.sql import STATEMENT_CACHE_SIZE
from api.sql.conditions import Binds, FilterShape, Source, filter_shapes, where_of
from api.sql.keys import in_keys, passed_through

# The bind parameters of a list statement's LIMIT and OFFSET, given by whoever runs it.
LIMIT = "page_limit"
OFFSET = "page_offset"


def _cursor_value(index: int) -> Source:
    return lambda query: query.after[index]  # a cursor's shape has one


@dataclasses.dataclass(frozen=True)
class ListStatement:
    """A statement of one query shape, and how to take its parameters from a query."""

    statement: Select[Any]
    sources: dict[str, Source]

    def parameters(self, query: Any, limit: int | None = None) -> dict[str, Any]:
        """The values of the binds, from ``query`` (a ListQuery, or an Embed)."""
        values = {name: source(query) for name, source in self.sources.items()}
        if limit is not None:
            values[LIMIT] = limit
            if getattr(query, "offset", 0):
                values[OFFSET] = query.offset
        return values


# An embed that keeps only the rows with a match (!inner), or without one
# (rel=is.null): its place in the query's embeds, how it joins, its filters'
# shapes, and whether a match must be absent.
InnerShape = tuple[int, Link, tuple[FilterShape, ...], bool]


class JoinedShape(NamedTuple):
    """An embed beside aggregates: the row a foreign key points at, joined in
    their statement, its columns grouped by (a spread's aggregates
    aggregated), its filters in the join's condition."""

    link: Link
    columns: tuple[Any, ...]  # of the target, or aggregates over them (spread)
    filters: tuple[FilterShape, ...]
    spread: bool


def joined_label(index: int, position: int) -> str:
    """The name under which a grouped row carries a column of its embed
    ``index`` that is not spread (``fold_joined`` makes them an object)."""
    return f"_joined{index}_{position}"


def joined_absent(index: int) -> str:
    """The name under which a grouped row says its embed ``index`` found no row."""
    return f"_joined{index}_absent"


class ListShape(NamedTuple):
    """What a list statement is built from and cached by: a query without its values."""

    columns: tuple[sa.Column[Any], ...]
    order: tuple[OrderItem, ...]
    filters: tuple[FilterShape, ...]
    after: tuple[bool, ...] | None  # which cursor values are NULL
    joins: tuple[sa.Column[Any], ...] = ()  # read for the embeds to join on
    inner: tuple[InnerShape, ...] = ()
    offset: bool = False  # whether rows are skipped
    group_by: tuple[Any, ...] | None = None  # with aggregates: what rows are grouped by
    source: sa.Table | None = None  # with aggregates: the table they read
    joined: tuple[JoinedShape, ...] = ()  # with aggregates: the embeds, joined


def shape_of(query: ListQuery) -> ListShape:
    after = None if query.after is None else tuple(value is None for value in query.after)
    if not query.embeds and not query.offset and query.group_by is None:
        return ListShape(query.columns, query.order, filter_shapes(query.filters), after)
    grouped = query.group_by is not None
    joins = joins_of(query)
    joined = tuple(
        JoinedShape(embed.link, embed.columns, filter_shapes(embed.filters), embed.spread)
        for embed in (query.embeds if grouped else ())
    )
    inner = tuple(
        (index, embed.link, filter_shapes(embed.filters), embed.absent)
        for index, embed in enumerate(query.embeds)
        if embed.inner or embed.absent
    )
    offset = query.offset > 0
    filters = filter_shapes(query.filters)
    return ListShape(
        query.columns,
        query.order,
        filters,
        after,
        joins,
        inner,
        offset,
        query.group_by,
        query.source,
        joined,
    )


def joins_of(query: ListQuery) -> tuple[sa.Column[Any], ...]:
    """The columns a page reads for its embeds to join on (none for a
    grouped page, whose embeds are joined in its statement)."""
    if query.group_by is not None:
        return ()
    return tuple(column for embed in query.embeds for column in embed.link.near)


def _rows_matching(shape: ListShape, binds: Binds) -> list[ColumnElement[bool]]:
    """The WHERE of a list: its filters, and a match for each !inner embed."""
    return [*where_of(binds, shape.filters), *(_exists(binds, *inner) for inner in shape.inner)]


def _joined(link: Link) -> Any:
    """What an embed's rows are read from: the target, joined to the junction."""
    target = link.target.table
    if link.junction is None:
        return target
    on = sa.and_(*(junction == column for junction, column in link.through))
    return target.join(link.junction, on)


def _exists(
    binds: Binds, index: int, link: Link, filters: tuple[FilterShape, ...], absent: bool
) -> ColumnElement[bool]:
    """EXISTS a row of the embed ``index`` that matches its filters, for the
    parent row; NOT EXISTS when ``absent``."""

    def filters_of(query: ListQuery) -> tuple[Any, ...]:
        return query.embeds[index].filters

    adapt = of_own_alias(link)
    matching = [adapt(far) == near for far, near in zip(link.far, link.near, strict=True)]
    subquery = sa.select(sa.literal(1)).select_from(adapt(_joined(link)))
    where = [adapt(clause) for clause in where_of(binds, filters, filters_of)]
    exists = subquery.where(*matching, *where).exists()
    return ~exists if absent else exists


def sort_key(column: sa.Column[Any]) -> ColumnElement[Any]:
    """What a column is sorted by: itself, but for an ENUM its member's
    position. MySQL sorts an ENUM by position but compares it with a string
    as a string, so a cursor must compare positions to follow the sort; and
    SQLite, which holds the member's text, sorts alike."""
    if mapping(column) is ENUM:
        return sa.case({member: i for i, member in enumerate(enum_members(column))}, value=column)
    return column


def _sort_value(column: sa.Column[Any], source: Source) -> Source:
    """The cursor value of ``column`` as ``sort_key`` compares it."""
    if mapping(column) is ENUM:
        positions = {member: i for i, member in enumerate(enum_members(column))}
        return lambda query: positions[source(query)]
    return source


def _order_by(order: tuple[OrderItem, ...]) -> list[ColumnElement[Any]]:
    """ORDER BY with NULL placement spelled out, so every database sorts alike."""
    clauses: list[ColumnElement[Any]] = []
    for item in order:
        column = item.column
        if column.nullable:
            is_null = column.is_(None)
            clauses.append(is_null.desc() if item.nulls_first else is_null.asc())
        key = sort_key(column)
        clauses.append(key.desc() if item.descending else key.asc())
    return clauses


def _after(
    binds: Binds, order: tuple[OrderItem, ...], nulls: tuple[bool, ...]
) -> ColumnElement[bool]:
    """Rows strictly after the cursor's values in ``order``: the keyset predicate.

    (k1 after v1) OR (k1 = v1 AND k2 after v2) OR ...; the primary key, last in
    every order, makes it total. ``nulls`` says which values are NULL (only a
    nullable column holds one); the others are bound from the query's cursor.
    """
    alternatives: list[ColumnElement[bool]] = []
    equal_so_far: list[ColumnElement[bool]] = []
    for index, (item, is_null) in enumerate(zip(order, nulls, strict=True)):
        column = item.column
        after: ColumnElement[bool]
        equal: ColumnElement[bool]
        if is_null:
            after = column.is_not(None) if item.nulls_first else sa.false()
            equal = column.is_(None)
        else:
            key = sort_key(column)
            source = _sort_value(column, _cursor_value(index))
            bound = binds(source, type_=column.type if key is column else None)
            beyond: ColumnElement[bool] = key < bound if item.descending else key > bound
            if column.nullable and not item.nulls_first:
                beyond = sa.or_(beyond, column.is_(None))
            after, equal = beyond, key == bound
        alternatives.append(sa.and_(*equal_so_far, after))
        equal_so_far.append(equal)
    return sa.or_(*alternatives)


class Joins(NamedTuple):
    """What a grouped statement adds for its embeds (``JoinedShape``)."""

    source: Any  # the table, joined to each embed's
    columns: list[ColumnElement[Any]]  # selected: labelled, or by their own name (spread)
    group_by: list[ColumnElement[Any]]
    order_by: list[ColumnElement[Any]]


def _joins(shape: ListShape, binds: Binds) -> Joins:
    """Each embed beside aggregates, left-joined on its foreign key and its
    filters (a parent row without a match keeps null there, as an embed
    does), over an alias of its own: a table may embed itself. Rows are
    grouped by each embed's columns, and by whether it matched, which tells
    a null embed from one whose columns are null."""
    source: Any = shape.source
    columns: list[ColumnElement[Any]] = []
    group_by: list[ColumnElement[Any]] = []
    order_by: list[ColumnElement[Any]] = []
    for index, embed in enumerate(shape.joined):
        link = embed.link
        alias = link.target.table.alias(f"_joined{index}")
        adapt = ClauseAdapter(alias).traverse

        def filters_of(query: ListQuery, index: int = index) -> tuple[Any, ...]:
            return query.embeds[index].filters

        on = [adapt(far) == near for far, near in zip(link.far, link.near, strict=True)]
        on += [adapt(clause) for clause in where_of(binds, embed.filters, filters_of)]
        source = source.outerjoin(alias, sa.and_(*on))
        for position, column in enumerate(embed.columns):
            expression = adapt(column.element if isinstance(column, sa.Label) else column)
            name = str(column.name) if embed.spread else joined_label(index, position)
            columns.append(expression.label(name))
            if not isinstance(column, Aggregate):
                group_by.append(expression)
                order_by += [expression.is_(None).asc(), expression.asc()]
        if not embed.spread:
            absent = adapt(link.far[0]).is_(None)
            columns.append(absent.label(joined_absent(index)))
            group_by.append(absent)
            order_by.append(absent.asc())
    return Joins(source, columns, group_by, order_by)


def read_as(columns: tuple[Any, ...], also_read: tuple[Any, ...] = ()) -> dict[str, str]:
    """Of a statement's ``columns``, the expressions named as a column it
    reads too, for the order or an embed's join (``select=id::text``,
    ordered by ``id``; ``city(city_id::text,address(...))``): each with the
    name it is read under, to be shown under its own (``relabelled``)."""
    if all(isinstance(column, sa.Column) for column in columns):
        return {}  # the usual select: nothing to rename, nothing to look up
    plain = {str(c.name) for c in (*columns, *also_read) if isinstance(c, sa.Column)}
    return {
        str(column.name): f"_shown{i}"
        for i, column in enumerate(columns)
        if not isinstance(column, sa.Column) and column.name in plain
    }


def relabelled(columns: tuple[Any, ...], renamed: dict[str, str]) -> list[Any]:
    """``columns``, each expression of ``renamed`` under its other name."""
    return [
        column
        if isinstance(column, sa.Column) or column.name not in renamed
        else column.element.label(renamed[column.name])
        for column in columns
    ]


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def page_statement(shape: ListShape) -> ListStatement:
    """A page of ``shape``'s rows (LIMIT bound as ``LIMIT``), with its order
    columns; each selected item under its ``read_as`` name."""
    binds = Binds()
    order_columns = (item.column for item in shape.order)
    renamed = read_as(shape.columns, (*(item.column for item in shape.order), *shape.joins))
    columns = relabelled(shape.columns, renamed)
    needed = dict.fromkeys((*columns, *order_columns, *shape.joins))
    statement = sa.select(*map(passed_through, needed)).where(*_rows_matching(shape, binds))
    if shape.after is not None:
        statement = statement.where(_after(binds, shape.order, shape.after))
    order_by = _order_by(shape.order)
    if shape.group_by is not None:
        joins = _joins(shape, binds)
        statement = statement.add_columns(*joins.columns)
        statement = statement.group_by(*shape.group_by, *joins.group_by)
        # count() alone names no column: without a FROM, a count of 1
        statement = statement.select_from(joins.source)
        order_by += joins.order_by
    statement = statement.order_by(*order_by)
    statement = statement.limit(sa.bindparam(LIMIT, type_=sa.Integer))
    if shape.offset:
        statement = statement.offset(sa.bindparam(OFFSET, type_=sa.Integer))
    return ListStatement(statement, binds.sources)


class ExportStatement(NamedTuple):
    """A batch of an export: a page, with every column as its type reads it
    (JSON parsed, for CSV) and the order columns after the requested ones."""

    batch: ListStatement
    keys_at: tuple[int, ...]  # where, in its rows, the order keys are


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def export_statement(shape: ListShape) -> ExportStatement:
    page = page_statement(shape)
    selected = tuple(dict.fromkeys((*shape.columns, *(item.column for item in shape.order))))
    statement = page.statement.with_only_columns(*selected)
    keys_at = tuple(selected.index(item.column) for item in shape.order)
    return ExportStatement(ListStatement(statement, page.sources), keys_at)


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def count_statement(table: sa.Table, shape: ListShape) -> ListStatement:
    binds = Binds()
    matching = _rows_matching(shape, binds)
    if shape.group_by == () and not shape.joined:  # aggregates over all the rows: one
        return ListStatement(sa.select(sa.literal(1, sa.Integer)), {})
    if shape.group_by is not None:  # the groups, not the rows
        joins = _joins(shape, binds)
        by = (*shape.group_by, *joins.group_by)
        groups = sa.select(*by, sa.literal(1)).select_from(joins.source).where(*matching)
        grouped = groups.group_by(*by).subquery()
        return ListStatement(sa.select(sa.func.count()).select_from(grouped), binds.sources)
    statement = sa.select(sa.func.count()).select_from(table).where(*matching)
    return ListStatement(statement, binds.sources)


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def locked_rows(
    table: sa.Table, filters: tuple[FilterShape, ...], order: tuple[OrderItem, ...] | None = None
) -> ListStatement:
    """The rows a write by filters is about, locked (``FOR UPDATE``) until
    the request's transaction ends; with an ``order``, the first ``LIMIT``
    of them (PostgREST's limited update and delete)."""
    binds = Binds()
    statement = sa.select(*table.columns).where(*where_of(binds, filters))
    if order is not None:
        statement = statement.order_by(*_order_by(order))
        statement = statement.limit(sa.bindparam(LIMIT, type_=sa.Integer))
    return ListStatement(statement.with_for_update(), binds.sources)


# --- embedded rows ---------------------------------------------------------------

# The bind parameters of an embed statement's rows per parent (those ranked
# after EMBED_OFFSET, up to EMBED_LIMIT), and of its rows in all, given by
# whoever runs it.
EMBED_OFFSET = "embed_offset"
EMBED_LIMIT = "embed_limit"
EMBED_CAP = "embed_cap"


def parent_label(index: int) -> str:
    """The name under which an embed statement's rows carry their parent's key."""
    return f"_parent{index}"


class EmbedShape(NamedTuple):
    """What an embed statement is built from and cached by."""

    link: Link
    columns: tuple[sa.Column[Any], ...]  # of the target: shown, and what nested embeds join on
    filters: tuple[FilterShape, ...]
    order: tuple[OrderItem, ...]  # the target's key last
    limited: bool
    group_by: tuple[Any, ...] | None  # with aggregates: grouped by these, per parent


def _embed_filters(embed: Any) -> tuple[Any, ...]:
    return embed.filters


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def embed_statement(shape: EmbedShape, size: int) -> ListStatement:
    """The rows of an embed for many parent rows at once: those whose join
    columns hold one of ``size`` bound parent keys (``padded_keys``), each
    labelled with its parent's key, ordered; per parent, those ranked after
    ``EMBED_OFFSET`` up to ``EMBED_LIMIT``; at most ``EMBED_CAP`` in all. A
    parameter per key, not an expanding one: the SQL is final when compiled,
    as the compiled reads need."""
    binds = Binds()
    link = shape.link
    parents = [far.label(parent_label(i)) for i, far in enumerate(link.far)]
    where = [in_keys(link.far, size), *where_of(binds, shape.filters, _embed_filters)]
    order = _order_by(shape.order)
    columns = relabelled(shape.columns, read_as(shape.columns))
    statement = sa.select(*columns, *parents).select_from(_joined(link)).where(*where)
    if shape.group_by is not None:
        statement = statement.group_by(*link.far, *shape.group_by)
    cap = sa.bindparam(EMBED_CAP, type_=sa.Integer)
    if not shape.limited:
        return ListStatement(statement.order_by(*order).limit(cap), binds.sources)
    rank = sa.func.row_number().over(partition_by=list(link.far), order_by=order)
    ranked = statement.add_columns(rank.label("_rank")).subquery()
    outer = [ranked.c[str(column.name)] for column in columns]
    outer += [ranked.c[parent_label(i)] for i in range(len(parents))]
    rank_kept = ranked.c["_rank"].between(
        sa.bindparam(EMBED_OFFSET, type_=sa.Integer) + 1,
        sa.bindparam(EMBED_LIMIT, type_=sa.Integer),
    )
    limited = sa.select(*outer).where(rank_kept)
    return ListStatement(limited.order_by(ranked.c["_rank"]).limit(cap), binds.sources)
