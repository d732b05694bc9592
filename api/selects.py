"""The grammar of ``select=`` (PostgREST's): columns, ``*``, and embedded
resources, nested.

    select=*,country(*)                       every column, and the row's country
    select=title,actor(first_name,last_name)  columns, and an embedded list
    select=*,original:language!original_language_id(name)
                                              an alias, and a hint naming the key
    select=country,city!inner(city)           only parents with a matching child
    select=country,city!left(city)            every parent (the default, said)
    select=city,...country(country)           a spread: the embed's columns in the row
    select=count(),total:amount.sum()::int,d  aggregates, grouped by the other columns

Parsed in one pass over the text, nesting at most MAX_DEPTH deep, with at
most MAX_EMBEDS embeds in all; what the names mean is settled by
``api.querystring`` against the tables.
"""

from __future__ import annotations

import dataclasses
import re

from api.errors import BadRequest
from api.names import unquoted

MAX_DEPTH = 4  # embedded resources within embedded resources
# Embedded resources in one select, at every depth: each is a statement and
# a share of the answer, and a URL could hold enough of them to keep a
# worker busy for seconds.
MAX_EMBEDS = 16
# The head of an aggregate (``count``, ``amount.sum``, ``total:amount.sum``), whose
# "()" holds nothing: PostgREST's avg, count, max, min and sum.
AGGREGATE_HEAD = re.compile(r"(?:^|[.:])(?:avg|count|max|min|sum)\Z")


@dataclasses.dataclass(frozen=True)
class EmbedItem:
    """``alias:name!hint!inner(items)`` in a select."""

    key: str  # what the parent row calls it: the alias, else the name
    name: str
    hint: str | None
    inner: bool
    items: tuple[str | EmbedItem, ...]
    spread: bool = False  # ``...name(items)``: its columns in the parent row


def parse_select_items(text: str) -> tuple[str | EmbedItem, ...]:
    """The items of a select: column names (``*`` among them) and embeds."""
    items, end = _items(text, 0, 0)
    if end != len(text):
        raise _error("a select has an unbalanced ')'")
    if _embeds_in(items) > MAX_EMBEDS:
        raise _error(f"a select embeds at most {MAX_EMBEDS} resources")
    return items


def _embeds_in(items: tuple[str | EmbedItem, ...]) -> int:
    return sum(1 + _embeds_in(item.items) for item in items if isinstance(item, EmbedItem))


def _error(message: str) -> BadRequest:
    return BadRequest(message, parameter="select")


def _items(text: str, position: int, depth: int) -> tuple[tuple[str | EmbedItem, ...], int]:
    """The items from ``position`` to the ``)`` that closes this level (or
    the end), and where that is. Each character is looked at once."""
    items: list[str | EmbedItem] = []
    start = position
    while True:
        position = _next_separator(text, position)
        head = text[start:position].strip()
        if text.startswith("()", position) and AGGREGATE_HEAD.search(head):
            # An aggregate, with any cast of its output: one item, as written.
            position = _next_separator(text, position + 2)
            items.append(text[start:position].strip())
        elif position < len(text) and text[position] == "(":
            if depth == MAX_DEPTH:
                raise _error(f"embedded resources nest at most {MAX_DEPTH} deep")
            inner, position = _items(text, position + 1, depth + 1)
            if position == len(text):
                raise _error("a select has an unbalanced '('")
            position += 1  # past ")"
            items.append(_embed(head, inner))
            while position < len(text) and text[position] == " ":
                position += 1
        elif head:
            items.append(head)
        else:
            raise _error("a select lists names separated by commas")
        if position == len(text) or text[position] == ")":
            return tuple(items), position
        if text[position] != ",":
            raise _error("a select has text after an embedded resource")
        position += 1
        start = position


def _next_separator(text: str, position: int) -> int:
    """Where the first ',', '(' or ')' from ``position`` is (else the end),
    but none inside a quoted name (``"a,b"``)."""
    while True:
        while position < len(text) and text[position] not in ',()"':
            position += 1
        if position == len(text) or text[position] != '"':
            return position
        end = text.find('"', position + 1)
        if end < 0:
            raise _error("a select has an unbalanced '\"'")
        position = end + 1


JOINS = frozenset({"inner", "left"})


def _embed(head: str, items: tuple[str | EmbedItem, ...]) -> EmbedItem:
    spread = head.startswith("...")
    head = head.removeprefix("...")
    alias, colon, rest = head.partition(":")
    if not colon:
        alias, rest = "", head
    name, *modifiers = rest.split("!")
    # !inner keeps only the parents with a matching row; !left, the default,
    # keeps them all (PostgREST and postgrest-js take both).
    joins = [modifier for modifier in modifiers if modifier in JOINS]
    hints = [modifier for modifier in modifiers if modifier not in JOINS]
    inner = joins == ["inner"]
    bad = not name or len(hints) > 1 or len(joins) > 1 or not all(hints)
    if bad or (colon and not alias):
        raise _error(f"'{head}' is not NAME, ALIAS:NAME or NAME!HINT, !inner or !left after them")
    name = unquoted(name.strip())  # "Order Details"(*), as PostgREST quotes a name
    return EmbedItem(
        alias.strip() or name,
        name,
        hints[0] if hints else None,
        inner,
        items,
        spread,
    )
