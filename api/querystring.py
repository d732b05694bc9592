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

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
import sqlalchemy as sa
from webob.multidict import MultiDict

from api.collections import Description, Link, describe
from api.columns import (
    BOOLEAN,
    ENUM,
    STRING,
    enum_members_of_set,
    mapping,
    parse_text,
    to_text,
)
from api.errors import BadRequest
from api.formats import dump_json
from api.selects import EmbedItem, parse_select_items

RESERVED = frozenset({"select", "order", "limit", "offset", "cursor", "on_conflict"})
COMPARISONS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "isdistinct"})
PATTERN_OPERATORS = frozenset({"like", "ilike", "match", "imatch"})
OPERATORS = COMPARISONS | PATTERN_OPERATORS | {"in", "is", "cs", "cd", "ov"}
OPERATORS |= {"fts", "plfts", "phfts", "wfts"}
# is.VALUE: (the value, and whether it negates): is.not_null is not.is.null
IS_VALUES = {
    "null": (None, False),
    "not_null": (None, True),
    "unknown": (None, False),
    "true": (True, False),
    "false": (False, False),
}
LOGIC = ("or", "and")
# PostgREST's operators this API refuses, and why (a 400 that says it).
NOT_HERE = {
    **dict.fromkeys(
        ("sl", "sr", "nxr", "nxl", "adj"), "needs range types, which MySQL/MariaDB do not have"
    ),
}
CONTAINMENT = frozenset({"cs", "cd", "ov"})
FULL_TEXT = frozenset({"fts", "plfts", "phfts", "wfts"})
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


@dataclass(frozen=True)
class ListQuery:
    columns: tuple  # of sa.Column, in the requested order
    filters: tuple  # of Filter
    order: tuple  # of OrderItem, the primary key last
    limit: int
    after: tuple | None  # the sort-key values of the last row of the previous page
    embeds: tuple = ()  # of Embed
    offset: int = 0  # rows skipped (after the cursor, if any)

    def signature(self) -> bytes:
        """What a cursor is bound to: the same rows in the same order, or it is stale."""
        inner = [(e.key, _filters_signature(e.filters)) for e in self.embeds if e.inner]
        order = [o.spec for o in self.order]
        return orjson.dumps([order, _filters_signature(self.filters), inner], default=str)


def _filters_signature(filters: tuple[Filter | Logic, ...]) -> list[Any]:
    return sorted(
        ("logic", f.operator, f.negated, orjson.dumps(_filters_signature(f.items)))
        if isinstance(f, Logic)
        else (f.column.name, f.operator, f.negated, orjson.dumps(f.value, default=str))
        for f in filters
    )


# More parameters than any query of the language needs is a mistake, or an attack.
MAX_PARAMETERS = 100


def parse_query_string(query_string: str) -> MultiDict:
    """The parameters of a query string, as the client percent-encoded them in UTF-8.

    ``query_string`` is the environ's: the raw bytes, decoded as latin-1.
    A pair that is not UTF-8 once decoded is a 400 naming it; so is a query
    of more than MAX_PARAMETERS parameters. Linear in the length.
    """
    params = MultiDict()
    for part in query_string.encode("latin-1").split(b"&"):
        if not part:
            continue
        if len(params) == MAX_PARAMETERS:
            raise BadRequest(f"a query takes at most {MAX_PARAMETERS} parameters")
        raw_name, _, raw_value = part.partition(b"=")
        shown = raw_name.decode("latin-1")
        name = _decoded(raw_name, shown, "a parameter's name")
        params.add(name, _decoded(raw_value, name, f"the value of '{name}'"))
    return params


def _decoded(raw: bytes, parameter: str, what: str) -> str:
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{what} is not percent-encoded UTF-8", parameter=parameter) from None


def _single(params: MultiDict, name: str) -> str | None:
    values = params.getall(name)
    if len(values) > 1:
        raise BadRequest(f"'{name}' may be given only once", parameter=name)
    return values[0] if values else None


def _column(table: sa.Table, name: str, parameter: str) -> sa.Column[Any]:
    """The column ``name`` names, or the text at a JSON path (``data->>k``)."""
    column = table.columns.get(name)
    if column is None and "->" in name:
        base, *path = name.split("->")
        column = table.columns.get(base)
        keys = tuple(key.lstrip(">") for key in path)
        if column is not None and isinstance(column.type, sa.JSON) and all(keys):
            return _json_text(column, keys, name)
        column = None
    if column is None:
        raise BadRequest(f"'{name}' is not a column of this table", parameter=parameter)
    return column


