"""Embedded resources (``select=*,name(...)``): the rows of each embed for a
whole page at once, one statement per embed, nested embeds likewise.

A page of 50 films with their actors costs the page's statement and one
more, whatever the page's size: never a statement per row. An answer's
embedded rows are held, and written, at once: at most ``MAX_EMBEDDED_ROWS``
of them, counted as written. A row embedded under several parents is read
once but written under each: a page of payments, each with its staff
member and all of that member's payments, reads a few thousand rows and
would write millions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from api.errors import BadRequest
from api.querystring import Embed, OrderItem, shown_names
from api.sql import STATEMENT_CACHE_SIZE
from api.sql.compiled import CompiledSelect, Row
from api.sql.conditions import filter_shapes
from api.sql.keys import loose, padded_keys
from api.sql.statements import (
    EMBED_CAP,
    EMBED_LIMIT,
    EMBED_OFFSET,
    EmbedShape,
    embed_statement,
    joined_absent,
    joined_label,
    parent_label,
    read_as,
)

# The embedded rows an answer may hold, and an embed read. Without a bound,
# a page of parents with many children each (customers and their payments)
# is held in the worker, and written, at once.
MAX_EMBEDDED_ROWS = 50_000


def embed_rows(connection: Connection, rows: list[Row], embeds: tuple[Embed, ...]) -> list[int]:
    """Add each embed to each of ``rows`` (in place), as its key: an object
    (or null) for a row it points at, else an array. Each row's join values
    are taken first: an embed named by its foreign key column
    (``country_id(country)``) answers in that column's place. Answers how
    many embedded rows each of ``rows`` now holds, nested ones included; a
    400 when ``rows`` would hold more than ``MAX_EMBEDDED_ROWS``."""
    joins = [[_join_value(row, embed) for row in rows] for embed in embeds]
    held = [0] * len(rows)
    for embed, values in zip(embeds, joins, strict=True):
        held = [
            a + b for a, b in zip(held, _embed_one(connection, rows, values, embed), strict=True)
        ]
        if sum(held) > MAX_EMBEDDED_ROWS:
            raise _too_many(embed)
    return held


def fold_joined(rows: list[Row], embeds: tuple[Embed, ...]) -> None:
    """Each embed of a grouped page (read in its statement, ``_joins``) as
    an object in each of ``rows`` (in place), null where it found no row; a
    spread's columns are the row's already."""
    for index, embed in enumerate(embeds):
        if embed.spread:
            continue
        names = [(str(c.name), joined_label(index, i)) for i, c in enumerate(embed.columns)]
        absent = joined_absent(index)
        for row in rows:
            members = {name: row.pop(label) for name, label in names}
            row[embed.key] = None if row.pop(absent) else members


def _join_value(row: Row, embed: Embed) -> Any:
    """The value of ``row``'s columns that ``embed`` joins on: one, or a tuple."""
    near = embed.link.near
    if len(near) == 1:
        return row[near[0].name]
    values = tuple(row[column.name] for column in near)
    return None if None in values else values


def _shape(embed: Embed) -> EmbedShape:
    target = embed.link.target
    order = list(embed.order)
    ordered = {item.column for item in order}
    if embed.group_by is None:  # groups have no key to break ties by
        order += [item for item in _key_order(target.key) if item.column not in ordered]
    joins = (column for nested in embed.embeds for column in nested.link.near)
    columns = tuple(dict.fromkeys((*embed.columns, *joins)))
    return EmbedShape(
        embed.link,
        columns,
        filter_shapes(embed.filters),
        tuple(order),
        embed.limit is not None or embed.offset > 0,
        embed.group_by,
    )


def _key_order(key: tuple[Any, ...]) -> list[OrderItem]:
    return [OrderItem(column, False, False) for column in key]


def _embed_one(
    connection: Connection, rows: list[Row], joins: list[Any], embed: Embed
) -> list[int]:
    """``embed`` in each of ``rows``; how many rows it put in each, nested ones included."""
    width = len(embed.link.near)
    keys = list(set(joins) - {None})
    found: dict[Any, list[Row]] = {}
    held: dict[Any, list[int]] = {}  # of each row in found: 1, and the rows it holds
    if keys:
        shape = _shape(embed)
        size, parameters = padded_keys(keys)
        statement = embed_statement(shape, size)
        parameters.update(statement.parameters(embed))
        if shape.limited:  # the ranks kept: after the offset, up to its limit
            parameters[EMBED_OFFSET] = embed.offset
            last = embed.offset + (embed.limit if embed.limit is not None else MAX_EMBEDDED_ROWS)
            parameters[EMBED_LIMIT] = last
        parameters[EMBED_CAP] = MAX_EMBEDDED_ROWS + 1
        read = _compiled(shape, size, connection.dialect)
        children = read.dicts(connection, parameters)
        if len(children) > MAX_EMBEDDED_ROWS:
            raise _too_many(embed)
        nested = embed_rows(connection, children, embed.embeds)
        renamed = read_as(shape.columns)
        homes = _homes(connection, embed, keys)
        _group(children, nested, embed, width, found, held, homes, renamed)
    one = embed.link.kind == "one"
    spread = shown_names(embed.columns, embed.embeds) if embed.spread else ()
    empty = None if one or embed.group_by != () else _over_no_rows(embed)
    # What each key's matches hold, once a key: many rows may share a key.
    holds = {key: counts[0] if one else sum(counts) for key, counts in held.items()}
    placed = []
    for row, key in zip(rows, joins, strict=True):
        matches = found.get(key)
        if matches is None:
            matches = [] if empty is None else [dict(empty)]
        placed.append(holds.get(key, len(matches)))
        if not spread:
            row[embed.key] = (matches[0] if matches else None) if one else matches
        elif one:  # its members in the row, null without a match
            row.update({name: matches[0][name] if matches else None for name in spread})
        else:  # each member as an array of the matches' values (PostgREST 13's to-many spread)
            row.update({name: [match[name] for match in matches] for name in spread})
    return placed


