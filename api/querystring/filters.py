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
    parse_text,
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
    """``text`` as a value of ``column``'s type (``api.columns``)."""
    try:
        return parse_text(column, text)
    except (ValueError, OverflowError) as exc:
        message = f"'{text}' is not {exc}, as '{column.name}' needs"
        raise BadRequest(message, parameter=parameter) from None


MAX_IN_VALUES = 1000


def _parse_list(
    text: str, opening: str, closing: str, parameter: str, keep_quotes: bool = False
) -> list[str]:
    """The items of ``(a,b)`` or ``{a,b}``: as ``in.(...)`` reads them, or,
    with ``keep_quotes``, split only at the commas outside any parentheses
    and quotes, each item as written (logic lists, whose items nest)."""
    if not (text.startswith(opening) and text.endswith(closing)) or len(text) < 2:
        raise BadRequest(f"expected a list in {opening}{closing}", parameter=parameter)
    if not keep_quotes:
        return _in_list_items(text[1:-1], parameter)
    items, depth, quoted, escaped, start = [], 0, False, False, 1
    for position in range(1, len(text) - 1):
        char = text[position]
        if escaped:
            escaped = False
        elif quoted:
            escaped, quoted = char == "\\", char != '"'
        elif char == '"':
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise BadRequest("a list has an unbalanced ')'", parameter=parameter)
        elif char == "," and depth == 0:
            items.append(text[start:position].strip())
            start = position + 1
        if len(items) > MAX_IN_VALUES:
            raise BadRequest(f"a list takes at most {MAX_IN_VALUES} items", parameter=parameter)
    if depth or quoted:
        raise BadRequest("a list has an unbalanced '(' or quote", parameter=parameter)
    items.append(text[start:-1].strip())
    if not all(items):
        raise BadRequest("a list has an empty item", parameter=parameter)
    return items


def _parse_in_list(column: sa.Column[Any], text: str, parameter: str) -> tuple[Any, ...]:
    if not (text.startswith("(") and text.endswith(")")):
        raise BadRequest("in. takes a list in parentheses: in.(a,b,c)", parameter=parameter)
    items = _in_list_items(text[1:-1], parameter)
    return tuple(parse_value(column, item, parameter) for item in items)


def _in_list_items(inner: str, parameter: str) -> list[str]:
    """The values of ``in.(...)``: bare (spaces around them dropped) or
    double-quoted (a backslash escapes the next character), comma-separated.

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
        if position < end and inner[position] == '"':
            item, position = _quoted(inner, position + 1, parameter)
            while position < end and inner[position] in _SPACES:
                position += 1
            if position < end and inner[position] != ",":
                raise BadRequest("in.(...) has stray text after a quote", parameter=parameter)
        else:
            delimiter = _IN_DELIMITER.search(inner, start)
            position = end if delimiter is None else delimiter.start()
            if position < end and inner[position] == '"':
                raise BadRequest("in.(...) has a quote inside a bare value", parameter=parameter)
            item = inner[start:position].strip(_SPACES)
        items.append(item)
        if position == end:
            return items
        position += 1  # past the comma
        if position == end:
            raise BadRequest("in.(...) ends with a comma", parameter=parameter)


_SPACES = " \t\r\n\f\v"


_IN_DELIMITER = re.compile(r'[,"]')


def _quoted(inner: str, position: int, parameter: str) -> tuple[str, int]:
    """The value of a quoted item whose text starts at ``position``, and the
    position after its closing quote."""
    parts = []
    while True:
        match = _QUOTED_RUN.match(inner, position)
        assert match is not None  # the pattern matches the empty string
        parts.append(match.group())
        position = match.end()
        if position >= len(inner):
            raise BadRequest("in.(...) has an unbalanced quote", parameter=parameter)
        if inner[position] == '"':
            return "".join(parts), position + 1
        # a backslash: the next character is taken as it is
        if position + 1 >= len(inner):
            raise BadRequest("in.(...) has an unbalanced quote", parameter=parameter)
        parts.append(inner[position + 1])
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
    for item in _parse_list(text, "(", ")", parameter, keep_quotes=True):
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
    """``eq."a,b"`` as ``eq.a,b``: a value quoted in a logic list (not an in.(...) list)."""
    operator, dot, value = condition.rpartition(".")
    if len(value) >= 2 and value[0] == value[-1] == '"' and not operator.endswith("in"):
        return f"{operator}{dot}{value[1:-1]}"
    return condition
