"""Filters in PostgREST's syntax: ``COLUMN=[not.]OPERATOR.VALUE``, the
logic trees of ``or=(...)`` and ``and=(...)``, and ``OPERATOR(any|all)``.

Each value is parsed by its column's type (``api.columns``); every list is
read in one pass, bounded, so that no query string can stall a worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
import sqlalchemy as sa

from api.columns import (
    ENUM,
    STRING,
    TAKES_TRUTH,
    enum_members_of_set,
    mapping,
    parse_compared,
)
from api.errors import BadRequest
from api.names import split_name, unquoted

COMPARISONS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "isdistinct"})
PATTERN_OPERATORS = frozenset({"like", "ilike", "match", "imatch"})
CONTAINMENT = frozenset({"cs", "cd", "ov"})
FULL_TEXT = frozenset({"fts", "plfts", "phfts", "wfts"})
OPERATORS = COMPARISONS | PATTERN_OPERATORS | CONTAINMENT | FULL_TEXT | {"in", "is"}


# is.VALUE: (the value, and whether it negates): is.not_null is not.is.null
IS_VALUES = {
    "null": (None, False),
    "not_null": (None, True),
    "unknown": (None, False),
    "true": (True, False),
    "false": (False, False),
}


LOGIC = ("or", "and")
# The parameters that hold logic, at the top or an embed's: or=(...), not.and=(...)
LOGIC_PARAMETERS = (*LOGIC, *(f"not.{word}" for word in LOGIC))


# PostgREST's operators this API refuses, and why (a 400 that says it).
NOT_HERE = dict.fromkeys(
    ("sl", "sr", "nxr", "nxl", "adj"), "needs range types, which MySQL/MariaDB do not have"
)


MAX_LOGIC_DEPTH = 8  # and(...) and or(...) within one another


@dataclass(frozen=True)
class Filter:
    column: sa.Column
    operator: str  # one of OPERATORS
    value: object
    negated: bool = False


@dataclass(frozen=True)
class Logic:
    """``or=(...)``, ``and=(...)``, nested, each item a Filter or a Logic."""

    operator: str  # "or" or "and"
    items: tuple  # of Filter or Logic
    negated: bool = False


def filters_signature(filters: tuple[Filter | Logic, ...]) -> list[Any]:
    return sorted(
        ("logic", f.operator, f.negated, orjson.dumps(filters_signature(f.items), default=str))
        if isinstance(f, Logic)
        else (f.column.name, f.operator, f.negated, orjson.dumps(f.value, default=str))
        for f in filters
    )


def column_named(table: sa.Table, name: str, parameter: str) -> sa.Column[Any]:
    """The column ``name`` names (``"a.b"``, quoted: ``api.names``),
    or the text at a JSON path (``data->>k``)."""
    column = table.columns.get(name)
    if column is None and name.startswith('"'):
        column = table.columns.get(unquoted(name))
    if column is None and "->" in name:
        base, *path = name.split("->")
        column = table.columns.get(unquoted(base))
        keys = tuple(key.lstrip(">") for key in path)
        if column is not None and isinstance(column.type, sa.JSON) and all(keys):
            return _json_text(column, keys, name)
        column = None
    if column is None:
        # PostgreSQL's undefined_column, which PostgREST passes on
        raise BadRequest(f"'{name}' is not a column of this table", parameter, "42703")
    return column


def json_element(column: sa.Column[Any], keys: tuple[str, ...]) -> Any:
    """The JSON at the path ``keys`` of ``column`` (a digit key is an index)."""
    path = tuple(int(key) if key.isdigit() else key for key in keys)
    return column[path[0] if len(path) == 1 else path]


@lru_cache(maxsize=1024)
def _json_text(column: sa.Column[Any], keys: tuple[str, ...], name: str) -> Any:
    """The text at a JSON path of ``column``, as a filter or an order reads it
    (``->`` and ``->>`` alike: PostgREST compares text); named as written,
    made once per spelling so that statements stay cached."""
    text: Any = sa.type_coerce(json_element(column, keys).as_string(), sa.String()).label(name)
    text.nullable = True  # what the order's NULL placement asks of a column
    return text


def parse_value(column: sa.Column[Any], text: str, parameter: str) -> Any:
    """``text`` as a value to compare ``column`` with (``api.columns``)."""
    try:
        return parse_compared(column, text)
    except (ValueError, OverflowError) as exc:
        message = f"'{text}' is not {exc}, as '{column.name}' needs"
        raise BadRequest(message, parameter=parameter) from None


MAX_IN_VALUES = 1000


def _parse_list(text: str, opening: str, closing: str, parameter: str) -> list[str]:
    """The items of ``(a,b)`` or ``{a,b}``, as ``in.(...)`` reads them."""
    if not (text.startswith(opening) and text.endswith(closing)) or len(text) < 2:
        raise BadRequest(f"expected a list in {opening}{closing}", parameter=parameter)
    return _in_list_items(text[1:-1], parameter)


def _logic_items(text: str, parameter: str) -> list[str]:
    """The items of a logic list, ``(a.eq.1,and(b.eq.2,c.in.(3,4)))``, each
    as written: split at the commas outside parentheses and outside the
    values PostgREST reads whole, quoted (``"a,b"``) or braced (``{a,b}``)."""
    if not (text.startswith("(") and text.endswith(")")) or len(text) < 2:
        raise BadRequest("expected a list in ()", parameter=parameter)
    items, depth, start, position, end = [], 0, 1, 1, len(text) - 1
    while position < end:
        char = text[position]
        if char in '"{' and text[position - 1] in ".(,":
            position = _past_whole_value(text, position, end)
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise BadRequest("a list has an unbalanced ')'", parameter=parameter)
        elif char == "," and depth == 0:
            items.append(text[start:position].strip())
            start = position + 1
            if len(items) > MAX_IN_VALUES:
                raise BadRequest(f"a list takes at most {MAX_IN_VALUES} items", parameter)
        position += 1
    if depth:
        raise BadRequest("a list has an unbalanced '('", parameter=parameter)
    items.append(text[start:end].strip())
    if not all(items):
        raise BadRequest("a list has an empty item", parameter=parameter)
    return items


def _past_whole_value(text: str, position: int, end: int) -> int:
    """Where a value that opens at ``position`` with a quote or a brace ends,
    if it is whole, as PostgREST's grammar reads it: a quoted value that the
    item's end follows (or, for an item's quoted name, a dot), or braces with
    no brace between. Otherwise the character is an ordinary one, and
    scanning goes on past it."""
    if text[position] == "{":
        braced = _BRACED.match(text, position, end)
        return position + 1 if braced is None else braced.end()
    quoted = _quoted(text, position + 1, end)
    if quoted is None:
        return position + 1
    ends = ",)." if text[position - 1] in "(," else ",)"  # a quoted name: "a,b".eq.1
    return quoted[1] if quoted[1] == end or text[quoted[1]] in ends else position + 1


_BRACED = re.compile(r"\{[^{}]*\}")  # stops at the next brace: linear


def _parse_in_list(column: sa.Column[Any], text: str, parameter: str) -> tuple[Any, ...]:
    if not (text.startswith("(") and text.endswith(")")):
        raise BadRequest("in. takes a list in parentheses: in.(a,b,c)", parameter=parameter)
    items = _in_list_items(text[1:-1], parameter)
    return tuple(parse_value(column, item, parameter) for item in items)


def _in_list_items(inner: str, parameter: str) -> list[str]:
    """The values of ``in.(...)``, comma-separated, as PostgREST reads them:
    double-quoted (a backslash escapes the next character) when the closing
    quote ends the item, otherwise bare and taken as written, quotes and all
    (postgrest-js quotes only values with a comma or a parenthesis); spaces
    around a value are dropped.

    One pass, each character looked at a bounded number of times: a parser
    that backtracks is a way to stall a worker with one query string.
    """
    items: list[str] = []
    position, end = 0, len(inner)
    if not inner.strip():
        raise BadRequest("in.() needs at least one value", parameter=parameter)
    while True:
        if len(items) == MAX_IN_VALUES:
            raise BadRequest(f"in.(...) takes at most {MAX_IN_VALUES} values", parameter=parameter)
        start = position
        while position < end and inner[position] in _SPACES:
            position += 1
        quoted = (
            _quoted(inner, position + 1, end) if inner[position : position + 1] == '"' else None
        )
        if quoted is not None:
            after = quoted[1]
            while after < end and inner[after] in _SPACES:
                after += 1
            if after < end and inner[after] != ",":
                quoted = None  # stray text after the quote: a bare value
        if quoted is not None:
            item, position = quoted[0], after
        else:
            comma = inner.find(",", start)
            position = end if comma < 0 else comma
            item = inner[start:position].strip(_SPACES)
        items.append(item)
        if position == end:
            return items
        position += 1  # past the comma
        if position == end:
            raise BadRequest("in.(...) ends with a comma", parameter=parameter)


_SPACES = " \t\r\n\f\v"


def _quoted(text: str, position: int, end: int) -> tuple[str, int] | None:
    """The value of a quoted item whose text starts at ``position``, and the
    position after its closing quote; None if no quote closes it before ``end``."""
    parts = []
    while True:
        match = _QUOTED_RUN.match(text, position, end)
        assert match is not None  # the pattern matches the empty string
        parts.append(match.group())
        position = match.end()
        if position >= end:
            return None
        if text[position] == '"':
            return "".join(parts), position + 1
        # a backslash: the next character is taken as it is
        if position + 1 >= end:
            return None
        parts.append(text[position + 1])
        position += 2


_QUOTED_RUN = re.compile(r'[^"\\]*')


def parse_filter(column: sa.Column[Any], text: str, parameter: str) -> Filter | Logic:
    negated = text.startswith("not.")
    if negated:
        text = text[4:]
    operator, dot, operand = text.partition(".")
    if not dot:
        raise BadRequest(f"a filter is OPERATOR.VALUE, e.g. {parameter}=eq.1", parameter=parameter)
    operator, quantifier = _quantified(operator, parameter)
    if quantifier is not None:  # eq(any).{a,b}: each value, ORed (any) or ANDed (all)
        values = _parse_list(operand, "{", "}", parameter)
        items = tuple(parse_filter(column, f"{operator}.{value}", parameter) for value in values)
        return Logic("or" if quantifier == "any" else "and", items, negated)
    if operator == "is":
        if operand not in IS_VALUES:
            message = "is. takes null, not_null, unknown, true or false"
            raise BadRequest(message, parameter=parameter)
        value, negates = IS_VALUES[operand]
        if value is not None and mapping(column) not in TAKES_TRUTH:
            raise BadRequest(f"'{column.name}' is not true/false", parameter=parameter)
        return Filter(column, "is", value, negated != negates)
    if operator == "in":
        return Filter(column, "in", _parse_in_list(column, operand, parameter), negated)
    if operator in CONTAINMENT:
        return Filter(column, operator, _contained(column, operator, operand, parameter), negated)
    if operator in FULL_TEXT:
        indexed = _full_text_index(column, parameter)
        search = f'"{operand}"' if operator == "phfts" else operand
        return Filter(column, operator, (search, indexed), negated)
    if operator in NOT_HERE:
        raise BadRequest(f"the operator '{operator}' {NOT_HERE[operator]}", parameter=parameter)
    if operator not in OPERATORS:
        raise BadRequest(
            f"unknown operator '{operator}'; use one of {', '.join(sorted(OPERATORS))}",
            parameter=parameter,
        )
    if not mapping(column).filterable:
        raise BadRequest(
            f"'{column.name}' holds JSON; only is.null and not.is.null filter it",
            parameter=parameter,
        )
    if operator in PATTERN_OPERATORS:
        if mapping(column) not in (STRING, ENUM):
            raise BadRequest(f"{operator} works on text columns only", parameter=parameter)
        if operator in ("match", "imatch"):
            return Filter(column, operator, operand, negated)
        # PostgREST's: '*' stands for '%', which is the same wildcard; '_' is one character.
        pattern = operand.replace("*", "%")
        if operator == "like":  # and GLOB's spelling of it, for SQLite's case-sensitive match
            return Filter(column, operator, (pattern, like_to_glob(pattern)), negated)
        return Filter(column, operator, pattern, negated)
    return Filter(column, operator, parse_value(column, operand, parameter), negated)


def _contained(column: sa.Column[Any], operator: str, operand: str, parameter: str) -> Any:
    """The value of cs, cd and ov: for a SET, ``{a,b}`` as the bits of its
    members; for JSON, JSON text (``_json_operand``)."""
    if mapping(column).kind == "set":
        members = enum_members_of_set(column)
        items = _parse_list(operand, "{", "}", parameter) if operand != "{}" else []
        unknown = [item for item in items if item not in members]
        if unknown:
            raise BadRequest(f"'{unknown[0]}' is not a member of '{column.name}'", parameter)
        return sum(1 << members.index(item) for item in items)
    if isinstance(column.type, sa.JSON):
        return _json_operand(operator, operand, parameter)
    raise BadRequest(f"cs, cd and ov work on SET and JSON columns, not '{column.name}'", parameter)


def _json_operand(operator: str, operand: str, parameter: str) -> str:
    """What a JSON column is compared with, as JSON text: an array, as
    ``{a,b}`` or JSON (``["a",1]``); for cs and cd, a JSON object too
    (``{"k":1}``), as PostgREST's jsonb containment takes."""
    try:
        value = orjson.loads(operand) if operand != "{}" else []
    except orjson.JSONDecodeError:
        if operand.startswith("["):
            raise BadRequest("cs, cd and ov take a JSON array or object", parameter) from None
        value = _parse_list(operand, "{", "}", parameter)
    if isinstance(value, dict) and operator == "ov":
        raise BadRequest("ov takes an array: objects overlap in no defined way", parameter)
    if not isinstance(value, list | dict):
        raise BadRequest("cs, cd and ov take a JSON array or object", parameter)
    return orjson.dumps(value).decode()


