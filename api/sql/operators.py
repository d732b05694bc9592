"""PostgREST's operators that each database spells its own way: small
SQLAlchemy clauses, compiled per dialect.

Each clause keeps its operands and options in its cache key
(``_traverse_internals``), so that SQLAlchemy caches its statements and never
mistakes one for another.
"""

from __future__ import annotations

from typing import Any

import orjson
import regex
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal


class _Clause(ColumnElement[Any]):
    """A clause of SQL ``operands`` and hashable ``options``."""

    inherit_cache = True
    type: Any = sa.Boolean()
    _traverse_internals = (  # type: ignore[assignment]  # SQLAlchemy declares a list
        ("operands", InternalTraversal.dp_clauseelement_tuple),
        ("options", InternalTraversal.dp_plain_obj),
    )

    def __init__(self, *operands: Any, options: tuple[Any, ...] = ()) -> None:
        self.operands = tuple(
            sa.sql.coercions.expect(sa.sql.roles.ExpressionElementRole, o) for o in operands
        )
        self.options = options


def _sql(element: _Clause, compiler: Any, **kw: Any) -> list[str]:
    return [compiler.process(operand, **kw) for operand in element.operands]


class CaseSensitiveLike(_Clause):
    """``column LIKE pattern``, case-sensitive as PostgreSQL's: MySQL compares
    the pattern as bytes (``LIKE BINARY``); SQLite's LIKE ignores case, so
    its GLOB (the same pattern, spelled for GLOB), which does not, must match too.
    Operands: column, pattern, glob."""

    inherit_cache = True


@compiles(CaseSensitiveLike)
def _like(element: CaseSensitiveLike, compiler: Any, **kw: Any) -> str:
    column, pattern, _ = _sql(element, compiler, **kw)
    # The dialect spells a backslash as the server's sql_mode reads it
    # (NO_BACKSLASH_ESCAPES takes '\\' as two characters, which ESCAPE refuses).
    escape = compiler.render_literal_value("\\", sa.String())
    return f"{column} LIKE BINARY {pattern} ESCAPE {escape}"


@compiles(CaseSensitiveLike, "sqlite")
def _like_sqlite(element: CaseSensitiveLike, compiler: Any, **kw: Any) -> str:
    column, pattern, glob = _sql(element, compiler, **kw)
    return f"({column} LIKE {pattern} ESCAPE '\\' AND {column} GLOB {glob})"


class JsonContains(_Clause):
    """JSON holding (cs) or held by (cd) a JSON array or object, or a JSON
    array sharing elements with one (ov): MySQL's JSON_CONTAINS and
    JSON_OVERLAPS; on SQLite, ``json_contains`` (registered on each
    connection by ``api.db``) and sets of json_each. Operands: column, JSON
    text; options: (operator,)."""

    inherit_cache = True


@compiles(JsonContains)
def _json_contains(element: JsonContains, compiler: Any, **kw: Any) -> str:
    column, value = _sql(element, compiler, **kw)
    (operator,) = element.options
    if operator == "cs":
        return f"JSON_CONTAINS({column}, {value})"
    if operator == "cd":
        return f"JSON_CONTAINS({value}, {column})"
    return f"JSON_OVERLAPS({column}, {value})"


@compiles(JsonContains, "sqlite")
def _json_contains_sqlite(element: JsonContains, compiler: Any, **kw: Any) -> str:
    column, value = _sql(element, compiler, **kw)
    (operator,) = element.options
    if operator == "ov":
        return (
            f"EXISTS (SELECT 1 FROM json_each({column}) AS e "
            f"WHERE e.value IN (SELECT value FROM json_each({value})))"
        )
    outer, inner = (column, value) if operator == "cs" else (value, column)
    return f"json_contains({outer}, {inner})"


def json_contains(target: str | None, candidate: str | None) -> bool | None:
    """MySQL's JSON_CONTAINS (and PostgreSQL's ``@>``) on JSON texts, for
    SQLite, which has none: an object holds another whose every member it
    holds; an array holds each element, or each element of an array, that
    one of its own elements holds; a scalar, itself."""
    if target is None or candidate is None:
        return None
    try:
        return _holds(orjson.loads(target), orjson.loads(candidate))
    except orjson.JSONDecodeError:
        return None


def _holds(target: Any, candidate: Any) -> bool:
    if isinstance(target, dict):
        return isinstance(candidate, dict) and all(
            key in target and _holds(target[key], value) for key, value in candidate.items()
        )
    if isinstance(target, list):
        wanted = candidate if isinstance(candidate, list) else [candidate]
        return all(any(_holds(have, want) for have in target) for want in wanted)
    return not isinstance(candidate, dict | list) and target == candidate


class InUtf8mb4(_Clause):
    """A column's text as utf8mb4, which a value with a character its own
    character set has not (an emoji in utf8mb3) can be compared with: MySQL
    refuses to compare the column itself with one (1267, "Illegal mix of
    collations")."""

    type = sa.String()


