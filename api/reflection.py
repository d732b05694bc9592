"""Reflection of existing tables and views (``api.tables``), once, at
start-up: what SQLAlchemy's reflection reads, and what it does not see,
read from ``information_schema`` (MariaDB's JSON, types it does not know,
the columns triggers set)."""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from pyramid.config import Configurator
from sqlalchemy import exc as sa_exc

from api.collections import StartupError
from api.db.startup import run_at_startup
from api.served_types import UNKNOWN_TO_REFLECTION, reflected_type
from api.settings import Settings

# Reflected with "*" but never served: Alembic's own bookkeeping.
NOT_SERVED = frozenset({"alembic_version"})

log = logging.getLogger(__name__)


def reflect(
    url: sa.URL,
    names: tuple[str, ...],
    declared: Iterable[str],
    schema: str | None = None,
    patience: float = 0.0,
) -> list[sa.Table]:
    """The tables and views ``names`` of the database, or of another
    database of its server (``schema``) (``("*",)``: all of them but
    ``declared``), reflected now (``run_at_startup``)."""
    tables: list[sa.Table] = run_at_startup(
        url, _reflect_sync, names, frozenset(declared), schema, patience=patience
    )
    return tables


def _reflect_sync(
    connection: Any, names: tuple[str, ...], declared: frozenset[str], schema: str | None
) -> list[Any]:
    inspector = sa.inspect(connection)
    views = set(inspector.get_view_names(schema=schema))
    existing = set(inspector.get_table_names(schema=schema)) | views
    if names == ("*",):
        wanted = sorted(existing - declared - NOT_SERVED)
    else:
        missing = [name for name in names if name not in existing]
        if missing:
            raise StartupError(f"api.tables: no table or view named {', '.join(missing)}")
        wanted = list(dict.fromkeys(names))
    metadata = sa.MetaData()
    sa.event.listen(metadata, "column_reflect", _served_type)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always", sa_exc.SAWarning)  # recorded, told in the log below
        # Types it does not know but the API serves, and tables it cannot
        # read, which _left_out tells in the log: no warning of its own.
        known = "|".join(UNKNOWN_TO_REFLECTION)
        warnings.filterwarnings("ignore", f"Did not recognize type '({known})'", sa_exc.SAWarning)
        warnings.filterwarnings("ignore", "Skipping table ", sa_exc.SAWarning)
        try:
            ordered = _referred_first(inspector, wanted, schema)
            metadata.reflect(connection, schema=schema, only=ordered, views=True)
        except sa_exc.DBAPIError as failed:  # SQLite: one broken view fails them all
            _reflect_one_by_one(connection, metadata, wanted, failed)
    _log_what_reflection_skipped(warned)
    updatable = _updatable_views(connection, schema) if views else frozenset()
    transactional = _transactional_engines(connection)
    catalog = _catalog_columns(connection, schema)
    tables = []
    for name in wanted:
        table = metadata.tables.get(name if schema is None else f"{schema}.{name}")
        refused = _refusal(connection, name, schema) if table is None or name in views else None
        if table is None or refused is not None:
            said = refused or "reflection could not describe it"
            _left_out(name, f"{name!r} cannot be read: {said}", names)
            continue
        table.info["view"] = name in views
        table.info["updatable"] = name in updatable
        for column_name, default, extra, nullable in catalog.get(name, ()):
            if column_name in table.columns:
                # A view's columns stay nullable, as reflection reads them: a
                # cursor over a column said NOT NULL would pass its nulls by.
                nullable = "YES" if name in views else nullable
                _as_the_catalog_says(table.columns[column_name], default, extra, nullable)
        if getattr(connection.dialect, "is_mariadb", False) and name not in views:
            _json_columns(connection, table)
        if connection.dialect.name == "mysql":
            _types_unknown_to_reflection(connection, table)
            _dates_that_may_be_zero(table)
            engine = table.dialect_options["mysql"].get("engine")
            _engine_without_transactions(table, engine, transactional)
            if name in updatable:
                _view_over_engine_without_transactions(connection, table, transactional)
            if name not in views:
                _columns_set_by_triggers(connection, table)
        tables.append(table)
    return tables


