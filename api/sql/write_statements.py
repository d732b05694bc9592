"""The statements of writes, each built and compiled once per table, shape
and dialect (``sql.compiled``); ``sql.writes`` runs them in the request's
transaction.

Binds are named by their columns: "set_NAME" for an UPDATE's values, "pk0",
... for a key (``keys.key_parameters``), "expected" for the version a
write expects, "now" for ``updated_at``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Delete, Executable, Update

from api.collections import describe
from api.sql import STATEMENT_CACHE_SIZE
from api.sql.compiled import CompiledSelect, CompiledWrite, Row
from api.sql.conditions import FilterShape, Source, filter_clauses
from api.sql.keys import key_clause, row_statements


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def row_by_key(table: sa.Table, for_update: bool, dialect: Dialect) -> CompiledSelect:
    """The read of the row of key "pk0", ...; locked ``for_update``."""
    statements = row_statements(table)
    return CompiledSelect(statements.one_for_update if for_update else statements.one, dialect)


def _binds(table: sa.Table, names: tuple[str, ...], prefix: str = "") -> dict[str, Any]:
    """A bind per column of ``names``, named by it after ``prefix``, of its type."""
    return {name: sa.bindparam(prefix + name, type_=table.columns[name].type) for name in names}


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def returned_columns(table: sa.Table) -> tuple[Any, ...]:
    """What a write RETURNs: the row as stored. MariaDB's RETURNING computes
    a virtual column before AUTO_INCREMENT gives the new key (``id * 10``
    came back 0), so in a table with such a key each virtual column is
    RETURNed as its expression, which sees the key."""
    if table.autoincrement_column is None:
        return tuple(table.columns)
    return tuple(
        sa.literal_column(f"({column.computed.sqltext})", column.type).label(column.name)
        if column.computed is not None and not column.computed.persisted
        else column
        for column in table.columns
    )


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def insert(
    table: sa.Table, names: tuple[str, ...], returned: bool, dialect: Dialect
) -> CompiledWrite:
    """The INSERT of rows that give the columns ``names``, RETURNing them as
    stored when ``returned``. MariaDB and SQLite return the rows of a
    multi-row INSERT in the order of its VALUES."""
    statement = sa.insert(table).values(_binds(table, names))
    return CompiledWrite(
        statement.returning(*returned_columns(table)) if returned else statement, dialect
    )


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def upsert(
    table: sa.Table,
    given: tuple[str, ...],
    target: tuple[sa.Column[Any], ...],
    merge: bool,
    returned: bool,
    dialect: Dialect,
) -> CompiledWrite:
    """The upsert of rows that give the columns ``given``, RETURNing them as
    stored when ``returned``."""
    statement = upsert_statement(dialect, table, given, target, merge)
    return CompiledWrite(
        statement.returning(*returned_columns(table)) if returned else statement, dialect
    )


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def stamped_on_update(table: sa.Table) -> bool:
    """Whether a column of ``table`` takes the time of each change to its
    row by itself (MySQL's ``ON UPDATE CURRENT_TIMESTAMP``, which reflection
    keeps in the server default's text)."""
    return any(
        column.server_onupdate is not None
        or "ON UPDATE" in str(getattr(column.server_default, "arg", "")).upper()
        for column in table.columns
    )


def upsert_statement(
    dialect: Dialect,
    table: sa.Table,
    given: tuple[str, ...],
    target: tuple[sa.Column[Any], ...],
    merge: bool,
    rows: list[Row] | None = None,
) -> Any:
    """The upsert of rows that give the columns ``given``: of ``rows``, or of
    one row of binds. A clash updates the columns given but the target's,
    with the version counted and ``updated_at`` as the row gives it."""
    names = (*given, *(n for n in ("created_at", "updated_at") if n in table.columns))
    values: Any = rows if rows is not None else _binds(table, names)
    keep = [name for name in given if name not in {c.name for c in target}] or list(given[:1])
    version = describe(table).version
    if dialect.name == "sqlite":
        sqlite_statement = sqlite.insert(table).values(values)
        if not merge:
            return sqlite_statement.on_conflict_do_nothing(index_elements=list(target))
        excluded = sqlite_statement.excluded
        changes = _counted(table, {name: excluded[name] for name in keep}, version, excluded)
        return sqlite_statement.on_conflict_do_update(index_elements=list(target), set_=changes)
    mysql_statement = mysql.insert(table).values(values)
    if not merge:  # a no-op: INSERT IGNORE would also hide errors that are no clash
        return mysql_statement.on_duplicate_key_update({target[0].name: target[0]})
    inserted = mysql_statement.inserted
    changes = _counted(table, {name: inserted[name] for name in keep}, version, inserted)
    return mysql_statement.on_duplicate_key_update(changes)


def _counted(
    table: sa.Table, changes: dict[Any, Any], version: Any, proposed: Any
) -> dict[Any, Any]:
    """An upsert's changes, with the version counted and ``updated_at`` the
    ``proposed`` row's (MySQL's ``VALUES()``, SQLite's ``excluded``)."""
    if version is not None:
        changes[version.name] = version + sa.literal_column("1")
    if "updated_at" in table.columns:
        changes["updated_at"] = proposed["updated_at"]
    return changes


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def update_by_key(table: sa.Table, names: tuple[str, ...], dialect: Dialect) -> CompiledWrite:
    """The UPDATE of the columns ``names`` (``_changes``) of the row of key
    "pk0", ...; with the table's version, only while it is "expected"."""
    description = describe(table)
    statement = sa.update(table).where(key_clause(description.key))
    version = description.version
    if version is not None:
        statement = statement.where(version == sa.bindparam("expected", type_=version.type))
    return CompiledWrite(statement.values(_changes(table, names)), dialect)


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def update_where(
    table: sa.Table, names: tuple[str, ...], filters: tuple[FilterShape, ...]
) -> tuple[Update, dict[str, Source]]:
    """The UPDATE of the columns ``names`` (``_changes``) of every row that
    filters of the shapes ``filters`` match (PostgREST's PATCH of a
    collection), and where its filters' values come from in a query."""
    clauses, sources = filter_clauses(filters)
    return sa.update(table).where(*clauses).values(_changes(table, names)), sources


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def delete_where(
    table: sa.Table, filters: tuple[FilterShape, ...]
) -> tuple[Delete, dict[str, Source]]:
    """The DELETE of every row that filters of the shapes ``filters`` match
    (PostgREST's DELETE of a collection), and where their values come from."""
    clauses, sources = filter_clauses(filters)
    return sa.delete(table).where(*clauses), sources


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def compiled_write(statement: Executable, dialect: Dialect) -> CompiledWrite:
    """``statement`` (one that is itself cached, such as ``update_where``'s) compiled."""
    return CompiledWrite(statement, dialect)


def _changes(table: sa.Table, names: tuple[str, ...]) -> dict[str, Any]:
    """An UPDATE's values: the columns ``names`` (binds "set_NAME"), the
    table's version counted, ``updated_at`` set to "now"."""
    changes: dict[str, Any] = _binds(table, names, prefix="set_")
    version = describe(table).version
    if version is not None:
        changes[str(version.name)] = version + sa.literal_column("1")
    if "updated_at" in table.columns:
        changes["updated_at"] = sa.bindparam("now", type_=table.columns["updated_at"].type)
    return changes


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def delete_by_key(table: sa.Table, dialect: Dialect, checked: bool = True) -> CompiledWrite:
    """The DELETE of the row of key "pk0", ...; with the table's version and
    ``checked``, only while it is "expected"."""
    description = describe(table)
    statement = sa.delete(table).where(key_clause(description.key))
    version = description.version
    if version is not None and checked:
        statement = statement.where(version == sa.bindparam("expected", type_=version.type))
    return CompiledWrite(statement, dialect)