def _full_text_index(column: sa.Column[Any], parameter: str) -> tuple[sa.Column[Any], ...]:
    """The columns of the FULLTEXT index that holds ``column``: MySQL's MATCH
    names them all, and searches them all."""
    for index in column.table.indexes:
        fulltext = index.dialect_options["mysql"].get("prefix") == "FULLTEXT"
        if fulltext and any(indexed is column for indexed in index.columns):
            return tuple(index.columns)
    message = f"'{column.name}' is in no FULLTEXT index, which full-text search needs"
    raise BadRequest(message, parameter=parameter)


def _quantified(operator: str, parameter: str) -> tuple[str, str | None]:
    """``eq(any)`` as ("eq", "any"); a plain operator with None. A text
    search configuration (``fts(english)``) is PostgreSQL's; MySQL has none."""
    if not operator.endswith(")"):
        return operator, None
    name, _, quantifier = operator[:-1].partition("(")
    if name in FULL_TEXT and quantifier.isidentifier():
        return name, None
    if quantifier not in ("any", "all") or name not in OPERATORS - {"in", "is"}:
        raise BadRequest(f"'{operator}' is not OPERATOR(any) or OPERATOR(all)", parameter)
    return name, quantifier


def like_to_glob(pattern: str) -> str:
    """A LIKE pattern (``%``, ``_``, ``\\`` escapes) as a GLOB pattern, in one pass."""
    glob, escaped = [], False
    for char in pattern:
        if escaped or char not in "%_\\":
            glob.append(f"[{char}]" if char in "*?[]" else char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            glob.append("*" if char == "%" else "?")
    return "".join(glob)


def parse_filter_parameter(table: sa.Table, name: str, text: str, prefix: str) -> Filter | Logic:
    """A query parameter that filters ``table``'s rows: ``COLUMN=OPERATOR.VALUE``
    or logic (``or=(...)``); ``prefix`` is an embed's path (``city.``), which
    a 400 puts before the parameter's name."""
    if name in LOGIC_PARAMETERS:
        return parse_logic(table, name, text, prefix)
    return parse_filter(column_named(table, name, prefix + name), text, prefix + name)


def parse_logic(table: sa.Table, name: str, text: str, prefix: str = "", depth: int = 0) -> Logic:
    """``or=(a.eq.1,b.gt.2,and(c.lt.3,d.is.null))``, as PostgREST reads it:
    ``name`` is or, and, not.or or not.and; items are COLUMN.FILTER or
    nested logic."""
    negated = name.startswith("not.")
    operator = name[4:] if negated else name
    parameter = prefix + operator
    if depth == MAX_LOGIC_DEPTH:
        raise BadRequest(f"logic nests at most {MAX_LOGIC_DEPTH} deep", parameter=parameter)
    items: list[Filter | Logic] = []
    for item in _logic_items(text, parameter):
        head, paren, rest = item.partition("(")
        if paren and head in LOGIC_PARAMETERS:
            items.append(parse_logic(table, head, f"({rest}", prefix, depth + 1))
            continue
        column_name, dot, condition = split_name(item, ".")
        if not dot:
            raise BadRequest(f"'{item}' is not COLUMN.OPERATOR.VALUE", parameter=parameter)
        column = column_named(table, column_name, parameter)
        items.append(parse_filter(column, _unquoted(condition), parameter))
    return Logic(operator, tuple(items), negated)


def _unquoted(condition: str) -> str:
    """``eq."a,b"`` as ``eq.a,b``: a value quoted whole in a logic list (an
    ``in.(...)`` list reads its own quotes); any other value as written."""
    negation = "not." if condition.startswith("not.") else ""
    operator, dot, value = condition.removeprefix(negation).partition(".")
    quoted = _quoted(value, 1, len(value)) if value.startswith('"') else None
    if quoted is None or quoted[1] != len(value) or operator == "in":
        return condition
    return f"{negation}{operator}{dot}{quoted[0]}"
