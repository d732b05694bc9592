"""The collection query language (PostgREST's syntax), parsed into a ``ListQuery``.

    select=id,name                 columns to return
    name=eq.foo  id=in.(1,2,3)     filters, ANDed: eq neq gt gte lt lte like ilike in is, not.
    order=name.desc.nullslast,id   ordering; the primary key is always the last tie-break
    limit=50  cursor=...           keyset pages

Everything is checked against the table's metadata here: a column name that
reaches SQL comes from ``table.columns``, and every value is parsed by its
column's type and later bound as a parameter. Any mistake is a ``BadRequest``
that names the parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import orjson
import sqlalchemy as sa
from webob.multidict import MultiDict

from api.collections import describe
from api.errors import BadRequest
from api.querystring.aggregates import (
    check_joined,
    grouped_order,
    is_aggregate,
    refuse_unless_allowed,
    spreads_aggregates,
)
from api.querystring.cursors import decode_cursor, encode_cursor
from api.querystring.filters import (
    COMPARISONS,
    FULL_TEXT,
    Filter,
    Logic,
    filters_signature,
    parse_filter,
    parse_filter_parameter,
)
from api.querystring.ordering import OrderItem, parse_order, tie_break
from api.querystring.params import (
    capped_limit,
    parse_query_string,
    parse_range,
    single_value,
    whole_number,
)
from api.querystring.select import (
    Embed,
    check_names,
    parse_select,
    resolve_embed,
    shown_names,
)

__all__ = [
    "COMPARISONS",
    "FULL_TEXT",
    "Embed",
    "Filter",
    "ListQuery",
    "Logic",
    "OrderItem",
    "check_names",
    "encode_cursor",
    "parse_filter",
    "parse_list_query",
    "parse_query_string",
    "parse_range",
    "parse_returned",
    "shown_names",
]

RESERVED = frozenset({"select", "order", "limit", "offset", "cursor", "on_conflict"})


@dataclass(frozen=True)
class ListQuery:
    columns: tuple  # of sa.Column, in the requested order
    filters: tuple  # of Filter
    order: tuple  # of OrderItem, the primary key last
    limit: int
    after: tuple | None  # the sort-key values of the last row of the previous page
    embeds: tuple = ()  # of Embed; with aggregates, joined in their statement
    offset: int = 0  # rows skipped (after the cursor, if any)
    group_by: tuple | None = None  # with aggregates: the other selected columns
    # With aggregates: the table, which a select of count() alone does not name
    source: sa.Table | None = None

    def signature(self) -> bytes:
        """What a cursor is bound to: the same rows in the same order, or it is stale."""
        inner = [
            (e.key, e.absent, filters_signature(e.filters))
            for e in self.embeds
            if e.inner or e.absent
        ]
        order = [o.spec for o in self.order]
        return orjson.dumps([order, filters_signature(self.filters), inner], default=str)


def _matched(embeds: tuple[Embed, ...], key: str, text: str) -> tuple[Embed, ...]:
    """The embeds, the one named ``key`` kept to parent rows with no match
    (``is.null``) or with one (``not.is.null``)."""
    if text not in ("is.null", "not.is.null"):
        message = f"an embedded resource is filtered by is.null or not.is.null, not '{text}'"
        raise BadRequest(message, parameter=key)
    absent = text == "is.null"
    return tuple(
        replace(e, inner=not absent, absent=absent) if e.key == key else e for e in embeds
    )


def parse_returned(
    table: sa.Table, params: MultiDict, max_limit: int, aggregates: bool
) -> tuple[tuple[Any, ...], tuple[Embed, ...]]:
    """What ``select`` asks of each row: columns (or labelled expressions)
    and embeds; every column without one. ``aggregates``: whether an embed
    may hold them (api.aggregates_enabled)."""
    select = single_value(params, "select")
    if select is None:
        return describe(table).star, ()
    columns, embedded = parse_select(table, select)
    embeds = tuple(
        resolve_embed(describe(table), item, params, "", max_limit, aggregates)
        for item in embedded
    )
    return columns, embeds


def _grouped(
    columns: tuple[Any, ...],
    embeds: tuple[Embed, ...],
    order: list[OrderItem],
    allowed: bool,
    params: MultiDict,
) -> tuple[Any, ...] | None:
    """With aggregates in the select (or in a spread embed), the columns it
    groups rows by (the others); None without. A grouped query orders by
    those columns only and has no cursor; its embeds are rows a foreign key
    points at, joined and grouped by too (``check_joined``)."""
    spread = any(spreads_aggregates(embed) for embed in embeds)
    if not spread and not any(is_aggregate(column) for column in columns):
        return None
    refuse_unless_allowed(columns, allowed)
    for embed in embeds:
        check_joined(embed)
    if "cursor" in params:
        raise BadRequest("a page of aggregates has no cursor: use offset", "cursor")
    group_by = tuple(column for column in columns if not is_aggregate(column))
    order[:] = grouped_order(group_by, order, "order")
    return group_by


def parse_list_query(
    table: sa.Table,
    params: MultiDict,
    *,
    default_limit: int,
    max_limit: int,
    cursor_secret: bytes,
    fixed: tuple[Filter, ...] = (),
    range_: tuple[int, int | None] | None = None,
    aggregates: bool = False,
) -> ListQuery:
    """The ListQuery that ``params`` (a WebOb MultiDict) asks of ``table``;
    ``fixed`` filters come first (a child collection's foreign key). The
    rows are ``limit`` and ``offset``, else ``range_`` (a Range header's),
    else the first ``default_limit``; never more than ``max_limit``."""
    columns, embeds = parse_returned(table, params, max_limit, aggregates)
    embed_keys = {embed.key for embed in embeds}
    order_text = single_value(params, "order")
    order = parse_order(table, order_text) if order_text is not None else []
    group_by = _grouped(columns, embeds, order, aggregates, params)
    ordered = {item.column for item in order}
    # The tie-break runs the way the last key does, so that an index on
    # (that column, primary key) can be read in one direction. Groups are
    # told apart by their columns.
    descending = order[-1].descending if order else False
    for column in tie_break(table) if group_by is None else group_by:
        if column not in ordered:
            order.append(OrderItem(column, descending, bool(column.nullable) and descending))
    filters: list[Filter | Logic] = list(fixed)
    for name, text in params.items():
        if name in RESERVED or ("." in name and name.partition(".")[0] in embed_keys):
            continue  # an embed's parameter: resolve_embed()
        if name in embed_keys:  # rel=is.null: no match; rel=not.is.null: one, as !inner
            embeds = _matched(embeds, name, text)
            continue
        filters.append(parse_filter_parameter(table, name, text, ""))
    check_names(columns, order, embeds)
    limit, offset = capped_limit(params, "", max_limit), whole_number(params, "", "offset")
    if range_ is not None and limit is None and offset is None:
        offset, limit = range_[0], None if range_[1] is None else min(range_[1], max_limit)
    limit = default_limit if limit is None else limit
    source = None if group_by is None else table
    query = ListQuery(
        columns, tuple(filters), tuple(order), limit, None, embeds, offset or 0, group_by, source
    )
    cursor = single_value(params, "cursor")
    if cursor is not None:
        query = replace(query, after=decode_cursor(cursor, query, cursor_secret))
    return query
