"""Request bodies: parsing, and validation of rows against the table's metadata.

Bad JSON is a 400, a wrong Content-Type a 415, a body over the limit a 413,
and fields that do not fit the table a 422 listing every bad field at once.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from pyramid.httpexceptions import (
    HTTPRequestEntityTooLarge,
    HTTPUnprocessableEntity,
    HTTPUnsupportedMediaType,
)
from pyramid.request import Request
from sqlalchemy.dialects import mysql

from api.errors import BadRequest

# One bad field: {"field": name, "message": what is wrong}
FieldError = dict[str, str]


# An If-Match value: "*" or a list of (possibly weak) quoted entity tags (RFC 9110).
ETAG_LIST = r'^\s*(\*|(W/)?"[^"]*"(\s*,\s*(W/)?"[^"]*")*)\s*$'
JSON_TYPES = frozenset({"application/json"})
MERGE_PATCH_TYPES = frozenset({"application/json", "application/merge-patch+json"})
# Bits of each integer type, the most specific first (MySQL's are subclasses).
INT_BITS = (
    (mysql.TINYINT, 8),
    (mysql.MEDIUMINT, 24),
    (sa.SmallInteger, 16),
    (sa.BigInteger, 64),
    (sa.Integer, 32),
)


def int_range(column_type: Any) -> tuple[int, int]:
    """The (lowest, highest) value an integer column holds, signed or unsigned."""
    bits = next((b for t, b in INT_BITS if isinstance(column_type, t)), 32)
    if getattr(column_type, "unsigned", False):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


class Unprocessable(HTTPUnprocessableEntity):
    """422 with the ``errors`` member listing each bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("Some fields do not fit the table; see errors.")
        self.errors = errors


def _shape(value: Any) -> tuple[int, bool]:
    """How deep ``value`` nests containers, and whether it holds a float
    (iterative: no recursion)."""
    deepest, has_float = 0, False
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
        elif type(node) is float:
            has_float = True
    return deepest, has_float


def _check_numbers(body: bytes) -> None:
    """422 for a number that would not be stored as sent.

    orjson reads an integer past 64 bits, and a number past a double's range
    or precision, as the nearest double: 18446744073709551616 would become
    1.8446744073709552e+19 and 1e-400 would become 0.0. The body is read
    again, only when it holds a float, by a parser that hands over each
    number's text.
    """
    try:
        json.loads(body, parse_int=_exact_int, parse_float=_exact_float)
    except _NotAsSent as exc:
        message = f"{exc.text} cannot be stored as sent (as {exc.stored})"
        raise Unprocessable([{"field": "", "message": message}]) from None
    except (ValueError, RecursionError):
        return  # not JSON, or nested past any limit: the caller says so


class _NotAsSent(ValueError):
    def __init__(self, text: str, stored: object) -> None:
        super().__init__(text)
        self.text, self.stored = text, stored


def _exact_int(text: str) -> int:
    value = int(text)
    if not -(2**63) <= value < 2**64:  # what orjson reads and writes as an integer
        raise _NotAsSent(text, float(value))
    return value


def _exact_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or Decimal(repr(value)) != Decimal(text):
        raise _NotAsSent(text, value)
    return value


def json_body(request: Request, allowed_types: frozenset[str] = JSON_TYPES) -> Any:
    """The request body parsed as JSON, within the configured size and depth,
    each number as it was sent."""
    settings = request.registry.api_settings
    if request.content_type not in allowed_types:
        raise HTTPUnsupportedMediaType(
            f"Send the body as {' or '.join(sorted(allowed_types))}.",
            headers={"Accept-Patch": ", ".join(sorted(allowed_types))}
            if request.method == "PATCH"
            else {},
        )
    length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        raise HTTPRequestEntityTooLarge(
            f"The body may hold at most {settings.max_body_bytes} bytes."
        )
    body = request.body
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        _check_numbers(body)  # a number orjson cannot read at all (1e400) is a 422 too
        raise BadRequest(f"The body is not valid JSON: {exc}") from exc
    depth, has_float = _shape(value)
    if depth > settings.max_json_depth:
        raise BadRequest(f"The body nests deeper than {settings.max_json_depth} levels.")
    if has_float:
        _check_numbers(body)
    return value


