"""``select=``: columns, aliases, JSON paths and casts, and the embedded
resources of the grammar (``api.selects``) resolved against the tables'
relations, with their own filters, order and limit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from webob.multidict import MultiDict

from api.collections import Description, Link, describe
from api.columns import (
    BIT,
    BIT_BOOLEAN,
    BYTES,
    GEOJSON,
    mapping,
)
from api.errors import AmbiguousEmbed, BadRequest
from api.names import unquoted
from api.querystring.aggregates import (
    AGGREGATE,
    LEGACY_COUNT,
    aggregate_of,
    grouped_order,
    is_aggregate,
    refuse_unless_allowed,
)
from api.querystring.filters import column_named, json_element, parse_filter_parameter
from api.querystring.ordering import OrderItem, parse_order
from api.querystring.params import capped_limit, single_value, whole_number
from api.selects import EmbedItem, parse_select_items
from api.sql.operators import DateCast, TimeCast, TimestampCast


@dataclass(frozen=True)
class Embed:
    """Rows of another collection in each row (``select=*,name(...)``), as
    ``key``; with their own columns, embeds, filters, order and limit."""

    key: str
    link: Link
    columns: tuple  # of sa.Column of the target, shown
    embeds: tuple  # of Embed, in the target's rows
    filters: tuple  # of Filter, on the target
    order: tuple  # of OrderItem
    limit: int | None  # rows per parent row
    inner: bool  # only parent rows with a match
    absent: bool = False  # only parent rows without one (PostgREST's rel=is.null)
    spread: bool = False  # ``...name(...)``: its columns in the parent row, not an object
    offset: int = 0  # rows per parent row skipped, before the limit
    # With aggregates (``city(count())``): the columns grouped by, per parent row
    group_by: tuple | None = None


def shown_names(columns: tuple[Any, ...], embeds: tuple[Embed, ...]) -> list[str]:
    """The names of a row's members: its columns', then each embed's (a
    spread embed's own members, in its place)."""
    names = [str(column.name) for column in columns]
    for embed in embeds:
        names += shown_names(embed.columns, embed.embeds) if embed.spread else [embed.key]
    return names


# PostgREST's casts in a select (``id::text``), as the SQL types both databases cast to.
CASTS: dict[str, sa.types.TypeEngine[Any]] = {
    "text": sa.String(),
    "varchar": sa.String(),
    "integer": sa.BigInteger(),
    "int": sa.BigInteger(),
    "bigint": sa.BigInteger(),
    "numeric": sa.Numeric(65, 30),
    "decimal": sa.Numeric(65, 30),
    "date": DateCast(),
    "time": TimeCast(),
    "timestamp": TimestampCast(),
}


QUOTED_NAME = re.compile(r'"[^"]*"')


def _aggregate(table: sa.Table, text: str) -> Any:
    """``count()``, ``amount.sum()``, ``total:data->x::numeric.avg()::integer``:
    the function of its input (itself a select item), labelled with the
    alias, else the function's name; ``count()`` counts rows."""
    match = AGGREGATE.match(text)
    if match is None:
        raise BadRequest(f"'{text}' is not [ALIAS:]COLUMN.FUNCTION()[::CAST]", parameter="select")
    alias, given, function, cast = match.group("alias", "input", "function", "cast")
    if given is None and function != "count":
        raise BadRequest(f"{function}() needs a column: COLUMN.{function}()", parameter="select")
    if cast is not None and cast not in CASTS:
        raise BadRequest(f"'{cast}' is not a cast this API makes", parameter="select")
    selected = None if given is None else _selected(table, given.strip())
    if isinstance(selected, sa.Label):
        selected = selected.element
    if cast is not None and function in ("min", "max") and isinstance(selected, sa.Column):
        refuse_bytes_as_text(selected, cast)
    cast_type = None if cast is None else CASTS[cast]
    return aggregate_of(selected, given, function, cast_type, alias)


