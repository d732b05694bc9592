"""Stored routines served at ``/rpc/{name}``, as PostgREST serves functions.

MySQL/MariaDB have two kinds: a FUNCTION returns one value (``SELECT f(...)``),
a PROCEDURE is CALLed and may answer rows (its first result set) and OUT
parameters. What ``api.routines`` names (``*``: every one) is read from
``information_schema`` once at start-up, before any worker forks; each
parameter's type is parsed as a column's, so that arguments are checked as
row values are (``api.columns``). SQLite has no stored routines.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa
from pyramid.config import Configurator
from sqlalchemy.dialects.mysql.reflection import MySQLTableDefinitionParser, ReflectedState

from api.collections import StartupError
from api.columns import mapping
from api.db.startup import run_at_startup
from api.served_types import reflected_type
from api.settings import Settings


@dataclasses.dataclass(frozen=True, eq=False)
class Routine:
    """A stored FUNCTION or PROCEDURE, and its parameters as columns."""

    name: str
    kind: str  # "FUNCTION" or "PROCEDURE"
    declared: tuple[tuple[str, sa.Column[Any]], ...]  # (IN, OUT or INOUT, parameter)
    returns: sa.Column[Any] | None  # a function's value
    modifies_data: bool  # SQL DATA ACCESS: MODIFIES SQL DATA (no GET)
    schema: str | None = None  # another database of the server (api.schemas)

    @property
    def parameters(self) -> tuple[sa.Column[Any], ...]:
        """What a call gives: IN and INOUT parameters."""
        return tuple(column for mode, column in self.declared if mode != "OUT")

    @property
    def outputs(self) -> tuple[sa.Column[Any], ...]:
        """What a procedure gives back besides rows: OUT and INOUT parameters."""
        return tuple(column for mode, column in self.declared if mode != "IN")

    @property
    def allowed_methods(self) -> tuple[str, ...]:
        return ("POST",) if self.modifies_data else ("GET", "HEAD", "POST")

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join(str(p.name) for p in self.parameters)})"


ROUTINES = sa.text(
    "SELECT ROUTINE_NAME, ROUTINE_TYPE, SQL_DATA_ACCESS FROM information_schema.ROUTINES "
    "WHERE ROUTINE_SCHEMA = COALESCE(:schema, DATABASE()) ORDER BY ROUTINE_NAME"
)
PARAMETERS = sa.text(
    "SELECT SPECIFIC_NAME, PARAMETER_MODE, PARAMETER_NAME, DTD_IDENTIFIER "
    "FROM information_schema.PARAMETERS WHERE SPECIFIC_SCHEMA = COALESCE(:schema, DATABASE()) "
    "ORDER BY SPECIFIC_NAME, ORDINAL_POSITION"
)


def _read_routines(connection: Any, names: tuple[str, ...], schema: str | None) -> list[Routine]:
    if connection.dialect.name != "mysql":
        if names == ("*",):
            return []
        raise StartupError("api.routines: this database has no stored routines")
    found = {
        name: (kind, access)
        for name, kind, access in connection.execute(ROUTINES, {"schema": schema})
    }
    wanted = sorted(found) if names == ("*",) else list(dict.fromkeys(names))
    missing = [name for name in wanted if name not in found]
    if missing:
        raise StartupError(f"api.routines: no routine named {', '.join(missing)}")
    parser = MySQLTableDefinitionParser(connection.dialect, connection.dialect.identifier_preparer)
    metadata = sa.MetaData()
    parameters: dict[str, list[tuple[str | None, sa.Column[Any]]]] = {}  # None: the value
    for routine, mode, name, declared in connection.execute(PARAMETERS, {"schema": schema}):
        if routine in wanted:
            column = _as_column(parser, routine, name or "return", declared)
            parameters.setdefault(routine, []).append((mode, column))
    routines = []
    for name in wanted:
        kind, access = found[name]
        # Each routine's parameters as the columns of a table of its own, named
        # after it: api.columns maps and checks them as it does a table's.
        columns = parameters.get(name, [])
        sa.Table(name, metadata, *(column for _, column in columns))
        routines.append(
            Routine(
                name=name,
                kind=kind,
                declared=tuple((mode, c) for mode, c in columns if mode is not None),
                returns=next((c for mode, c in columns if mode is None), None),
                modifies_data=access == "MODIFIES SQL DATA",
                schema=schema,
            )
        )
    return routines


def _as_column(
    parser: MySQLTableDefinitionParser, routine: str, name: str, declared: str
) -> sa.Column[Any]:
    """A parameter as a column of its declared type (``decimal(5,2)``),
    parsed as SHOW CREATE TABLE's lines are."""
    state = ReflectedState()
    # Quoted as the server quotes: under sql_mode ANSI_QUOTES, "name".
    quoted = parser.preparer.quote_identifier(name)
    # The dialect's own parser of column types (private, as ``sql.compiled``
    # uses SQLAlchemy's internals; its tests pin the versions it runs on).
    parser._parse_column(f"  {quoted} {declared},", state)
    if not state.columns:
        raise StartupError(f"routine {routine}: cannot read the type {declared!r} of {name}")
    column: sa.Column[Any] = sa.Column(name, reflected_type(state.columns[0]["type"]))
    return column


def _check_mapped(routine: Routine) -> None:
    returns = () if routine.returns is None else (routine.returns,)
    for column in (*(column for _, column in routine.declared), *returns):
        try:
            mapping(column)
        except KeyError as exc:
            raise StartupError(
                f"routine {exc.args[0]}, which the API has no JSON mapping for"
            ) from None


def add_reflected_routines(config: Configurator) -> None:
    """Serve the stored routines ``api.routines`` names at ``/rpc/{name}``;
    and every one of each database ``api.schemas`` names, in its schema."""
    settings: Settings = config.registry.api_settings
    registry = config.registry
    url = settings.database_url
    patience = settings.db_startup_timeout  # when the first to reach the database
    if settings.routines:
        for routine in run_at_startup(
            url, _read_routines, settings.routines, None, patience=patience
        ):
            _check_mapped(routine)
            registry.api_routines[routine.name] = routine
    if url.get_backend_name() == "sqlite":
        return  # api.schemas stops start-up there (api.reflection)
    for schema in settings.schemas:
        served = registry.api_other_routines.setdefault(schema, {})
        for routine in run_at_startup(url, _read_routines, ("*",), schema, patience=patience):
            _check_mapped(routine)
            served[routine.name] = routine


def includeme(config: Configurator) -> None:
    config.registry.api_routines = {}
    config.registry.api_other_routines = {}  # by schema
    add_reflected_routines(config)