def _refusal(connection: Any, name: str, schema: str | None) -> str | None:
    """What the database says when ``name`` is read, if it refuses: a view
    over a table that is gone, or one the server's sql_mode refuses, which
    reflection cannot describe; or a view whose definer is gone (a dump
    restored elsewhere), which MySQL still describes, and no read of it
    succeeds."""
    probe = sa.select(sa.literal(1)).select_from(sa.table(name, schema=schema)).limit(0)
    try:
        connection.execute(probe)
    except sa_exc.DBAPIError as refused:
        said = getattr(refused.orig, "args", ())
        return str(said[-1]) if said else str(refused)  # MySQL's (errno, message)
    return None


UPDATABLE_VIEWS = sa.text(
    "SELECT TABLE_NAME FROM information_schema.VIEWS"
    " WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND IS_UPDATABLE = 'YES'"
)


def _updatable_views(connection: Any, schema: str | None) -> frozenset[str]:
    """The views MySQL can write through (a view of one table, or a join
    whose writes touch one of its tables); SQLite's views take no writes."""
    if connection.dialect.name != "mysql":
        return frozenset()
    return frozenset(name for (name,) in connection.execute(UPDATABLE_VIEWS, {"schema": schema}))


CATALOG_COLUMNS = sa.text(
    "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_DEFAULT, EXTRA, IS_NULLABLE"
    " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE())"
    " AND (COLUMN_DEFAULT IS NOT NULL OR EXTRA LIKE '%INVISIBLE%' OR IS_NULLABLE = 'NO')"
)
ON_UPDATE = re.compile(r"\bon update (\S+)", re.IGNORECASE)


def _catalog_columns(connection: Any, schema: str | None) -> dict[str, list[Any]]:
    """Each table's columns with a default, INVISIBLE or NOT NULL, as the
    catalog describes them: ``(name, default, extra, nullable)``."""
    if connection.dialect.name != "mysql":
        return {}
    found: dict[str, list[Any]] = {}
    for table, *column in connection.execute(CATALOG_COLUMNS, {"schema": schema}):
        found.setdefault(table, []).append(column)
    return found


def _as_the_catalog_says(
    column: sa.Column[Any], default: str | None, extra: str, nullable: str
) -> None:
    """What reflection did not read of a column's definition, read from the
    catalog. Its parser stops at what it does not know and drops the rest:
    a default of an expression with a quote or a comma
    (``concat('a','b')``); where MariaDB writes INVISIBLE or COMPRESSED
    before them, a NOT NULL, DEFAULT and AUTO_INCREMENT. A POST without such
    a column was refused as if it had no default. An INVISIBLE column, which
    ``SELECT *`` leaves out, is left out of ``select=*`` too
    (``Description.star``)."""
    if nullable == "NO":
        column.nullable = False
    if "INVISIBLE" in extra.upper():
        column.info["invisible"] = True
    if "auto_increment" in extra.lower():
        column.autoincrement = True
    if column.server_default is None and default not in (None, "NULL"):
        on_update = ON_UPDATE.search(extra)
        text = f"{default} ON UPDATE {on_update.group(1)}" if on_update else default
        column.server_default = sa.DefaultClause(sa.text(text))


def _log_what_reflection_skipped(warned: list[warnings.WarningMessage]) -> None:
    """SQLAlchemy's warnings of what it could not read (MariaDB's ``PERIOD
    FOR``, an index on an expression), each once, as a line of the log: as
    Python warnings they came twice, on stderr, outside the log's format,
    naming a line of this module. Other warnings go on as they came."""
    skipped = []
    for warning in warned:
        if issubclass(warning.category, sa_exc.SAWarning):
            skipped.append(str(warning.message))
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    for said in dict.fromkeys(skipped):
        log.warning("reflection: SQLAlchemy warns: %s", said)


def _referred_first(inspector: Any, names: list[str], schema: str | None) -> list[str]:
    """``names``, each table after those its foreign keys refer to (views
    last). Reflection reads them in this order, and reads a key's target
    as it meets it, in a nested call: a long chain of tables, each
    referring to one further on in name order, nested past Python's
    recursion limit, and start-up failed."""
    wanted = set(names)
    ordered = [
        name
        for name, _ in inspector.get_sorted_table_and_fkc_names(schema=schema)
        if name in wanted
    ]
    listed = set(ordered)
    return ordered + [name for name in names if name not in listed]


def _reflect_one_by_one(
    connection: Any, metadata: sa.MetaData, wanted: list[str], failed: Exception
) -> None:
    """Each of ``wanted`` that reflection can read, into ``metadata``; the
    error of the whole, if it reads none (the database, not one view)."""
    for name in wanted:
        with contextlib.suppress(sa_exc.DBAPIError):  # told by _left_out
            metadata.reflect(connection, only=[name], views=True)
    if not metadata.tables:
        raise failed


