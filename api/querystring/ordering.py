"""``order=``: columns (or JSON paths) with directions and NULL placement,
and the tie-break that makes every order total."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from api.columns import mapping
from api.errors import BadRequest
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


def parse_order(table: sa.Table, text: str) -> list[OrderItem]:
    items, seen = [], set()
    for part in text.split(","):
        name, *modifiers = part.strip().split(".")
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


def tie_break(table: sa.Table) -> tuple[sa.Column[Any], ...]:
    """What makes an order total: the primary key; without one, every
    column that can be ordered by (rows equal in all of them are alike)."""
    key = tuple(table.primary_key.columns)
    return key or tuple(column for column in table.columns if mapping(column).orderable)