@lru_cache(maxsize=1024)
def _json_text(column: sa.Column[Any], keys: tuple[str, ...], name: str) -> Any:
    """The text at a JSON path of ``column``, as a filter or an order reads it
    (``->`` and ``->>`` alike: PostgREST compares text); named as written,
    made once per spelling so that statements stay cached."""
    path = tuple(int(key) if key.isdigit() else key for key in keys)
    element = column[path[0] if len(path) == 1 else path]
    text: Any = sa.type_coerce(element.as_string(), sa.String()).label(name)
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
        if value is not None and mapping(column) is not BOOLEAN:
            raise BadRequest(f"'{column.name}' is not true/false", parameter=parameter)
        return Filter(column, "is", value, negated != negates)
    if operator == "in":
        return Filter(column, "in", _parse_in_list(column, operand, parameter), negated)
    if operator in CONTAINMENT:
        return Filter(column, operator, _contained(column, operand, parameter), negated)
    if operator in ("fts", "plfts", "phfts", "wfts"):
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


def _contained(column: sa.Column[Any], operand: str, parameter: str) -> Any:
    """The value of cs, cd and ov: for a SET, ``{a,b}`` as the bits of its
    members; for JSON, an array (``{a,b}`` or JSON text ``["a",1]``), as JSON text."""
    if mapping(column).kind == "set":
        members = enum_members_of_set(column)
        items = _parse_list(operand, "{", "}", parameter) if operand != "{}" else []
        unknown = [item for item in items if item not in members]
        if unknown:
            raise BadRequest(f"'{unknown[0]}' is not a member of '{column.name}'", parameter)
        return sum(1 << members.index(item) for item in items)
    if isinstance(column.type, sa.JSON):
        if operand.startswith("["):
            try:
                value = orjson.loads(operand)
            except orjson.JSONDecodeError:
                raise BadRequest("cs, cd and ov take a JSON array", parameter) from None
        else:
            value = _parse_list(operand, "{", "}", parameter) if operand != "{}" else []
        if not isinstance(value, list):
            raise BadRequest("cs, cd and ov take a JSON array", parameter)
        return orjson.dumps(value).decode()
    raise BadRequest(f"cs, cd and ov work on SET and JSON columns, not '{column.name}'", parameter)


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
    if name in ("fts", "plfts", "phfts", "wfts") and quantifier.isidentifier():
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


def parse_logic(table: sa.Table, name: str, text: str, depth: int = 0) -> Logic:
    """``or=(a.eq.1,b.gt.2,and(c.lt.3,d.is.null))``, as PostgREST reads it:
    ``name`` is or, and, not.or or not.and; items are COLUMN.FILTER or
    nested logic."""
    negated = name.startswith("not.")
    operator = name[4:] if negated else name
    if depth == MAX_LOGIC_DEPTH:
        raise BadRequest(f"logic nests at most {MAX_LOGIC_DEPTH} deep", parameter=operator)
    items: list[Filter | Logic] = []
    for item in _parse_list(text, "(", ")", operator, keep_quotes=True):
        head, paren, rest = item.partition("(")
        if paren and head in (*LOGIC, *(f"not.{word}" for word in LOGIC)):
            items.append(parse_logic(table, head, f"({rest}", depth + 1))
            continue
        column_name, dot, condition = item.partition(".")
        if not dot:
            raise BadRequest(f"'{item}' is not COLUMN.OPERATOR.VALUE", parameter=operator)
        column = _column(table, column_name, operator)
        items.append(parse_filter(column, _unquoted(condition), operator))
    return Logic(operator, tuple(items), negated)


def _unquoted(condition: str) -> str:
    """``eq."a,b"`` as ``eq.a,b``: a value quoted in a logic list (not an in.(...) list)."""
    operator, dot, value = condition.rpartition(".")
    if len(value) >= 2 and value[0] == value[-1] == '"' and not operator.endswith("in"):
        return f"{operator}{dot}{value[1:-1]}"
    return condition


def parse_order(table: sa.Table, text: str) -> list[OrderItem]:
    items, seen = [], set()
    for part in text.split(","):
        name, *modifiers = part.strip().split(".")
        column = _column(table, name, "order")
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


# PostgREST's casts in a select (``id::text``), as the SQL types both databases cast to.
CASTS: dict[str, sa.types.TypeEngine[Any]] = {
    "text": sa.String(),
    "varchar": sa.String(),
    "integer": sa.BigInteger(),
    "int": sa.BigInteger(),
    "bigint": sa.BigInteger(),
    "numeric": sa.Numeric(65, 30),
    "decimal": sa.Numeric(65, 30),
    "date": sa.Date(),
    "time": sa.Time(),
    "timestamp": sa.DateTime(),
}


