"""Statements of rows by primary key: one row (locked or not), a batch of
rows, the rows of a list of keys; and how a plain read selects a column.

A key of several columns is bound column by column ("pk0", "pk1", ...; "k0_0",
"k0_1", ... in a batch), so that every statement's SQL is final when compiled.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import cache, lru_cache
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement, Select

from api.sql import STATEMENT_CACHE_SIZE


def passed_through(column: sa.Column[Any]) -> ColumnElement[Any]:
    """How a plain read selects ``column``: JSON as its stored text, which the
    compiled read hands to orjson as it is, instead of parsing it only to
    write it again. The text is valid JSON: MariaDB checks it (JSON is
    LONGTEXT with a json_valid CHECK), and on SQLite the column is written
    through this API, which writes it with orjson."""
    if isinstance(column, sa.Column) and isinstance(column.type, sa.JSON):
        return sa.type_coerce(column, sa.Text).label(column.name)
    return column


def json_keys(columns: Any) -> frozenset[str]:
    """The names of the JSON columns read as stored text (``passed_through``):
    a path into one is read as the database extracts it."""
    return frozenset(
        str(column.name)
        for column in columns
        if isinstance(column, sa.Column) and isinstance(column.type, sa.JSON)
    )


class RowStatements(NamedTuple):
    """The statements of one table's rows by primary key (one column or several)."""

    key: tuple[sa.Column[Any], ...]
    one: Select[Any]  # binds "pk0", "pk1", ...: key_parameters()
    one_for_update: Select[Any]
    many: Select[Any]  # expanding bind "pks": key values, or tuples of them


@cache
def row_statements(table: sa.Table) -> RowStatements:
    key = tuple(table.primary_key.columns)
    one = sa.select(table).where(key_clause(key))
    many = sa.select(table).where(_key_expression(key).in_(sa.bindparam("pks", expanding=True)))
    return RowStatements(key, one, one.with_for_update(), many)


def key_clause(key: tuple[sa.Column[Any], ...]) -> ColumnElement[bool]:
    """The key columns equal to the binds "pk0", "pk1", ..."""
    return sa.and_(*(column == sa.bindparam(f"pk{i}") for i, column in enumerate(key)))


def key_parameters(key: tuple[sa.Column[Any], ...], pk: Any) -> dict[str, Any]:
    """The binds of ``key_clause`` for the key value ``pk`` (a tuple when composite)."""
    if len(key) == 1:
        return {"pk0": pk}
    return {f"pk{i}": value for i, value in enumerate(pk)}


def _key_expression(key: tuple[sa.Column[Any], ...]) -> ColumnElement[Any]:
    return key[0] if len(key) == 1 else sa.tuple_(*key)


def batch(
    table: sa.Table, keys: list[Any], parsed: bool = False
) -> tuple[Select[Any], dict[str, Any]]:
    """The statement of the rows of ``table`` whose primary keys are ``keys``,
    and its parameters; JSON passed through as stored text unless ``parsed``.

    The IN list is padded to a power of two with the last key again, so that
    batches of any size share a few statements.
    """
    size, values = padded_keys(keys)
    return _batch_statement(table, size, parsed), values


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def _batch_statement(table: sa.Table, size: int, parsed: bool) -> Select[Any]:
    key = tuple(table.primary_key.columns)
    columns = table.columns if parsed else map(passed_through, table.columns)
    return sa.select(*columns).where(in_keys(key, size))


def keys_in(table: sa.Table) -> ColumnElement[bool]:
    """The table's key in the expanding bind "pks" (values, or tuples of them)."""
    key = tuple(table.primary_key.columns)
    return _key_expression(key).in_(sa.bindparam("pks", expanding=True))


def padded_keys(keys: list[Any]) -> tuple[int, dict[str, Any]]:
    """The binds of ``keys`` (values, or tuples of them) in an embed
    statement, padded to a power of two as a batch is (``batch``), and that size."""
    size = 1 << (len(keys) - 1).bit_length()
    padded = keys + keys[-1:] * (size - len(keys))
    if not isinstance(keys[0], tuple):
        return size, {f"k{i}": key for i, key in enumerate(padded)}
    return size, {f"k{i}_{j}": part for i, key in enumerate(padded) for j, part in enumerate(key)}


def in_keys(columns: tuple[sa.Column[Any], ...], size: int) -> ColumnElement[bool]:
    """``columns`` IN ``size`` bound keys: k0, k1, ... (k0_0, k0_1, ... for several columns)."""
    if len(columns) == 1:
        keys: list[Any] = [sa.bindparam(f"k{i}", type_=columns[0].type) for i in range(size)]
        return columns[0].in_(keys)
    keys = [
        sa.tuple_(*(sa.bindparam(f"k{i}_{j}", type_=c.type) for j, c in enumerate(columns)))
        for i in range(size)
    ]
    return sa.tuple_(*columns).in_(keys)


def pair_as_the_database_does(found: dict[Any, Any], asked: Iterable[Any]) -> list[Any]:
    """Give keys asked for the rows the database found for them where its
    equality is not Python's: MySQL's case-insensitive collations and
    trailing spaces find ``USA`` for ``usa``. ``found`` holds each row under
    its own key; a row under a key no one asked for equals only keys that
    found no row under their own (keys are unique under the database's
    equality). One of each pair; else each such key pairs with the one such
    row ``loose`` equates it with. The keys left without a row, which the
    database may still equate with one by rules of its own."""
    asked = dict.fromkeys(asked)  # in order, and looked up at once
    unmatched = [key for key in asked if key not in found]
    unclaimed = [key for key in found if key not in asked]
    if not unmatched or not unclaimed:
        return unmatched
    if len(unmatched) == 1 and len(unclaimed) == 1:
        found[unmatched[0]] = found[unclaimed[0]]
        return []
    loosely: dict[Any, list[Any]] = {}
    for key in unclaimed:
        loosely.setdefault(loose(key), []).append(key)
    left = []
    for key in unmatched:
        candidates = loosely.get(loose(key), [])
        if len(candidates) == 1:
            found[key] = found[candidates[0]]
        else:
            left.append(key)
    return left


def loose(key: Any) -> Any:
    """``key`` as MySQL's usual collations compare text, near enough to
    propose pairs: without case, accents or trailing spaces (``Café `` is
    ``cafe``). Each collation has its own rules (``ß`` is ``s`` under
    general_ci, ``ss`` under unicode_ci): a pairing that rests on this is
    one the database made already, or one it is asked to confirm."""
    if isinstance(key, tuple):
        return tuple(map(loose, key))
    if not isinstance(key, str):
        return key
    folded = key.lower().rstrip(" ")
    if folded.isascii():
        return folded
    return "".join(
        c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c)
    )
