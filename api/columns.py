"""Each column type's JSON mapping: how its values are read from a body, from
a query string (filters, keys in URLs, cursors), written as JSON, and
described in OpenAPI.

One ``Mapping`` per kind of column; ``mapping(column)`` finds it by the
column's SQLAlchemy type (MySQL's own types are subclasses, checked first).
A value that does not fit raises ``ValueError`` whose message says what the
column takes. The README's type table lists the same kinds.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import ipaddress
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import ROUND_DOWN, Context, Decimal, InvalidOperation
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.sql import sqltypes

from api import geojson
from api.served_types import Bit, Duration, Inet4, Inet6, Uuid, Year

# Bits of each integer type, the most specific first (MySQL's are subclasses).
INT_BITS = (
    (mysql.TINYINT, 8),
    (mysql.MEDIUMINT, 24),
    (sa.SmallInteger, 16),
    (sa.BigInteger, 64),
    (sa.Integer, 32),
)
# Decimal, as the database writes it: no "+", no leading zero, no "-0".
INTEGER_TEXT = re.compile(r"(0|-?[1-9][0-9]{0,19})\Z")
# Room for MySQL's widest DECIMAL (65 digits); Python's default context has 28.
WIDE = Context(prec=80)
DECIMAL_TEXT = re.compile(r"-?[0-9]{1,65}(\.[0-9]{1,38})?\Z")


def int_range(column_type: Any) -> tuple[int, int]:
    """The (lowest, highest) value an integer column holds, signed or unsigned."""
    bits = next((b for t, b in INT_BITS if isinstance(column_type, t)), 32)
    if getattr(column_type, "unsigned", False):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def database_type(column: sa.Column[Any]) -> Any:
    """The column's type as the database holds it (a TypeDecorator's own)."""
    column_type = column.type
    if isinstance(column_type, sa.TypeDecorator):
        return column_type.impl_instance
    return column_type


@dataclasses.dataclass(frozen=True)
class Mapping:
    """How one kind of column meets JSON and query strings."""

    kind: str  # as the README's type table names it
    from_text: Callable[[sa.Column[Any], str], Any]  # a query string's text; ValueError
    from_json: Callable[[sa.Column[Any], Any], Any]  # a body's value; ValueError
    schema: Callable[[sa.Column[Any]], dict[str, Any]]  # OpenAPI, without nullability
    orderable: bool = True
    filterable: bool = True  # by comparisons (eq, gt, ...); every kind takes is.null


@functools.cache
def _column_range(column: sa.Column[Any]) -> tuple[int, int]:
    return int_range(database_type(column))


def _integer(column: sa.Column[Any], value: Any) -> int:
    if isinstance(value, str):
        if not INTEGER_TEXT.match(value):
            raise ValueError("an integer")
        value = int(value)
    elif not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("an integer")
    return _within(int(value), *_column_range(column))


def _within(value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ValueError(f"an integer from {low} to {high}")
    return value


# What a statement binds: a 64-bit integer, signed (or unsigned, for a column
# that is). SQLite's driver refuses anything wider.
BOUND_RANGE = (-(2**63), 2**63 - 1)


def _not_text(
    convert: Callable[[sa.Column[Any], Any], Any], what: str
) -> Callable[[sa.Column[Any], Any], Any]:
    """``convert`` for a body's values, where a number sent as a string is refused."""

    def from_json(column: sa.Column[Any], value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(what)
        return convert(column, value)

    return from_json


def _integer_schema(column: sa.Column[Any]) -> dict[str, Any]:
    low, high = int_range(column.type)
    fmt = "int64" if high > 2**31 - 1 or low < -(2**31) else "int32"
    return {"type": "integer", "format": fmt, "minimum": low, "maximum": high}


def _decimal(column: sa.Column[Any], value: Any) -> Decimal:
    """Exactly the digits sent: a JSON number (never read through a float
    that changed it: ``validation`` refuses those) or a string of digits."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("a decimal number")
    text = repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str) and not DECIMAL_TEXT.match(value):
        raise ValueError("a decimal number")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError("a decimal number") from None
    precision, scale = database_type(column).precision, database_type(column).scale or 0
    if precision is not None:
        # The bound first: quantizing a number far past it needs more digits than WIDE has.
        if abs(number) >= Decimal(10) ** (precision - scale):
            raise ValueError(
                f"a decimal number with at most {precision - scale} digits before the point"
            )
        step = Decimal(1).scaleb(-scale)
        if number != number.quantize(step, rounding=ROUND_DOWN, context=WIDE):
            raise ValueError(f"a decimal number with at most {scale} digits after the point")
    return number


def _decimal_schema(column: sa.Column[Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    precision, scale = database_type(column).precision, database_type(column).scale or 0
    if precision is not None:
        schema["multipleOf"] = float(Decimal(1).scaleb(-scale))
        bound = float(Decimal(10) ** (precision - scale))
        schema.update(exclusiveMaximum=bound, exclusiveMinimum=-bound)
    return schema


def _number(column: sa.Column[Any], value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError("a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("a number")
    return float(value)


def _text(column: sa.Column[Any], value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a string")
    length = getattr(database_type(column), "length", None)
    if length is not None and len(value) > length:
        raise ValueError(f"a string of at most {length} characters")
    return value


def _text_schema(column: sa.Column[Any]) -> dict[str, Any]:
    length = getattr(database_type(column), "length", None)
    return {"type": "string"} if length is None else {"type": "string", "maxLength": length}


def enum_members(column: sa.Column[Any]) -> tuple[str, ...]:
    return tuple(database_type(column).enums)


def _enum(column: sa.Column[Any], value: Any) -> str:
    members = enum_members(column)
    if value not in members:
        raise ValueError(f"one of {', '.join(members)}")
    return str(value)


def _set_members(column: sa.Column[Any]) -> tuple[str, ...]:
    return tuple(database_type(column).values)


def enum_members_of_set(column: sa.Column[Any]) -> tuple[str, ...]:
    """A SET's members, in the order of their bits."""
    return _set_members(column)


def _set_text(column: sa.Column[Any], text: str) -> str:
    """A SET as MySQL writes it (``a,b``), or as PostgREST's clients write an
    array (``{a,"b c"}``): its members in the column's order, joined by commas."""
    if len(text) >= 2 and text[0] == "{" and text[-1] == "}":
        text = ",".join(item.strip().strip('"') for item in text[1:-1].split(","))
    try:
        return _set_json(column, [] if text == "" else text.split(","))
    except ValueError:
        members = ", ".join(_set_members(column))
        raise ValueError(
            f"distinct members of {members}, joined by commas (a,b or {{a,b}})"
        ) from None


def _set_json(column: sa.Column[Any], value: Any) -> str:
    members = _set_members(column)
    if not isinstance(value, list) or not all(item in members for item in value):
        raise ValueError(f"an array of distinct members of {', '.join(members)}")
    if len(set(value)) != len(value):
        raise ValueError(f"an array of distinct members of {', '.join(members)}")
    return ",".join(member for member in members if member in value)


def _set_schema(column: sa.Column[Any]) -> dict[str, Any]:
    members = list(_set_members(column))
    return {"type": "array", "uniqueItems": True, "items": {"type": "string", "enum": members}}


def _parsed(parse: Callable[[str], Any], what: str) -> Callable[[sa.Column[Any], Any], Any]:
    def convert(column: sa.Column[Any], value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(what)
        try:
            return parse(value)
        except (ValueError, OverflowError):
            raise ValueError(what) from None

    return convert


def as_utc(value: datetime) -> datetime:
    """A naive datetime meaning UTC, as the datetime columns hold them; raises
    OverflowError for an instant outside the years 1 to 9999 in UTC."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _datetime(text: str) -> datetime:
    return as_utc(datetime.fromisoformat(text))


def _year(column: sa.Column[Any], value: Any) -> int:
    if isinstance(value, str):
        if not INTEGER_TEXT.match(value):
            raise ValueError("a year from 1901 to 2155")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1901 <= value <= 2155:
        raise ValueError("a year from 1901 to 2155")
    return value


def _bit_length(column: sa.Column[Any]) -> int:
    column_type: Any = column.type  # a Bit
    return int(column_type.length)


def _bit(column: sa.Column[Any], value: Any) -> int:
    bits = _bit_length(column)
    if isinstance(value, str):
        if not INTEGER_TEXT.match(value):
            raise ValueError(f"an integer from 0 to {2**bits - 1}")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**bits:
        raise ValueError(f"an integer from 0 to {2**bits - 1}")
    return value


NOT_BYTES = "base64 text, or \\x and hex digits"
HEX_BYTES = re.compile(r"(?:[0-9a-fA-F]{2})*")


def _bytes(column: sa.Column[Any], value: Any) -> bytes:
    """Base64, in either alphabet (RFC 4648 sections 4 and 5), padded or not;
    or PostgreSQL's hex format of bytea (``\\x0fb3``), which PostgREST's
    clients send, and with which no base64 text begins."""
    if not isinstance(value, str):
        raise ValueError(NOT_BYTES)
    if value.startswith("\\x"):
        if HEX_BYTES.fullmatch(value, 2) is None:
            raise ValueError(NOT_BYTES)
        data = bytes.fromhex(value[2:])
    else:
        text = value.replace("-", "+").replace("_", "/")
        try:
            data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(NOT_BYTES) from None
    length = getattr(database_type(column), "length", None)
    if length is not None and len(data) > length:
        raise ValueError(f"base64 of at most {length} bytes")
    return data


def _boolean(column: sa.Column[Any], value: Any) -> bool:
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def _any_json(column: sa.Column[Any], value: Any) -> Any:
    return value


def _no_text(column: sa.Column[Any], text: str) -> Any:
    raise ValueError("JSON, which only is.null and not.is.null filter")


def _fixed(schema: dict[str, Any]) -> Callable[[sa.Column[Any]], dict[str, Any]]:
    return lambda column: dict(schema)


INTEGER = Mapping("integer", _integer, _not_text(_integer, "an integer"), _integer_schema)


def _taking_truth(kind: Mapping) -> Mapping:
    """``kind``, whose filters and bodies also take true and false, as 1 and
    0, as MySQL reads TRUE and FALSE into its boolean columns: supabase-js
    sends eq('active', true) and insert({active: true}). Answers stay
    integers."""

    def from_text(column: sa.Column[Any], text: str) -> Any:
        return int(text == "true") if text in ("true", "false") else kind.from_text(column, text)

    def from_json(column: sa.Column[Any], value: Any) -> Any:
        return int(value) if isinstance(value, bool) else kind.from_json(column, value)

    def schema(column: sa.Column[Any]) -> dict[str, Any]:
        return {**kind.schema(column), "type": ["integer", "boolean"]}

    return dataclasses.replace(kind, from_text=from_text, from_json=from_json, schema=schema)


# MySQL's BOOLEAN, a TINYINT(1).
MYSQL_BOOLEAN = _taking_truth(INTEGER)
DECIMAL = Mapping("decimal", _decimal, _decimal, _decimal_schema)
NUMBER = Mapping(
    "number",
    _number,
    _not_text(_number, "a number"),
    _fixed({"type": "number", "format": "double"}),
)
# Text in a query is not held to the column's length: it may be a pattern,
# and a longer value just matches nothing.
STRING = Mapping("string", lambda column, text: text, _text, _text_schema)


def _enum_or_error_value(column: sa.Column[Any], text: str) -> str:
    """A member, or '': the value MySQL stores for one it could not take
    (written under a sql_mode that is not strict, or a member an ALTER
    took away), which ``e=eq.`` finds."""
    return text if text == "" else _enum(column, text)


ENUM = Mapping(
    "enum",
    _enum_or_error_value,
    _enum,
    lambda c: {"type": "string", "enum": list(enum_members(c))},
)
SET = Mapping("set", _set_text, _set_json, _set_schema)
DATETIME = Mapping(
    "date-time",
    _parsed(_datetime, "an RFC 3339 date-time"),
    _parsed(_datetime, "an RFC 3339 date-time"),
    _fixed({"type": "string", "format": "date-time"}),
)
DATE = Mapping(
    "date",
    _parsed(date.fromisoformat, "an RFC 3339 date (YYYY-MM-DD)"),
    _parsed(date.fromisoformat, "an RFC 3339 date (YYYY-MM-DD)"),
    _fixed({"type": "string", "format": "date"}),
)


# The text a MySQL date with a zero part is served as: the driver's, as
# MySQL writes it (0000-00-00 00:00:00, 2020-00-05).
ZERO_DATE_FORMAT = (
    r"([0-9]{4})-(0[0-9]|1[0-2])-([0-2][0-9]|3[01])"
    r"(?: (?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?)?"
)
ZERO_DATE_TEXT = re.compile(ZERO_DATE_FORMAT + r"\Z")


def _is_zero_date(value: Any) -> bool:
    match = ZERO_DATE_TEXT.match(value) if isinstance(value, str) else None
    return match is not None and "0000" in (match[1], match[2] * 2, match[3] * 2)


def _taking_zero_dates(kind: Mapping) -> Mapping:
    """``kind``, whose filters and bodies also take a zero date's text, as
    it is served: WordPress marks a draft with post_date_gmt =
    '0000-00-00 00:00:00', and a row read must go back as it came. Where a
    column's default is a zero date, its schema says it holds them: a client
    generated from a plain date-time failed to read such a row."""

    def or_zero_date(parse: Callable[[sa.Column[Any], Any], Any]) -> Any:
        def convert(column: sa.Column[Any], value: Any) -> Any:
            try:
                return parse(column, value)
            except ValueError:
                if _is_zero_date(value):
                    return value
                raise

        return convert

    def schema(column: sa.Column[Any]) -> dict[str, Any]:
        plain = kind.schema(column)
        default = getattr(column.server_default, "arg", None)
        if default is None or not _is_zero_date(str(default).strip("'")):
            return plain
        return {"anyOf": [plain, {"type": "string", "pattern": f"^{ZERO_DATE_FORMAT}$"}]}

    return dataclasses.replace(
        kind,
        from_text=or_zero_date(kind.from_text),
        from_json=or_zero_date(kind.from_json),
        schema=schema,
    )


MYSQL_DATETIME = _taking_zero_dates(DATETIME)
MYSQL_DATE = _taking_zero_dates(DATE)
TIME = Mapping(
    "time",
    _parsed(time.fromisoformat, "a time of day (HH:MM:SS)"),
    _parsed(time.fromisoformat, "a time of day (HH:MM:SS)"),
    _fixed({"type": "string", "format": "time"}),
)


def _duration(text: str) -> str:
    """MySQL's TIME text, in its range; as written (MySQL reads it)."""
    match = DURATION_TEXT.match(text)
    if match is None or int(match.group(1)) > 838:
        raise ValueError(A_DURATION)
    return text


DURATION_FORMAT = r"-?([0-9]{1,3}):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
DURATION_TEXT = re.compile(DURATION_FORMAT + r"\Z")
A_DURATION = "a TIME from -838:59:59 to 838:59:59 (HH:MM:SS[.ffffff])"
DURATION = Mapping(
    "time",
    lambda column, text: _duration(text),
    _parsed(_duration, A_DURATION),
    _fixed({"type": "string", "pattern": f"^{DURATION_FORMAT}$"}),
)
YEAR = Mapping(
    "year",
    _year,
    _not_text(_year, "a year from 1901 to 2155"),
    _fixed({"type": "integer", "minimum": 1901, "maximum": 2155}),
)
BIT = Mapping(
    "bit",
    _bit,
    _not_text(_bit, "an integer of bits"),
    lambda c: {"type": "integer", "minimum": 0, "maximum": 2 ** _bit_length(c) - 1},
)

# A BIT(1), the boolean of Hibernate's MySQL schemas.
BIT_BOOLEAN = _taking_truth(BIT)
BYTES = Mapping("bytes", _bytes, _bytes, _fixed({"type": "string", "format": "byte"}))
BOOLEAN = Mapping(
    "boolean", _boolean, _not_text(_boolean, "true or false"), _fixed({"type": "boolean"})
)
JSON = Mapping("json", _no_text, _any_json, _fixed({}), orderable=False, filterable=False)
GEOJSON = Mapping(
    "geojson",
    _no_text,
    lambda column, value: geojson.checked(value),
    _fixed({"type": "object", "description": "a GeoJSON geometry (RFC 7946)"}),
    orderable=False,
    filterable=False,
)


def _text_of(kind: str, parse: Callable[[str], Any], what: str) -> Mapping:
    """A kind held as text that ``parse`` reads (JSON Schema's format
    ``kind``): given as its canonical text."""
    convert = _parsed(lambda text: str(parse(text)), what)
    return Mapping(kind, convert, convert, _fixed({"type": "string", "format": kind}))


UUID = _text_of("uuid", uuid.UUID, "a UUID")
INET4 = _text_of("ipv4", ipaddress.IPv4Address, "an IPv4 address")
# An IPv4 address goes as the IPv6 address that maps it (::ffff:10.0.0.1), as MariaDB asks.
INET6 = _text_of("ipv6", ipaddress.IPv6Address, "an IPv6 address")

# The kinds a JSON body gives as numbers or booleans, never as text: a CSV
# body's cells of them are read from their text (views.bodies).
READ_FROM_TEXT = frozenset({INTEGER, MYSQL_BOOLEAN, NUMBER, YEAR, BIT, BIT_BOOLEAN, BOOLEAN})
# The kinds that is.true and is.false filter.
TAKES_TRUTH = frozenset({BOOLEAN, MYSQL_BOOLEAN, BIT_BOOLEAN})

# The most specific types first: MySQL's SET and ENUM are strings too, and
# (before SQLAlchemy 2.1) a Float is a Numeric.
BY_TYPE: tuple[tuple[type, Mapping], ...] = (
    (geojson.Geometry, GEOJSON),  # its impl is JSON
    (sa.JSON, JSON),
    (mysql.SET, SET),
    (sa.Enum, ENUM),
    (Year, YEAR),
    (Bit, BIT),
    (sa.Boolean, BOOLEAN),
    (Uuid, UUID),
    (Inet4, INET4),
    (Inet6, INET6),
    (sa.Integer, INTEGER),
    (sa.Float, NUMBER),
    (sa.Numeric, DECIMAL),
    (sa.DateTime, DATETIME),
    (sa.Date, DATE),
    (Duration, DURATION),
    (sa.Time, TIME),
    (sqltypes._Binary, BYTES),
    (sa.String, STRING),
)


@functools.cache
def mapping(column: sa.Column[Any]) -> Mapping:
    """The JSON mapping of ``column``'s type; KeyError for a type without one."""
    for column_type in (column.type, database_type(column)):  # the project's own types first
        for type_, found in BY_TYPE:
            if isinstance(column_type, type_):
                if found is INTEGER and _holds_booleans(column):
                    return MYSQL_BOOLEAN
                # An expression (a cast, a related row's column) has no info.
                zero_dates = getattr(column, "info", {}).get("zero_dates")
                if found in (DATETIME, DATE) and zero_dates:
                    return MYSQL_DATETIME if found is DATETIME else MYSQL_DATE
                return BIT_BOOLEAN if found is BIT and _bit_length(column) == 1 else found
    raise KeyError(f"{column.table.name}.{column.name} is of type {column_type!r}")


def parse_text(column: sa.Column[Any], text: str) -> Any:
    """``text`` from a query string or a URL as a value of ``column``; ValueError."""
    return mapping(column).from_text(column, text)


def parse_compared(column: sa.Column[Any], text: str) -> Any:
    """``text`` as a filter compares ``column`` with it: a number as a number,
    past the column's range too (``gt.-1`` on an unsigned key is every row,
    and ``lt.100`` on a DECIMAL(4,2) too, as MySQL and PostgreSQL compare
    them), as far as a statement binds it; a YEAR too, but from 0 to 99,
    which MySQL would read as a two-digit year; else as ``parse_text``
    reads it."""
    kind = mapping(column)
    if kind is INTEGER:
        if not INTEGER_TEXT.match(text):
            raise ValueError("an integer")
        low, high = _column_range(column)
        return _within(int(text), min(low, BOUND_RANGE[0]), max(high, BOUND_RANGE[1]))
    if kind is DECIMAL:
        if not DECIMAL_TEXT.match(text):
            raise ValueError("a decimal number")
        return Decimal(text)
    if kind is YEAR and INTEGER_TEXT.match(text) and not 0 <= int(text) <= 99:
        return _within(int(text), *BOUND_RANGE)  # MySQL reads 0 to 99 as two-digit years
    return kind.from_text(column, text)


def single_value_parser(column: sa.Column[Any]) -> Callable[[str], Any]:
    """``parse_text`` for ``column``, made once, returning None instead of raising."""
    if mapping(column) is INTEGER:
        low, high = int_range(database_type(column))

        def integer(text: str) -> int | None:
            if not INTEGER_TEXT.match(text):
                return None
            value = int(text)
            return value if low <= value <= high else None

        return integer
    from_text = mapping(column).from_text

    def other(text: str) -> Any:
        try:
            return from_text(column, text)
        except (ValueError, OverflowError):
            return None

    return other


def _holds_booleans(column: sa.Column[Any]) -> bool:
    column_type = database_type(column)
    return isinstance(column_type, mysql.TINYINT) and column_type.display_width == 1


def to_text(column: sa.Column[Any], value: Any) -> Any:
    """A value as JSON that ``parse_text`` reads back exactly (cursors)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bytes):
        return base64.urlsafe_b64encode(value).decode().rstrip("=")
    if isinstance(value, set | frozenset):
        return ",".join(sorted(value))
    if isinstance(value, datetime) and value.tzinfo is None:  # UTC, as JSON writes it
        return value.isoformat() + "Z"
    if isinstance(value, date | time):  # datetime too
        return value.isoformat()
    return value  # a float: JSON writes it exactly


def json_default(value: Any) -> Any:
    """What orjson cannot write itself: DECIMAL as a number with its exact
    digits, bytes as base64, a SET as an array (sorted)."""
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value, "f"))
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