def _selected(table: sa.Table, text: str) -> Any:
    """One select item: ``column``, or ``alias:column->key->>key::cast``, as
    PostgREST reads it; a column as it is, anything else a labelled
    expression (its name: the alias, else the last key, else the column's)."""
    body, _, cast = text.partition("::")
    alias, colon, body = body.partition(":")
    if not colon:
        alias, body = "", alias
    name, *path = body.split("->")
    column = _column(table, name.strip(), "select")
    if not (alias or path or cast):
        return column
    if cast and cast not in CASTS:
        message = f"'{cast}' is not a cast this API makes; use one of {', '.join(CASTS)}"
        raise BadRequest(message, parameter="select")
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
        path = tuple(int(key) if key.isdigit() else key for key in keys)
        element = column[path[0] if len(path) == 1 else path]
        expression = element.as_string() if as_text else element
    if cast is not None:
        expression = sa.cast(expression, CASTS[cast])
    return expression.label(label)


def _columns_and_embeds(
    table: sa.Table, items: tuple[str | EmbedItem, ...]
) -> tuple[tuple[sa.Column[Any], ...], list[EmbedItem]]:
    columns: list[sa.Column[Any]] = []
    embeds = []
    for item in items:
        if isinstance(item, EmbedItem):
            embeds.append(item)
        elif item == "*":
            columns += table.columns
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


def _embed(
    parent: Description, item: EmbedItem, params: MultiDict, prefix: str, max_limit: int
) -> Embed:
    """What ``item`` embeds in ``parent``'s rows, with the parameters named
    after it (``city.city=like.A*``, ``city.order=...``, ``city.limit=3``)."""
    links = parent.links.get(item.name, [])
    if item.hint is not None:
        links = [link for link in links if item.hint in link.hints]
    if not links:
        hint = "" if item.hint is None else f" by '{item.hint}'"
        message = f"'{item.name}' is not related to '{parent.name}'{hint}"
        raise BadRequest(message, parameter="select")
    if len(links) > 1:
        choices = ", ".join(f"{item.name}!{link.hints[0]}" for link in links)
        raise BadRequest(
            f"'{item.name}' is related to '{parent.name}' in more than one way: "
            f"name one, as {choices}",
            parameter="select",
        )
    (link,) = links
    target = link.target.table
    if target is parent.table:
        raise BadRequest(f"'{item.name}' cannot embed its own table", parameter="select")
    columns, nested = _columns_and_embeds(target, item.items)
    path = f"{prefix}{item.key}."
    embeds = tuple(_embed(link.target, n, params, path, max_limit) for n in nested)
    own = _own_parameters(params, path, {e.key for e in embeds})
    order_text = _single(own, "order")
    order = tuple(parse_order(target, order_text) if order_text is not None else ())
    limit = _limit(own, path, max_limit)
    filters = tuple(
        parse_filter(_column(target, name, path + name), text, path + name)
        for name, text in own.items()
        if name not in ("order", "limit")
    )
    return Embed(item.key, link, columns, embeds, filters, order, limit, item.inner)


def _own_parameters(params: MultiDict, prefix: str, nested: set[str]) -> MultiDict:
    """The parameters under ``prefix`` (with it taken off) but for those of nested embeds."""
    own = MultiDict()
    for name, text in params.items():
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            if rest.partition(".")[0] not in nested or "." not in rest:
                own.add(rest, text)
    return own


def _limit(params: MultiDict, prefix: str, max_limit: int) -> int | None:
    """``limit``, at most ``max_limit`` (PostgREST's db-max-rows caps it silently)."""
    count = _count(params, prefix, "limit")
    return None if count is None else min(count, max_limit)


def _count(params: MultiDict, prefix: str, name: str) -> int | None:
    text = _single(params, name)
    if text is None:
        return None
    if not re.fullmatch(r"[0-9]{1,15}", text):
        message = f"'{prefix}{name}' must be a whole number"
        raise BadRequest(message, parameter=f"{prefix}{name}")
    return int(text)


# A Range request header (PostgREST's, in items): "0-24", or "25-" for no end.
RANGE = re.compile(r"(?:items=)?([0-9]{1,15})-([0-9]{0,15})\Z")


def parse_range(text: str | None) -> tuple[int, int | None] | None:
    """``Range: FIRST-LAST`` as (offset, limit or None); None when absent or
    not a range PostgREST reads (it then answers every row, as here)."""
    match = RANGE.match(text.strip()) if text else None
    if match is None:
        return None
    first, last = int(match.group(1)), match.group(2)
    if not last:
        return first, None
    return (first, int(last) - first + 1) if int(last) >= first else None


