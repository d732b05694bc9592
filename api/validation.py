"""Request bodies: parsing, and validation of rows against the table's metadata.

Bad JSON is a 400, a wrong Content-Type a 415, a body over the limit a 413,
and fields that do not fit the table a 422 listing every bad field at once.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Callable, Iterable
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from pyramid.httpexceptions import (
    HTTPRequestEntityTooLarge,
    HTTPUnprocessableEntity,
    HTTPUnsupportedMediaType,
)
from pyramid.request import Request

from api.bridge import give_way
from api.collections import describe
from api.columns import mapping
from api.errors import BadRequest
from api.sql import STATEMENT_CACHE_SIZE

# One bad field: {"field": name, "message": what is wrong}
FieldError = dict[str, str]


# An If-Match value: "*" or a list of (possibly weak) quoted entity tags (RFC 9110).
ETAG_LIST = r'^\s*(\*|(W/)?"[^"]*"(\s*,\s*(W/)?"[^"]*")*)\s*$'
JSON_TYPES = frozenset({"application/json"})
MERGE_PATCH_TYPES = frozenset({"application/json", "application/merge-patch+json"})
# More fields than any table has columns: refused before they are all read.
MAX_FORM_FIELDS = 4096


class Unprocessable(HTTPUnprocessableEntity):
    """422 with the ``errors`` member listing each bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(_said(errors))
        self.errors = errors


SAID_ERRORS = 3  # a message longer than a few would not fit an admin page's notice


def _said(errors: list[FieldError]) -> str:
    """The first few errors in a sentence: the message clients show their
    user, where ``errors`` lists them all."""
    said = "; ".join(f"{e['field']} {e['message']}".strip() for e in errors[:SAID_ERRORS])
    more = len(errors) - SAID_ERRORS
    return f"Some fields do not fit the table: {said}" + (
        f"; and {more} more (see errors)." if more > 0 else "."
    )


def _shape(value: Any) -> tuple[int, bool]:
    """How deep ``value`` nests containers, and whether it holds a float:
    level by level, without recursion, and only containers kept for the
    next level (a body of 1,000 rows holds many more scalars)."""
    deepest, has_float = 0, type(value) is float
    level = [value] if type(value) in (dict, list) else []
    while level:
        deepest += 1
        below = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                kind = type(child)
                if kind is dict or kind is list:
                    below.append(child)
                elif kind is float:
                    has_float = True
        level = below
    return deepest, has_float


def _check_numbers(body: bytes | str) -> None:
    """422 for a number that would not be stored as sent.

    orjson reads an integer past 64 bits, and a number past a double's range
    or precision, as the nearest double: 18446744073709551616 would become
    1.8446744073709552e+19 and 1e-400 would become 0.0. The body is read
    again, only when it holds a float, by a parser that hands over each
    number's text.
    """
    try:
        parsed = json.loads(body, parse_int=_exact_int, parse_float=_exact_float)
    except (ValueError, RecursionError):
        return  # not JSON, or nested past any limit: the caller says so
    found = _first_not_as_sent(parsed)
    if found is not None:
        field, number = found
        message = f"{number.text} cannot be stored as sent (as {number.stored})"
        raise Unprocessable([{"field": field, "message": message}])


class _NotAsSent:
    """A number of the body that would not be stored as it was sent."""

    def __init__(self, text: str, stored: object) -> None:
        self.text, self.stored = text, stored


def _first_not_as_sent(body: Any) -> tuple[str, _NotAsSent] | None:
    """The first such number, and the field of the row that holds it
    (``amount``, ``[3].amount``), as the other errors name fields."""
    rows = body if type(body) is list else [body]
    for index, row in enumerate(rows):
        prefix = f"[{index}]." if type(body) is list else ""
        for name, value in row.items() if type(row) is dict else [("", row)]:
            level = [value]
            while level:
                below: list[Any] = []
                for node in level:
                    if isinstance(node, _NotAsSent):
                        return f"{prefix}{name}".rstrip("."), node
                    if type(node) is dict:
                        below.extend(node.values())
                    elif type(node) is list:
                        below.extend(node)
                level = below
    return None


def _exact_int(text: str) -> int | _NotAsSent:
    value = int(text)
    if not -(2**63) <= value < 2**64:  # what orjson reads and writes as an integer
        return _NotAsSent(text, float(value))
    return value


def _exact_float(text: str) -> float | _NotAsSent:
    value = float(text)
    if not math.isfinite(value) or Decimal(repr(value)) != Decimal(text):
        return _NotAsSent(text, value)
    return value