def refuse_bytes_as_text(column: sa.Column[Any], cast: str) -> None:
    """A 400 for a cast of bytes to text (``picture::text``): MySQL sends the
    bytes as they are, which need not be UTF-8. Bytes are served as base64."""
    if CASTS[cast].python_type is str and mapping(column) in HOLDS_BYTES:
        message = f"'{column.name}' holds bytes, which are served as base64, not cast to text"
        raise BadRequest(message, parameter="select")


HOLDS_BYTES = frozenset({BYTES, BIT, BIT_BOOLEAN, GEOJSON})


def _selected(table: sa.Table, text: str) -> Any:
    """One select item: ``column``, or ``alias:column->key->>key::cast``, as
    PostgREST reads it; a column as it is, anything else a labelled
    expression (its name: the alias, else the last key, else the column's)."""
    if "()" in text:  # the grammar (api.selects) lets "()" through only for aggregates
        return _aggregate(table, text)
    if text == "count" and "count" not in table.columns:
        return LEGACY_COUNT
    # A quoted name ("a:b", "x->y") is one whole: the parts are found around it.
    quoted = QUOTED_NAME.search(text) if '"' in text else None
    masked = text if quoted is None else f"{text[: quoted.start()]}\0{text[quoted.end() :]}"
    body, _, cast = masked.partition("::")
    alias, colon, body = body.partition(":")
    if not colon:
        alias, body = "", alias
    name, *path = body.split("->")
    if quoted is not None:
        name, alias = (unquoted(p.replace("\0", quoted.group()).strip()) for p in (name, alias))
    column = column_named(table, name.strip(), "select")
    if not (alias or path or cast):
        return column
    if cast and cast not in CASTS:
        message = f"'{cast}' is not a cast this API makes; use one of {', '.join(CASTS)}"
        raise BadRequest(message, parameter="select")
    if cast:
        refuse_bytes_as_text(column, cast)
    if path and not isinstance(column.type, sa.JSON):
        raise BadRequest(f"'{column.name}' holds no JSON to follow a path into", "select")
    keys = tuple(key.lstrip(">").strip() for key in path)
    if not all(keys) or any(key.startswith(">") for key in path[:-1]):
        raise BadRequest(f"'{text}' is not COLUMN->KEY->>KEY", parameter="select")
    as_text = bool(path) and path[-1].startswith(">")
    label = alias.strip() or (keys[-1] if keys else str(column.name))
    return _expression(column, keys, as_text, cast or None, label)


@lru_cache(maxsize=1024)
def _expression(
    column: sa.Column[Any], keys: tuple[str, ...], as_text: bool, cast: str | None, label: str
) -> Any:
    """A labelled select expression, made once per spelling: statements are
    cached by what they select."""
    expression: Any = column
    if keys:
        element = json_element(column, keys)
        expression = element.as_string() if as_text else element
    if cast is not None:
        expression = sa.cast(expression, CASTS[cast])
    # Quoted always: a client's alias may be a word the dialect reserves
    # without SQLAlchemy knowing it (SQLite's NOTHING).
    labelled = expression.label(sa.sql.quoted_name(label, quote=True))
    labelled.nullable = True  # what ordering by it (grouped aggregates) asks
    return labelled


def _columns_and_embeds(
    table: sa.Table, items: tuple[str | EmbedItem, ...]
) -> tuple[tuple[sa.Column[Any], ...], list[EmbedItem]]:
    columns: list[sa.Column[Any]] = []
    embeds = []
    for item in items:
        if isinstance(item, EmbedItem):
            embeds.append(item)
        elif item == "*":
            columns += describe(table).star
        else:
            columns.append(_selected(table, item))
    keys = [embed.key for embed in embeds]
    clash = {*keys} & {str(c.name) for c in columns} or len(set(keys)) != len(keys)
    if clash:
        raise BadRequest("two items of a select have one name; give one an alias", "select")
    return tuple(dict.fromkeys(columns)), embeds


def parse_select(table: sa.Table, text: str) -> tuple[tuple[sa.Column[Any], ...], list[EmbedItem]]:
    """The columns a select asks of ``table``, and what it embeds."""
    return _columns_and_embeds(table, parse_select_items(text))