def _left_out(name: str, reason: str, tables: tuple[str, ...]) -> None:
    """A table the API cannot serve: under "*", left out with a warning (one
    such table stopped start-up for all the rest); named in api.tables, a
    StartupError."""
    if tables != ("*",):
        raise StartupError(reason)
    log.warning("api.tables = *: %r is not served: %s", name, reason)


JSON_CHECK = re.compile(r"json_valid\(`?([^`)]+)`?\)", re.IGNORECASE)


CHECKS = sa.text(
    "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
    "WHERE CONSTRAINT_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :name"
)


def _named(table: sa.Table) -> dict[str, Any]:
    """The binds of the queries below: the table, in its database (None: the URL's)."""
    return {"name": table.name, "schema": table.schema}


def _json_columns(connection: Any, table: sa.Table) -> None:
    """MariaDB's JSON is LONGTEXT with a json_valid() CHECK, which reflection
    does not see: a column so checked is served as the JSON it holds."""
    for (clause,) in connection.execute(CHECKS, _named(table)):
        match = JSON_CHECK.fullmatch(clause.strip())
        if match and match.group(1) in table.columns:
            table.columns[match.group(1)].type = sa.JSON(none_as_null=True)


TRANSACTIONAL_ENGINES = sa.text(
    "SELECT UPPER(ENGINE) FROM information_schema.ENGINES WHERE TRANSACTIONS = 'YES'"
)


def _transactional_engines(connection: Any) -> frozenset[str]:
    if connection.dialect.name != "mysql":
        return frozenset()
    return frozenset(engine for (engine,) in connection.execute(TRANSACTIONAL_ENGINES))


def _engine_without_transactions(
    table: sa.Table, engine: str | None, transactional: frozenset[str]
) -> bool:
    """Whether ``engine`` cannot undo a write (MyISAM, MEMORY, Aria): then
    named in ``table``'s info for ``Description.engine_without_transactions``."""
    if not engine or engine.upper() in transactional:
        return False
    table.info["engine_without_transactions"] = engine
    return True


VIEW_DEFINITION = sa.text(
    "SELECT VIEW_DEFINITION FROM information_schema.VIEWS"
    " WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :name"
)
NAMED_TABLES = sa.text(
    "SELECT CONCAT(t.TABLE_SCHEMA, '.', t.TABLE_NAME), t.ENGINE, v.VIEW_DEFINITION"
    " FROM information_schema.TABLES t LEFT JOIN information_schema.VIEWS v"
    " ON v.TABLE_SCHEMA = t.TABLE_SCHEMA AND v.TABLE_NAME = t.TABLE_NAME"
    " WHERE CONCAT(t.TABLE_SCHEMA, '.', t.TABLE_NAME) IN :names"
).bindparams(sa.bindparam("names", expanding=True))
# What a view's definition names as `database`.`table` (MySQL writes every
# name in full there: `db`.`t`.`column`, from `db`.`t`).
QUALIFIED_TABLE = re.compile(r"`((?:[^`]|``)+)`\.`((?:[^`]|``)+)`")


def _view_over_engine_without_transactions(
    connection: Any, view: sa.Table, transactional: frozenset[str]
) -> None:
    """An updatable view over a table whose engine cannot undo a write takes
    that table's engine (``Description.engine_without_transactions``): a
    write through it is as half done as one to the table. The tables a view
    names are followed through the views among them, to the tables below."""
    definitions = [connection.execute(VIEW_DEFINITION, _named(view)).scalar() or ""]
    seen: set[str] = set()
    while definitions:
        names = {f"{s}.{t}" for d in definitions for s, t in QUALIFIED_TABLE.findall(d)} - seen
        if not names:
            return
        seen |= names
        definitions = []
        for _, engine, definition in connection.execute(NAMED_TABLES, {"names": sorted(names)}):
            if definition is not None:
                definitions.append(definition)
            elif _engine_without_transactions(view, engine, transactional):
                return


COLUMN_TYPES = sa.text(
    "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS"
    " WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :name"
)