def _over_no_rows(embed: Embed) -> Row:
    """What aggregates alone (``city(count())``) give a parent row without
    a match, as PostgreSQL's over no rows: a count of 0, else null."""
    row = {}
    for column in embed.columns:
        expression = column.element
        cast = expression.type if isinstance(expression, sa.Cast) else None
        function = expression.clause if cast is not None else expression
        value = 0 if function.name == "count" else None
        row[str(column.name)] = "0" if value == 0 and isinstance(cast, sa.String) else value
    return row


def _too_many(embed: Embed) -> BadRequest:
    key = embed.key
    held = " with the rows embedded in it" if embed.embeds else ""
    return BadRequest(
        f"'{key}'{held} would embed more than {MAX_EMBEDDED_ROWS} rows in one answer: "
        f"ask for fewer rows (limit), filter the embed ({key}.column=...) "
        f"or limit it per row ({key}.limit=...)",
        parameter="select",
    )


def _group(
    children: list[Row],
    nested: list[int],
    embed: Embed,
    width: int,
    found: dict[Any, list[Row]],
    held: dict[Any, list[int]],
    homes: Callable[[Any], list[Any]] | None,
    renamed: dict[str, str],
) -> None:
    """Each child row under its parent's key (``homes``: the keys asked for
    that the database equates with the child's, where they are others),
    with only what it shows (``renamed``: what was read under another name);
    beside it in ``held``, 1 and the count of ``nested`` rows it holds."""
    shown = shown_names(embed.columns, embed.embeds)
    labels = [parent_label(i) for i in range(width)]
    extra = bool(renamed) or (len(children[0]) != len(shown) + width if children else False)
    for child, holds in zip(children, nested, strict=True):
        if width == 1:
            parent = child.pop(labels[0])
        else:
            parent = tuple(child.pop(label) for label in labels)
        if extra:  # columns read only for nested embeds to join on
            child = {name: child[renamed.get(name, name)] for name in shown}
        for home in homes(parent) if homes is not None else (parent,):
            found.setdefault(home, []).append(child)
            held.setdefault(home, []).append(1 + holds)


def _homes(
    connection: Connection, embed: Embed, asked: list[Any]
) -> Callable[[Any], list[Any]] | None:
    """Where MySQL's equality of the join's text is not Python's (its
    collations ignore case and accents; trailing spaces), the keys asked for
    that a child's value belongs to: its own, if asked, and others the
    database equates with it (``usa`` and ``USA``). Each spelling ``loose``
    would equate is put to the database; no other is. None where ``==`` is
    the database's equality."""
    far = embed.link.far
    text = len(far) == 1 and isinstance(far[0].type, sa.String)
    if connection.dialect.name != "mysql" or not text:
        return None
    loosely: dict[Any, list[Any]] = {}
    for key in asked:
        loosely.setdefault(loose(key), []).append(key)
    asked_exactly = set(asked)

    def homes(value: Any) -> list[Any]:
        own = [value] if value in asked_exactly else []
        others = [k for k in loosely.get(loose(value), ()) if k != value]
        return own + [k for k in others if _equal(connection, far[0], value, k)]

    return functools.lru_cache(maxsize=None)(homes)


def _equal(connection: Connection, column: sa.Column[Any], a: str, b: str) -> bool:
    """Whether the database finds ``a`` and ``b`` one value of ``column``:
    a row of its table holds both (the row of one of them, which exists)."""
    statement = _both_statement(column)
    return connection.execute(statement, {"a": a, "b": b}).first() is not None


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def _both_statement(column: sa.Column[Any]) -> sa.Select[Any]:
    holds = (column == sa.bindparam("a"), column == sa.bindparam("b"))
    return sa.select(sa.literal(1)).select_from(column.table).where(*holds).limit(1)


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def _compiled(shape: EmbedShape, size: int, dialect: Dialect) -> CompiledSelect:
    return CompiledSelect(embed_statement(shape, size).statement, dialect)