def resolve_embed(
    parent: Description,
    item: EmbedItem,
    params: MultiDict,
    prefix: str,
    max_limit: int,
    aggregates: bool,
) -> Embed:
    """What ``item`` embeds in ``parent``'s rows, with the parameters named
    after it (``city.city=like.A*``, ``city.order=...``, ``city.limit=3``,
    ``city.offset=3``). With aggregates (``city(count())``, where
    ``aggregates`` allows them), its rows are grouped per parent row by its
    other columns."""
    links = parent.links.get(item.name, [])
    if item.hint is not None:
        links = [link for link in links if item.hint in link.hints]
    if not links:
        hint = "" if item.hint is None else f" by '{item.hint}'"
        message = f"'{item.name}' is not related to '{parent.name}'{hint}"
        raise BadRequest(message, "select", "PGRST200")  # PostgREST's: no such relationship
    if len(links) > 1:
        choices = [f"{item.name}!{link.hints[0]}" for link in links]
        raise AmbiguousEmbed(
            f"'{item.name}' is related to '{parent.name}' in more than one way: "
            f"name one, as {', '.join(choices)}",
            choices,
        )
    (link,) = links
    target = link.target.table
    columns, nested = _columns_and_embeds(target, item.items)
    path = f"{prefix}{item.key}."
    embeds = tuple(
        resolve_embed(link.target, n, params, path, max_limit, aggregates) for n in nested
    )
    own = _own_parameters(params, path, {e.key for e in embeds})
    order_text = single_value(own, "order")
    order = tuple(parse_order(target, order_text) if order_text is not None else ())
    limit = capped_limit(own, path, max_limit)
    offset = whole_number(own, path, "offset") or 0
    group_by = None
    if any(is_aggregate(column) for column in columns):
        refuse_unless_allowed(columns, aggregates)
        if embeds or limit is not None or offset:
            message = f"an embed of aggregates ('{item.key}') takes no embeds, limit or offset"
            raise BadRequest(message, parameter="select")
        group_by = tuple(column for column in columns if not is_aggregate(column))
        order = tuple(grouped_order(group_by, list(order), path + "order"))
    filters = tuple(
        parse_filter_parameter(target, name, text, path)
        for name, text in own.items()
        if name not in ("order", "limit", "offset")
    )
    embed = Embed(
        item.key,
        link,
        columns,
        embeds,
        filters,
        order,
        limit,
        item.inner,
        spread=item.spread,
        offset=offset,
        group_by=group_by,
    )
    check_names(columns, [], embeds)  # a spread's names among its own
    return embed


def _own_parameters(params: MultiDict, prefix: str, nested: set[str]) -> MultiDict:
    """The parameters under ``prefix`` (with it taken off) but for those of nested embeds."""
    own = MultiDict()
    for name, text in params.items():
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            if rest.partition(".")[0] not in nested or "." not in rest:
                own.add(rest, text)
    return own


def check_names(
    columns: tuple[Any, ...], order: list[OrderItem], embeds: tuple[Embed, ...]
) -> None:
    """A row holds one value per name: an item (``alias:...``, ``col::text``,
    ``data->>k``) may not take the name of another item. One named as a
    column the statement reads besides (``id::text``, ordered by ``id``) is
    read under another name (``sql.statements.read_as``)."""
    selected = {id(column) for column in columns}  # an item ordered by is read once
    # Order keys the cursor reads from the row. The columns embeds join on
    # are not among them: every join value is taken before any embed joins
    # the row, so a spread may take such a name (``...language(*)``, whose
    # language_id the row reads to join it).
    read = {str(item.column.name) for item in order if id(item.column) not in selected}
    seen: set[str] = set()
    for column in columns:
        name = str(column.name)
        if name in seen:
            message = f"'{name}' names two things this query reads; give one an alias"
            raise BadRequest(message, parameter="select")
        seen.add(name)
    # A spread's members join the row: none may take the name of an item or
    # of an order key.
    seen |= read | {embed.key for embed in embeds if not embed.spread}
    for embed in embeds:
        if embed.spread:
            for name in shown_names(embed.columns, embed.embeds):
                if name in seen:
                    message = f"'{name}' of ...{embed.key} names two things; give one an alias"
                    raise BadRequest(message, parameter="select")
                seen.add(name)