def parse_list_query(
    table: sa.Table,
    params: MultiDict,
    *,
    default_limit: int,
    max_limit: int,
    cursor_secret: bytes,
    fixed: tuple[Filter, ...] = (),
    range_: tuple[int, int | None] | None = None,
) -> ListQuery:
    """The ListQuery that ``params`` (a WebOb MultiDict) asks of ``table``;
    ``fixed`` filters come first (a child collection's foreign key). The
    rows are ``limit`` and ``offset``, else ``range_`` (a Range header's),
    else the first ``default_limit``; never more than ``max_limit``."""
    select = _single(params, "select")
    columns, embedded = (
        (tuple(table.columns), []) if select is None else parse_select(table, select)
    )
    embeds = tuple(_embed(describe(table), item, params, "", max_limit) for item in embedded)
    embed_keys = {embed.key for embed in embeds}
    order_text = _single(params, "order")
    order = parse_order(table, order_text) if order_text is not None else []
    ordered = {item.column for item in order}
    # The tie-break runs the way the last key does, so that an index on
    # (that column, primary key) can be read in one direction.
    descending = order[-1].descending if order else False
    for column in _tie_break(table):
        if column not in ordered:
            order.append(OrderItem(column, descending, bool(column.nullable) and descending))
    filters: list[Filter | Logic] = list(fixed)
    for name, text in params.items():
        if name in RESERVED or ("." in name and name.partition(".")[0] in embed_keys):
            continue  # an embed's parameter: _embed()
        if name in (*LOGIC, *(f"not.{word}" for word in LOGIC)):
            filters.append(parse_logic(table, name, text))
        else:
            filters.append(parse_filter(_column(table, name, name), text, name))
    _check_names(columns, order, embeds)
    limit, offset = _limit(params, "", max_limit), _count(params, "", "offset")
    if range_ is not None and limit is None and offset is None:
        offset, limit = range_[0], None if range_[1] is None else min(range_[1], max_limit)
    limit = default_limit if limit is None else limit
    query = ListQuery(columns, tuple(filters), tuple(order), limit, None, embeds, offset or 0)
    cursor = _single(params, "cursor")
    if cursor is not None:
        query = replace(query, after=decode_cursor(cursor, query, cursor_secret))
    return query


def _check_names(
    columns: tuple[Any, ...], order: list[OrderItem], embeds: tuple[Embed, ...]
) -> None:
    """A row holds one value per name: a labelled item (``alias:...``,
    ``col::text``, ``data->>k``) may not take the name of another item, nor
    of a column the statement reads besides (order, tie-break, embeds)."""
    read = {str(item.column.name) for item in order}
    read |= {str(column.name) for embed in embeds for column in embed.link.near}
    read |= {str(column.name) for column in columns if isinstance(column, sa.Column)}
    seen: set[str] = set()
    for column in columns:
        name = str(column.name)
        if name in seen or (not isinstance(column, sa.Column) and name in read):
            message = f"'{name}' names two things this query reads; give one an alias"
            raise BadRequest(message, parameter="select")
        seen.add(name)


def _tie_break(table: sa.Table) -> tuple[sa.Column[Any], ...]:
    """What makes an order total: the primary key; without one, every
    column that can be ordered by (rows equal in all of them are alike)."""
    key = tuple(table.primary_key.columns)
    return key or tuple(column for column in table.columns if mapping(column).orderable)


# --- cursors ---------------------------------------------------------------------
#
# A cursor is the sort-key values of the last row of a page, bound to the
# query's order and filters and signed, so that a forged, altered or reused
# cursor is a clear 400 rather than a wrong page or a 500.


def _sign(payload: bytes, secret: bytes) -> bytes:
    return hmac.digest(secret, payload, "sha256")[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(query: ListQuery, row: dict[str, Any], secret: bytes) -> str:
    values = [to_text(item.column, row[item.column.name]) for item in query.order]
    payload = dump_json({"q": _b64(hashlib.sha256(query.signature()).digest()[:12]), "v": values})
    return f"{_b64(payload)}.{_b64(_sign(payload, secret))}"


def decode_cursor(text: str, query: ListQuery, secret: bytes) -> tuple[Any, ...]:
    try:
        payload_text, signature_text = text.split(".")
        payload, signature = _unb64(payload_text), _unb64(signature_text)
    except ValueError:
        raise BadRequest("the cursor is malformed", parameter="cursor") from None
    if not hmac.compare_digest(signature, _sign(payload, secret)):
        raise BadRequest("the cursor is not one this API issued", parameter="cursor")
    data = orjson.loads(payload)
    if data["q"] != _b64(hashlib.sha256(query.signature()).digest()[:12]):
        raise BadRequest(
            "the cursor belongs to another order or other filters", parameter="cursor"
        )
    return tuple(
        _cursor_value(item.column, value)
        for item, value in zip(query.order, data["v"], strict=True)
    )


def _cursor_value(column: sa.Column[Any], value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    return parse_text(column, value)  # written by to_text