@compiles(InUtf8mb4)
def _in_utf8mb4(element: InUtf8mb4, compiler: Any, **kw: Any) -> str:
    (column,) = _sql(element, compiler, **kw)
    return f"CONVERT({column} USING utf8mb4)"


@compiles(InUtf8mb4, "sqlite")
def _in_utf8mb4_sqlite(element: InUtf8mb4, compiler: Any, **kw: Any) -> str:
    (column,) = _sql(element, compiler, **kw)
    return column


class Match(_Clause):
    """MySQL's full-text search: ``MATCH (the index's columns) AGAINST (...)``,
    in boolean mode (PostgREST's fts, phfts, wfts) or natural language
    (plfts): its relevance, above 0 for a row that matches. Operands: the
    index's columns, then the search; options: (natural,)."""

    inherit_cache = True
    type = sa.Float()


@compiles(Match)
def _match(element: Match, compiler: Any, **kw: Any) -> str:
    *columns, search = _sql(element, compiler, **kw)
    mode = "NATURAL LANGUAGE" if element.options[0] else "BOOLEAN"
    return f"MATCH ({', '.join(columns)}) AGAINST ({search} IN {mode} MODE)"


class Regexp(_Clause):
    """``column REGEXP pattern``, as PostgREST's match (case-sensitive) and
    imatch: MariaDB's and MySQL's REGEXP follow the collation (mostly
    case-insensitive), so the case is set in the pattern; SQLite's is
    Python's ``re`` (registered by SQLAlchemy), case-sensitive. Operands:
    column, pattern; options: (case_sensitive,)."""

    inherit_cache = True


@compiles(Regexp)
def _regexp(element: Regexp, compiler: Any, **kw: Any) -> str:
    column, pattern = _sql(element, compiler, **kw)
    flag = "(?-i)" if element.options[0] else "(?i)"
    return f"{column} REGEXP CONCAT('{flag}', {pattern})"


# Seconds one SQLite REGEXP may take on one value; then the statement fails
# (400). Python's re, which SQLAlchemy registers as SQLite's REGEXP, holds
# the GIL for as long as a match runs, and a pattern that backtracks without
# end ("^(a+)+$" on "aaaa...!") froze the whole worker, liveness included.
# The regex module bounds a match in time and lets go of the GIL meanwhile.
# MariaDB's REGEXP is PCRE2, bounded by its own limits and the statement
# timeout.
REGEXP_SECONDS = 0.1


def regexp(pattern: str | None, value: str | None) -> bool | None:
    """SQLite's REGEXP: ``value`` holds a match of ``pattern`` (Python's re
    syntax); a match that runs past ``REGEXP_SECONDS`` raises TimeoutError."""
    if pattern is None or value is None:
        return None
    return regex.search(pattern, value, timeout=REGEXP_SECONDS, concurrent=True) is not None


@compiles(Regexp, "sqlite")
def _regexp_sqlite(element: Regexp, compiler: Any, **kw: Any) -> str:
    column, pattern = _sql(element, compiler, **kw)
    if element.options[0]:
        return f"{column} REGEXP {pattern}"
    return f"{column} REGEXP ('(?i)' || {pattern})"


def set_contains(column: Any, operator: str, mask: Any) -> ColumnElement[bool]:
    """A SET holding (cs), held by (cd) or sharing (ov) the members whose
    bits are ``mask``: MySQL gives a SET's bits as its number (``col + 0``)."""
    bits = column.op("+")(0)
    if operator == "cs":
        return bits.op("&")(mask) == mask
    if operator == "cd":
        return bits.op("|")(mask) == mask
    return bits.op("&")(mask) != 0


class _CastInTime(sa.TypeDecorator[Any]):
    """The type of a select's cast to a date or a time (``::date``), which
    SQLite spells with its date functions (``_cast_on_sqlite``). A value
    that is no date reads as null, as MariaDB's cast of it gives: SQLite's
    ``date(5)`` is a Julian day, which SQLAlchemy's reading of a date
    refused (a 500)."""

    cache_ok = True

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        read = self.impl_instance.dialect_impl(dialect).result_processor(dialect, coltype)
        if read is None:
            return None

        def read_or_null(value: Any) -> Any:
            try:
                return read(value)
            except (TypeError, ValueError):
                return None

        return read_or_null


class DateCast(_CastInTime):
    impl = sa.Date
    cache_ok = True


class TimeCast(_CastInTime):
    impl = sa.Time
    cache_ok = True


class TimestampCast(_CastInTime):
    impl = sa.DateTime
    cache_ok = True


# SQLite has no date or time types: CAST(x AS DATE) takes DATE's numeric
# affinity ('2006-02-15 04:34:33' becomes 2006). Its functions read the text.
SQLITE_TIME_FUNCTIONS = {DateCast: "date", TimeCast: "time", TimestampCast: "datetime"}


@compiles(sa.Cast, "sqlite")
def _cast_on_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    function = SQLITE_TIME_FUNCTIONS.get(type(element.type))
    if function is None:
        return str(compiler.visit_cast(element, **kw))
    return f"{function}({compiler.process(element.clause, **kw)})"
