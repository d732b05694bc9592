"""PostgREST's aggregates in a select (``count()``, ``total:amount.sum()::int``):
the labelled expressions, what they take, the order of their groups, and
the embeds that may sit beside them (joined in their statement)."""

from __future__ import annotations

import re
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from api.columns import DECIMAL, INTEGER, MYSQL_BOOLEAN, NUMBER, YEAR, mapping
from api.errors import AggregatesDisabled, BadRequest
from api.querystring.ordering import OrderItem

if TYPE_CHECKING:
    from api.querystring.select import Embed

# PostgREST's aggregate: ``alias:input.function()::cast``, each part but the function optional.
AGGREGATE = re.compile(
    r"(?:(?P<alias>[^:]+):(?!:))?(?:(?P<input>.+)\.)?"
    r"(?P<function>avg|count|max|min|sum)\(\)(?:::(?P<cast>[a-z]+))?\Z"
)


class Aggregate(sa.Label[Any]):
    """A labelled aggregate of a select: a class of its own, so that telling
    one from a column is an isinstance, not a failed attribute lookup
    (SQLAlchemy's ``__getattr__`` raises, which costs on every page)."""

    inherit_cache = True


class LegacyCount(Aggregate):
    """``count`` without parentheses (``cities(count)``, as supabase-js's
    guides write it): PostgREST's count from before its aggregates, which it
    answers whether they are enabled or not."""

    inherit_cache = True


def is_aggregate(item: Any) -> bool:
    return isinstance(item, Aggregate)


def refuse_unless_allowed(columns: tuple[Any, ...], aggregates: bool) -> None:
    """PGRST123 for an aggregate while ``api.aggregates_enabled`` is off
    (a legacy ``count`` is no aggregate to it)."""
    if not aggregates and any(
        is_aggregate(column) and not isinstance(column, LegacyCount) for column in columns
    ):
        raise AggregatesDisabled()


def spreads_aggregates(embed: Embed) -> bool:
    """A spread of the row a foreign key points at, holding aggregates
    (``...customers(joined_date.max())``): as in PostgREST, a spread's
    columns are the parent's, so its aggregates run over the parent's rows."""
    return embed.spread and embed.link.kind == "one" and embed.group_by is not None


def check_joined(embed: Embed) -> None:
    """A 400 unless ``embed`` can sit beside aggregates: read in their
    statement, joined, its columns grouped by (a spread's aggregates
    aggregated), it must be the one row a foreign key points at, with
    columns only."""
    if embed.link.kind != "one":
        message = (
            f"aggregates combine with embeds of the row a foreign key points at; "
            f"'{embed.key}' holds many rows"
        )
        raise BadRequest(message, parameter="select")
    if embed.embeds or embed.order or embed.limit is not None or embed.offset:
        message = f"'{embed.key}', beside aggregates, takes no embeds, order, limit or offset"
        raise BadRequest(message, parameter="select")
    if not embed.spread and embed.group_by is not None:
        message = (
            f"'{embed.key}' holds aggregates beside the select's own: "
            f"spread it (...{embed.key}) to aggregate over the rows"
        )
        raise BadRequest(message, parameter="select")


def grouped_order(
    group_by: tuple[Any, ...], order: list[OrderItem], parameter: str
) -> list[OrderItem]:
    """``order`` of rows grouped by ``group_by``: only by those columns (an
    alias orders as its expression); a 400 naming ``parameter`` else."""
    by_sql = {_sql_of(column): column for column in group_by}
    kept = []
    for item in order:
        grouping = by_sql.get(_sql_of(item.column))
        if grouping is None:
            message = f"'{item.column.name}' is not a column the aggregates are grouped by"
            raise BadRequest(message, parameter=parameter)
        kept.append(replace(item, column=grouping))
    return kept


def _sql_of(column: Any) -> str:
    """An expression's SQL, its values written in: what tells two spellings
    of one expression (``data->>k`` in order and ``alias:data->>k``) alike."""
    expression = column.element if isinstance(column, sa.Label) else column
    return str(expression.compile(compile_kwargs={"literal_binds": True}))


def aggregate_of(
    selected: Any,
    given: str | None,
    function: str,
    cast: sa.types.TypeEngine[Any] | None,
    alias: str | None,
) -> Any:
    """``function`` of ``selected`` (None for ``count()``, spelled ``given``),
    its output cast to ``cast``, labelled with ``alias``, else the
    function's name; a 400 where sum() or avg() would add what holds no
    number."""
    if function in ("sum", "avg") and not _numeric(selected):
        name = (given or "").strip()
        message = (
            f"{function}() adds numbers, and '{name}' holds none: "
            f"cast it to one ({name}::numeric.{function}()) if it holds digits"
        )
        raise BadRequest(message, parameter="select")
    return _aggregate_expression(selected, function, cast, (alias or function).strip())


# What sum() and avg() take: numbers, and MySQL's BOOLEAN, a TINYINT (a
# sum counts its trues). MySQL would add anything (text as 0, a DATETIME
# as the number its digits spell, an ENUM by its position); PostgreSQL,
# and so PostgREST, refuses every other type.
SUMMED = frozenset({INTEGER, MYSQL_BOOLEAN, DECIMAL, NUMBER, YEAR})


def _numeric(expression: Any) -> bool:
    """Whether ``expression`` (a column, or a cast of one or of a JSON path) holds numbers."""
    if isinstance(expression, sa.Column):
        return mapping(expression) in SUMMED
    return isinstance(expression, sa.Cast) and isinstance(expression.type, sa.Numeric | sa.Integer)


@lru_cache(maxsize=1024)
def _aggregate_expression(
    selected: Any, function: str, cast: sa.types.TypeEngine[Any] | None, label: str
) -> Any:
    """Made once per spelling, as ``_expression``: statements stay cached."""
    arguments = () if selected is None else (selected,)
    expression: Any = getattr(sa.func, function)(*arguments)
    if cast is not None:
        expression = sa.cast(expression, cast)
    labelled: Any = Aggregate(sa.sql.quoted_name(label, quote=True), expression)
    labelled.nullable = True
    return labelled


LEGACY_COUNT: Any = LegacyCount(sa.sql.quoted_name("count", quote=True), sa.func.count())
LEGACY_COUNT.nullable = True  # as every aggregate: what ordering by it asks
