"""``order=``: columns (or JSON paths) with directions and NULL placement,
and the tie-break that makes every order total."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from api.collections import Link, describe, of_own_alias
from api.columns import mapping
from api.errors import BadRequest
from api.names import split_name, split_outside_quotes
from api.querystring.filters import column_named


@dataclass(frozen=True)
class OrderItem:
    column: sa.Column
    descending: bool
    nulls_first: bool

    @property
    def spec(self) -> str:
        direction = "desc" if self.descending else "asc"
        nulls = "nullsfirst" if self.nulls_first else "nullslast"
        return f"{self.column.name}.{direction}.{nulls}"


# order=rel(column): a column of the row a foreign key points at (PostgREST's
# ordering by a to-one embed).
EMBEDDED_COLUMN = re.compile(r"([A-Za-z]\w*)(?:!(\w+))?\(([^()]+)\)\Z", re.ASCII)


def parse_order(table: sa.Table, text: str) -> list[OrderItem]:
    items, seen = [], set()
    for part in split_outside_quotes(text, ","):
        name, dot, rest = split_name(part.strip(), ".")
        modifiers = rest.split(".") if dot else []
        embedded = EMBEDDED_COLUMN.match(name)
        if embedded:
            column = _embedded_column(table, *embedded.groups())
        else:
            column = column_named(table, name, "order")
        if not mapping(column).orderable:
            kind = mapping(column).kind
            raise BadRequest(f"'{name}' holds {kind} and cannot be ordered by", parameter="order")
        if name in seen:
            raise BadRequest(f"'{name}' appears twice in order", parameter="order")
        seen.add(name)
        descending, nulls_first = False, None
        for modifier in modifiers:
            if modifier in ("asc", "desc"):
                descending = modifier == "desc"
            elif modifier in ("nullsfirst", "nullslast"):
                nulls_first = modifier == "nullsfirst"
            else:
                raise BadRequest(
                    f"unknown order modifier '{modifier}'; use asc, desc, nullsfirst, nullslast",
                    parameter="order",
                )
        if nulls_first is None:  # as PostgreSQL and PostgREST do
            nulls_first = descending
        items.append(OrderItem(column, descending, nulls_first))
    return items


def _embedded_column(table: sa.Table, relation: str, hint: str | None, name: str) -> Any:
    """``relation(name)``: the column ``name`` of the one row that
    ``table``'s foreign key to the collection ``relation`` points at; with
    several such keys, ``relation!hint(name)`` names one, as in a select."""
    links = [
        link
        for link in describe(table).links.get(relation, [])
        if link.kind == "one" and (hint is None or hint in link.hints)
    ]
    if len(links) != 1:
        what = "no foreign key" if not links else "more than one foreign key"
        raise BadRequest(
            f"'{relation}({name})': {table.name} has {what} to {relation}; order by a "
            "column of the row one foreign key points at (relation!hint(column) names one)",
            parameter="order",
        )
    column = links[0].target.table.columns.get(name)
    if column is None:
        raise BadRequest(f"'{name}' is not a column of {relation}", parameter="order")
    spelled = f"{relation}!{hint}({name})" if hint else f"{relation}({name})"
    return _referred_value(links[0], column, spelled)


@lru_cache(maxsize=1024)
def _referred_value(link: Link, column: sa.Column[Any], label: str) -> Any:
    """The value of ``column`` in the row ``link`` points at, as a labelled
    scalar subquery; made once per spelling, so that statements stay cached."""
    adapt = of_own_alias(link)
    joined = [adapt(far) == near for near, far in zip(link.near, link.far, strict=True)]
    value: Any = sa.select(adapt(column)).where(*joined).scalar_subquery().label(label)
    value.nullable = True  # no row pointed at: NULL
    return value


def may_tie(values: tuple[Any, ...], others: tuple[Any, ...]) -> bool:
    """Whether two rows' values of the columns of an order may be equal as
    the database compares them: equal, or text that a collation may equate
    (alike but for case and trailing spaces; or not ASCII, whose
    equivalences, such as accents, Python does not know)."""
    return all(
        value == other
        or (
            isinstance(value, str)
            and isinstance(other, str)
            and (
                not (value.isascii() and other.isascii())
                or value.rstrip(" ").casefold() == other.rstrip(" ").casefold()
            )
        )
        for value, other in zip(values, others, strict=True)
    )


def tie_break(table: sa.Table) -> tuple[sa.Column[Any], ...]:
    """What makes an order total: the primary key; without one, every
    column that can be ordered by, which leaves rows alike in all of them
    in no order of their own: where such rows meet at a page's or a batch's
    end, the next goes on by offset, as no cursor can say which came last."""
    key = tuple(table.primary_key.columns)
    return key or tuple(column for column in table.columns if mapping(column).orderable)
