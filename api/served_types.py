"""The SQLAlchemy types the API serves MySQL/MariaDB columns as, where
SQLAlchemy's own would mislead or do not exist: YEAR and BIT (no operators),
FLOAT (bound as a double), TIME (read modulo 24 hours), UUID (bound as 32
hex digits), INET4 and INET6 (unknown to reflection), and the spatial types
(``api.geojson``).
``reflected_type`` picks one for a reflected column; ``api.columns`` maps
each to JSON."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from api import geojson


class Year(sa.TypeDecorator[int]):
    """MySQL's YEAR, compared as the integer it is: SQLAlchemy's own YEAR and
    BIT types have no operators (comparing one is deprecated), so reflection
    serves them as these (``reflected_type``); declare them so too."""

    impl = sa.SmallInteger
    cache_ok = True


class Bit(sa.TypeDecorator[int]):
    """MySQL's BIT(length), as an integer (the driver hands over bytes)."""

    impl = sa.BigInteger
    cache_ok = True

    def __init__(self, length: int | None = None) -> None:
        super().__init__()
        self.length = length or 1

    def process_result_value(self, value: Any, dialect: Any) -> int | None:
        return int.from_bytes(value, "big") if isinstance(value, bytes) else value


class SinglePrecision(sa.TypeDecorator[float]):
    """MySQL's FLOAT, four bytes, whose values are bound as the floats it
    stores: it holds 1.1 as 1.10000002384 and compares it as a double, so
    ``WHERE k = 1.1`` matched no row, and the URL of a row keyed 1.1 (its
    own ``Location``) was a 404. A value past a float's range is bound as
    it is, for the database to refuse or compare."""

    impl = sa.Float
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if not isinstance(value, float) or not -FLOAT_MAX <= value <= FLOAT_MAX:
            return value
        return struct.unpack("f", struct.pack("f", value))[0]


FLOAT_MAX = 3.4028234663852886e38  # the largest value a FLOAT holds


class Duration(sa.TypeDecorator[str]):
    """MySQL's TIME, which holds -838:59:59 to 838:59:59 (a duration as much
    as a time of day), as its text: SQLAlchemy's TIME reads the driver's
    timedelta as a time of day, modulo 24 hours, so 100:00:00 came out as
    04:00:00 and -01:30:00 as 22:30:00."""

    impl = sa.String
    cache_ok = True

    def result_processor(self, dialect: Any, coltype: Any) -> Callable[[Any], Any]:
        return duration_text


def duration_text(value: Any) -> Any:
    """A timedelta as MySQL writes a TIME (``-01:30:00``, ``100:00:00.5``
    with six digits); anything else (None, text) as it is."""
    if not isinstance(value, timedelta):
        return value
    sign, value = ("-", -value) if value < timedelta(0) else ("", value)
    seconds = value.days * 86400 + value.seconds
    text = f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"{text}.{value.microseconds:06d}" if value.microseconds else text


class _Text(sa.TypeDecorator[str]):
    """A MariaDB type that the driver hands over, and takes, as text."""

    impl = sa.String
    cache_ok = True


class Uuid(_Text):
    """MariaDB's UUID (10.7+): text, rather than SQLAlchemy's Uuid, whose
    binds MySQL would be sent as 32 hex digits."""

    cache_ok = True


class Inet4(_Text):
    """MariaDB's INET4 (10.10+)."""

    cache_ok = True


class Inet6(_Text):
    """MariaDB's INET6 (10.5+)."""

    cache_ok = True


# MySQL/MariaDB's types that reflection does not know (its NullType), by
# their information_schema DATA_TYPE: served all the same.
UNKNOWN_TO_REFLECTION: dict[str, type[sa.TypeDecorator[Any]]] = {
    "inet4": Inet4,
    "inet6": Inet6,
    **dict.fromkeys(geojson.SPATIAL_TYPES, geojson.Geometry),
}


def reflected_type(column_type: Any) -> Any:
    """The type the API serves a reflected column as."""
    if isinstance(column_type, mysql.YEAR):
        return Year()
    if isinstance(column_type, mysql.BIT):
        return Bit(column_type.length)
    if isinstance(column_type, sa.Uuid):
        return Uuid()
    if isinstance(column_type, mysql.TIME):
        return Duration()
    if isinstance(column_type, mysql.FLOAT):
        return SinglePrecision()
    if isinstance(column_type, sa.Float) and column_type.asdecimal:
        # MySQL's DOUBLE and REAL reflect as Decimals of 10 places: 1e-20
        # was read as 0E-10. A double is served as the double it is.
        column_type.asdecimal = False
    return column_type
