"""Which text a MySQL column's character set cannot hold: a filter compares
such text with the column as utf8mb4 (``sql.conditions``), and a key that
holds it names no row (``collections``), where MySQL refused to compare
them (1267) and PostgreSQL would find nothing."""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa

from api.columns import database_type

# What Python encodes a MySQL character set's text with, to tell whether a
# column can hold a value. MySQL's latin1 is Windows' cp1252. A set that is
# not here holds any text, as utf8mb4 does, or is left for MySQL to judge.
CHARSET_CODECS = {
    "ascii": "ascii",
    "latin1": "cp1252",
    "latin2": "iso8859_2",
    "latin5": "iso8859_9",
    "greek": "iso8859_7",
    "hebrew": "iso8859_8",
    "cp1250": "cp1250",
    "cp1251": "cp1251",
    "cp1256": "cp1256",
    "koi8r": "koi8_r",
    "koi8u": "koi8_u",
    "sjis": "shift_jis",
    "cp932": "cp932",
    "ujis": "euc_jp",
    "euckr": "euc_kr",
    "gb2312": "gb2312",
    "gbk": "gbk",
    "big5": "big5",
}
# Sets of Unicode's first 65,536 characters only: no emoji.
BMP_CHARSETS = frozenset({"utf8mb3", "utf8", "ucs2"})


def cannot_hold(column: Any, value: Any) -> bool:
    """Whether ``column`` holds no text like ``value`` (a string, or a tuple
    of them): a character its MySQL character set has not, such as an
    emoji in utf8mb3 (MySQL 5's "utf8") or Cyrillic in latin1."""
    charset = charset_of(column)
    if charset is None:
        return False
    texts = value if isinstance(value, tuple) else (value,)
    return any(isinstance(text, str) and not _holds(charset, text) for text in texts)


def _holds(charset: str, text: str) -> bool:
    if charset in BMP_CHARSETS:
        return all(ord(character) <= 0xFFFF for character in text)
    try:
        text.encode(CHARSET_CODECS[charset])
    except UnicodeEncodeError:
        return False
    return True


@functools.lru_cache(maxsize=4096)
def charset_of(column: Any) -> str | None:
    """A MySQL text column's character set, where some text is not in it
    (``CHARSET_CODECS``, ``BMP_CHARSETS``): its own, else its table's, as
    reflection read them; None for any other column."""
    table = getattr(column, "table", None)
    while table is not None and not isinstance(table, sa.Table):
        table = getattr(table, "element", None)  # an alias's (an embed's), or none
    if table is None or not isinstance(database_type(column), sa.String):
        return None
    options = table.dialect_options["mysql"]
    charset = getattr(
        database_type(column), "charset", None
    )  # reflection's key, then a declared one's
    charset = str(charset or options.get("default charset") or options.get("default_charset"))
    charset = charset.lower()
    return charset if charset in BMP_CHARSETS or charset in CHARSET_CODECS else None
