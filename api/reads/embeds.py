"""Embedded resources (``select=*,name(...)``): the rows of each embed for a
whole page at once, one statement per embed, nested embeds likewise.

A page of 50 films with their actors costs the page's statement and one
more, whatever the page's size: never a statement per row.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from api.querystring import Embed, OrderItem
from api.reads.compiled import Row
from api.sql.statements import (
    EMBED_LIMIT,
    PARENTS,
    EmbedShape,
    embed_statement,
    filter_shapes,
    parent_label,
)


def embed_rows(connection: Connection, rows: list[Row], embeds: tuple[Embed, ...]) -> None:
    """Add each embed to each of ``rows`` (in place), as its key: an object
    (or null) for a row it points at, else an array."""
    for embed in embeds:
        _embed_one(connection, rows, embed)


def _shape(embed: Embed) -> EmbedShape:
    target = embed.link.target
    order = list(embed.order)
    ordered = {item.column for item in order}
    order += [item for item in _key_order(target.key) if item.column not in ordered]
    joins = (column for nested in embed.embeds for column in nested.link.near)
    columns = tuple(dict.fromkeys((*embed.columns, *joins)))
    return EmbedShape(
        embed.link, columns, filter_shapes(embed.filters), tuple(order), embed.limit is not None
    )


def _key_order(key: tuple[Any, ...]) -> list[OrderItem]:
    return [OrderItem(column, False, False) for column in key]


def _embed_one(connection: Connection, rows: list[Row], embed: Embed) -> None:
    near = [str(column.name) for column in embed.link.near]
    keys = {tuple(row[name] for name in near) for row in rows}
    keys = {key for key in keys if None not in key}
    found: dict[tuple[Any, ...], list[Row]] = {}
    if keys:
        statement = embed_statement(_shape(embed))
        parameters = statement.parameters(embed)
        parameters[PARENTS] = [key[0] for key in keys] if len(near) == 1 else list(keys)
        if embed.limit is not None:
            parameters[EMBED_LIMIT] = embed.limit
        result = connection.execute(statement.statement, parameters)
        names = list(map(str, result.keys()))
        # zip(strict=True) would check what the statement guarantees, at a cost per row.
        children = [dict(zip(names, values, strict=False)) for values in result.all()]
        embed_rows(connection, children, embed.embeds)
        shown = [str(column.name) for column in embed.columns] + [e.key for e in embed.embeds]
        labels = [parent_label(i) for i in range(len(near))]
        for child in children:
            parent = tuple(child[label] for label in labels)
            found.setdefault(parent, []).append({name: child[name] for name in shown})
    one = embed.link.kind == "one"
    for row in rows:
        matches = found.get(tuple(row[name] for name in near), [])
        row[embed.key] = (matches[0] if matches else None) if one else matches