# If-Match "*": any current representation.
ANY_ETAG = "*"


def if_match(request: Request) -> frozenset[str] | str | None:
    """If-Match as sent: None when absent, ANY_ETAG for "*", else its strong tags.

    Weak tags never match (RFC 9110 13.1.1: If-Match compares strongly);
    whitespace around the value is not part of it. 400 when it is neither.
    """
    value = request.headers.get("If-Match")
    if value is None:
        return None
    if not re.match(ETAG_LIST, value):
        raise BadRequest('If-Match takes "*" or quoted ETags, e.g. "3"', parameter="If-Match")
    if value.strip() == ANY_ETAG:
        return ANY_ETAG
    return frozenset(tag for weak, tag in re.findall(r'(W/)?"([^"]*)"', value) if not weak)


def server_owned(column: sa.Column[Any]) -> bool:
    """Set by the server, refused in bodies: an auto-increment key, or a column
    the table marks ``info={"server_owned": True}``."""
    return column is column.table.autoincrement_column or column.info.get("server_owned", False)


def _check_value(column: sa.Column[Any], value: Any) -> str | None:
    """An error message when ``value`` does not fit ``column``, else None."""
    if value is None:
        return None if column.nullable else "may not be null"
    column_type = column.type
    if isinstance(column_type, sa.JSON):
        return None
    python_type = column_type.python_type
    if python_type is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if python_type is int:
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be an integer"
        low, high = int_range(column_type)
        return None if low <= value <= high else f"must be from {low} to {high}"
    if python_type is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "must be a number"
    if python_type is str:
        if not isinstance(value, str):
            return "must be a string"
        length = getattr(column_type, "length", None)
        if length is not None and len(value) > length:
            return f"may be at most {length} characters long"
        return None
    if python_type is datetime:
        if not isinstance(value, str):
            return "must be an RFC 3339 date-time string"
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return "must be an RFC 3339 date-time string"
        return None
    return None


def validate_row(table: sa.Table, body: Any, *, partial: bool = False) -> dict[str, Any]:
    """Check a row body against ``table``; return the column values to write.

    ``partial`` (PATCH) does not ask for required fields. Raises 422 listing
    every bad field.
    """
    if not isinstance(body, dict):
        raise Unprocessable([{"field": "", "message": "the body must be a JSON object"}])
    columns = table.columns
    errors = []
    for name, value in body.items():
        column = columns.get(name)
        if column is None:
            errors.append({"field": name, "message": "is not a column of this table"})
        elif server_owned(column):
            errors.append({"field": name, "message": "is set by the server"})
        else:
            message = _check_value(column, value)
            if message:
                errors.append({"field": name, "message": message})
    if not partial:
        for column in columns:
            required = not column.nullable and column.default is None
            required = required and column.server_default is None and not server_owned(column)
            if required and column.name not in body:
                errors.append({"field": column.name, "message": "is required"})
    if errors:
        raise Unprocessable(errors)
    return {
        name: _from_json(columns[name], value) if value is not None else None
        for name, value in body.items()
    }


def _from_json(column: sa.Column[Any], value: Any) -> Any:
    if not isinstance(column.type, sa.JSON) and column.type.python_type is datetime:
        return datetime.fromisoformat(value)
    return value


def writable_defaults(table: sa.Table) -> dict[str, None]:
    """Values that a PUT gives to writable columns it leaves out: NULL, or the default."""
    return {
        column.name: None
        for column in table.columns
        if not server_owned(column) and column.nullable and column.default is None
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