def _types_unknown_to_reflection(connection: Any, table: sa.Table) -> None:
    """MariaDB's INET4 and INET6, which reflection leaves as NullType (with
    a warning), served as text all the same (``columns.UNKNOWN_TO_REFLECTION``)."""
    unknown = {c.name for c in table.columns if isinstance(c.type, sa.types.NullType)}
    if not unknown:
        return
    for name, data_type in connection.execute(COLUMN_TYPES, _named(table)):
        served = UNKNOWN_TO_REFLECTION.get(str(data_type).lower())
        if name in unknown and served is not None:
            table.columns[name].type = served()


def _dates_that_may_be_zero(table: sa.Table) -> None:
    """MySQL's dates may hold a zero date or part (``0000-00-00``,
    ``2020-00-05``), which the API serves as their text: such a column takes
    that text back, in filters and bodies (``columns.mapping``)."""
    for column in table.columns:
        if isinstance(column.type, sa.Date | sa.DateTime):
            column.info["zero_dates"] = True


BEFORE_INSERT_TRIGGERS = sa.text(
    "SELECT ACTION_STATEMENT FROM information_schema.TRIGGERS"
    " WHERE TRIGGER_SCHEMA = COALESCE(:schema, DATABASE()) AND EVENT_OBJECT_TABLE = :name"
    " AND EVENT_MANIPULATION = 'INSERT' AND ACTION_TIMING = 'BEFORE'"
)

# An assignment to a new row's column in a trigger's body: SET NEW.x = ...,
# or a later one of its list (, NEW.x := ...); not a comparison (IF NEW.x = 0).
SET_NEW_COLUMN = re.compile(r"(?:\bSET\b|,)\s*NEW\s*\.\s*`?(\w+)`?\s*:?=", re.IGNORECASE)


def _columns_set_by_triggers(connection: Any, table: sa.Table) -> None:
    """A column that a BEFORE INSERT trigger sets (Sakila's ``SET
    NEW.create_date = NOW()``) need not be given, even where it takes no
    null and has no default: MySQL checks the row after the trigger ran.
    A user without the TRIGGER privilege sees the trigger but not its body:
    then any column may be the one it sets, and the database says which is
    missing (``database_errors``, 1364)."""
    for (body,) in connection.execute(BEFORE_INSERT_TRIGGERS, _named(table)):
        names = {c.name.lower() for c in table.columns}
        if body is not None:
            names &= {name.lower() for name in SET_NEW_COLUMN.findall(body)}
        for column in table.columns:
            if column.name.lower() in names:
                column.info["set_by_trigger"] = True


def _served_type(inspector: Any, table: sa.Table, column_info: dict[str, Any]) -> None:
    column_info["type"] = reflected_type(column_info["type"])
    if inspector.dialect.name == "mysql":
        # MySQL says AUTO_INCREMENT where a column is; reflection leaves
        # others of a type it does not count as an integer (YEAR, BIT) to
        # SQLAlchemy's guess, which, once served as integers, took a key of
        # one of them for one the server sets: a POST giving it was a 422.
        column_info.setdefault("autoincrement", False)


def add_reflected_tables(config: Configurator) -> None:
    """Serve the tables and views ``api.tables`` names, beside the declared
    ones; and every table and view of each database ``api.schemas`` names."""
    settings: Settings = config.registry.api_settings
    url = settings.database_url
    if settings.tables:
        declared = list(config.registry.api_collections)
        patience = settings.db_startup_timeout
        for table in reflect(url, settings.tables, declared, patience=patience):
            if table.name in declared:
                raise StartupError(f"api.tables: {table.name!r} is declared in code already")
            _add_reflected(config, table, settings.tables)
    for schema in settings.schemas:
        if url.get_backend_name() == "sqlite" or schema in (url.database, "public"):
            raise StartupError(
                f"api.schemas: {schema!r} is not another database of a MySQL/MariaDB server"
            )
        config.registry.api_other_schemas.setdefault(schema, {})  # served even while empty
        for table in reflect(url, ("*",), (), schema, patience=settings.db_startup_timeout):
            _add_reflected(config, table, ("*",), schema)


def _add_reflected(
    config: Configurator, table: sa.Table, names: tuple[str, ...], schema: str | None = None
) -> None:
    table.info["reflected"] = True
    try:
        read_only = table.info["view"] and not table.info["updatable"]
        config.add_collection(table, read_only=read_only, schema=schema)
    except StartupError as exc:  # Prisma's _prisma_migrations, "Order Details"
        _left_out(table.name, str(exc), names)