def json_body(request: Request, allowed_types: frozenset[str] = JSON_TYPES) -> Any:
    """The request body parsed as JSON, within the configured size and depth,
    each number as it was sent."""
    if request.content_type not in allowed_types:
        raise HTTPUnsupportedMediaType(
            f"Send the body as {_either(sorted(allowed_types))}.",
            headers={"Accept-Patch": ", ".join(sorted(allowed_types))}
            if request.method == "PATCH"
            else {},
        )
    _refuse_too_large(request)
    return parse_json(request.body, request.registry.api_settings.max_json_depth)


def _either(names: list[str]) -> str:
    return " or ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} or {names[-1]}"


def _refuse_too_large(request: Request) -> None:
    limit = request.registry.api_settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise HTTPRequestEntityTooLarge(f"The body may hold at most {limit} bytes.")


def form_fields(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body's fields, each as text.
    A name sent twice keeps its last value, as PostgREST's does."""
    _refuse_too_large(request)
    body = request.body
    if body.lstrip()[:1] in (b"{", b"["):  # curl -d '{...}' without -H Content-Type
        raise HTTPUnsupportedMediaType(
            "The body is JSON, sent as a form (application/x-www-form-urlencoded, which "
            "curl -d says unless told): send it with Content-Type: application/json."
        )
    if body.count(b"&") >= MAX_FORM_FIELDS:
        raise BadRequest(f"A form body holds at most {MAX_FORM_FIELDS} fields.", "body")
    fields = {}
    try:
        for pair in body.split(b"&"):
            if pair:
                name, _, value = pair.partition(b"=")
                fields[_form_text(name)] = _form_text(value)
    except UnicodeDecodeError:
        raise BadRequest("The form body is not UTF-8.", "body") from None
    return fields


# Bytes of a form's field decoded between two looks at the clock (give_way):
# urllib decodes each percent escape in Python, so a body of escapes alone
# would hold the worker for as long as a slow query.
FORM_CHUNK_BYTES = 16 * 1024


def _form_text(raw: bytes) -> str:
    """A form's name or value: ``+`` a space, percent escapes decoded (the
    urllib function parse_qsl calls), read as UTF-8; a long one in pieces,
    with turns for the worker's other requests between them."""
    raw = raw.replace(b"+", b" ")
    if b"%" not in raw:
        return raw.decode("utf-8")
    pieces, start = [], 0
    while start < len(raw):
        end = start + FORM_CHUNK_BYTES
        escape = raw.rfind(b"%", max(start, end - 2), end)  # not cut in two
        if escape != -1 and end < len(raw):
            end = escape
        pieces.append(urllib.parse.unquote_to_bytes(raw[start:end]))
        start = end
        give_way()
    return b"".join(pieces).decode("utf-8")


def parse_json(text: bytes | str, max_depth: int, what: str = "The body") -> Any:
    """``text`` as JSON, nested at most ``max_depth`` deep, each number as it
    was sent (422 for one that cannot be); a 400 that calls it ``what``."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        _check_numbers(text)  # a number orjson cannot read at all (1e400) is a 422 too
        raise BadRequest(f"{what} is not valid JSON: {exc}", "body") from exc
    give_way()  # a long body took a while to parse, and takes as long to check
    depth, has_float = _shape(value)
    if depth > max_depth:
        raise BadRequest(f"{what} nests deeper than {max_depth} levels.", "body")
    if has_float:
        _check_numbers(text)
    return value


# If-Match or If-None-Match "*": any current representation.
ANY_ETAG = "*"


def if_match(request: Request) -> frozenset[str] | str | None:
    """If-Match as sent: None when absent, ANY_ETAG for "*", else its strong tags.

    Weak tags never match (RFC 9110 13.1.1: If-Match compares strongly);
    whitespace around the value is not part of it. 400 when it is neither.
    """
    return _etags(request, "If-Match", "HTTP_IF_MATCH", weak_match=False)


def if_none_match(request: Request) -> frozenset[str] | str | None:
    """If-None-Match as sent, as ``if_match`` reads If-Match, but weak tags
    count too (RFC 9110 13.1.2 compares weakly)."""
    return _etags(request, "If-None-Match", "HTTP_IF_NONE_MATCH", weak_match=True)


def _etags(
    request: Request, header: str, key: str, weak_match: bool
) -> frozenset[str] | str | None:
    value = request.environ.get(key)
    if value is None:
        return None
    if not re.match(ETAG_LIST, value):
        raise BadRequest(f'{header} takes "*" or quoted ETags, e.g. "3"', parameter=header)
    if value.strip() == ANY_ETAG:
        return ANY_ETAG
    tags = re.findall(r'(W/)?"([^"]*)"', value)
    return frozenset(tag for weak, tag in tags if weak_match or not weak)


def server_owned(column: sa.Column[Any]) -> bool:
    """Set by the server, refused in bodies: an auto-increment key, a
    generated column, the version column, or a column the table marks
    ``info={"server_owned": True}``."""
    return (
        column is column.table.autoincrement_column
        or column.computed is not None
        or column is describe(column.table).version
        or column.info.get("server_owned", False)
    )


def given_in_new_rows(column: sa.Column[Any]) -> bool:
    """May be given in a POST's or a PUT's row: not set by the server, or a
    key it would fill in (auto-increment), as PostgreSQL's ``serial`` takes
    one that a client gives. A PATCH may not change such a key."""
    return not server_owned(column) or column is column.table.autoincrement_column


def required_in_new_rows(column: sa.Column[Any]) -> bool:
    """Needed in a new row: the database has no value of its own for it,
    from a default, AUTO_INCREMENT (a key's, which is server-owned, or a
    column's outside the key, under a unique index of its own) or a trigger."""
    has_default = (
        column.default is not None
        or column.server_default is not None
        or column.autoincrement is True
    )
    return (
        not column.nullable
        and not has_default
        and not server_owned(column)
        and not column.info.get("set_by_trigger", False)
    )


class _Field(NamedTuple):
    """What a body's member for one column is checked against."""

    column: sa.Column[Any]
    owned: bool  # set by the server (``server_owned``)
    given_new: bool  # yet taken in a whole row (``given_in_new_rows``)
    nullable: bool
    from_json: Callable[[sa.Column[Any], Any], Any]


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def _fields(table: sa.Table) -> tuple[dict[str, _Field], tuple[str, ...]]:
    """Each column's rules by name, and the names a new row must give: made
    once per table, as a row of an array of 1,000 would otherwise ask them of
    the metadata again."""
    fields = {
        str(column.name): _Field(
            column,
            server_owned(column),
            given_in_new_rows(column),
            bool(column.nullable),
            mapping(column).from_json,
        )
        for column in table.columns
    }
    required = tuple(str(c.name) for c in table.columns if required_in_new_rows(c))
    return fields, required


def validate_row(
    table: sa.Table,
    body: Any,
    *,
    partial: bool = False,
    provided: Iterable[str] = (),
) -> dict[str, Any]:
    """Check a row body against ``table``; return the column values to write,
    each as its column's type takes it (``api.columns``).

    ``partial`` (PATCH) does not ask for required fields, nor is any of
    ``provided`` asked for (a child collection's foreign key). A whole row
    (POST, PUT) may give a primary key the database would fill in, as
    PostgreSQL's ``serial`` takes one; a PATCH may not change it.
    Raises 422 listing every bad field.
    """
    if not isinstance(body, dict):
        raise Unprocessable([{"field": "", "message": "the body must be a JSON object"}])
    fields, required = _fields(table)
    errors = []
    values: dict[str, Any] = {}
    for name, value in body.items():
        field = fields.get(name)
        if field is None:
            errors.append({"field": name, "message": "is not a column of this table"})
        elif field.owned and (partial or not field.given_new):
            errors.append({"field": name, "message": "is set by the server"})
        elif value is None:
            # MySQL reads a new row's NULL for an AUTO_INCREMENT column as
            # "the next value": an array's row that leaves it out says null.
            if field.nullable or (field.column.autoincrement is True and not partial):
                values[name] = None
            else:
                errors.append({"field": name, "message": "may not be null"})
        else:
            try:
                values[name] = field.from_json(field.column, value)
            except (ValueError, OverflowError) as exc:
                errors.append({"field": name, "message": f"must be {exc}"})
    if not partial:
        for name in required:
            if name not in body and name not in provided:
                errors.append({"field": name, "message": "is required"})
    if errors:
        raise Unprocessable(errors)
    return values


def writable_defaults(table: sa.Table) -> dict[str, None]:
    """Values that a PUT gives to writable columns it leaves out: NULL, or the
    default. An INVISIBLE column keeps its value: the row a client PUTs back
    is the row it read, which did not show it."""
    return {
        column.name: None
        for column in table.columns
        if not server_owned(column)
        and not column.info.get("invisible")
        and column.nullable
        and column.default is None
        and column.server_default is None
    }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def merge_patch_row(table: sa.Table, row: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a merge patch to a row: JSON columns merge, other columns are replaced."""
    merged = {}
    for name, value in patch.items():
        column = table.columns.get(name)
        if column is not None and isinstance(column.type, sa.JSON) and value is not None:
            merged[name] = merge_patch(row.get(name), value)
        else:
            merged[name] = value
    return merged
