"""SELECTs compiled once per dialect and run straight on the driver's cursor.

The one module that reaches into SQLAlchemy's internals: a driver error goes
through ``Connection._handle_dbapi_exception``, and on asyncmy through the
adapted connection's ``_handle_exception``, so that a read here fails as
SQLAlchemy's own execution would. ``SUPPORTED_SQLALCHEMY`` names the releases
this is tested on (``tests/reads/test_compiled.py`` fails on any other).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import Select

from api.bridge import await_

# The SQLAlchemy releases whose internals this module is written against.
SUPPORTED_SQLALCHEMY = ((2, 0, 31), (2, 2))  # from, and up to but not including

Row = dict[str, Any]


class CompiledSelect:
    """A SELECT compiled once for one dialect, run straight on the driver's cursor.

    SQLAlchemy's execution of even a cached statement builds a cache key, an
    execution context, a result and Row objects for every run. Here the
    statement is compiled once; a run binds its values in order, runs the SQL
    on the DBAPI cursor, and applies each column type's result processor, as
    SQLAlchemy would. A driver error goes through SQLAlchemy's own handling:
    the same wrapped exceptions, and a dead connection invalidated with the
    pool behind it (``Reader.run`` retries on that). The engine's cursor
    events fire, but cannot rewrite the statement. Only for statements
    without expanding parameters.

    On asyncmy, the production driver, the statement goes to the driver's own
    cursor in one ``await_()``: SQLAlchemy's adapted cursor takes three
    (enter, execute, close).
    """

    def __init__(
        self, statement: Select[Any], dialect: Dialect, json_keys: frozenset[str] = frozenset()
    ) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        # The bind names in the order the (positional) paramstyle takes them.
        self.names: Sequence[str] = compiled.positiontup or ()
        binds = compiled.binds
        self.bind_processors = [
            binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.names
        ]
        # Values the statement holds itself (SQLite's "OFFSET ?" after a LIMIT)
        self.fixed = {name: b.effective_value for name, b in binds.items() if not b.required}
        columns = statement.selected_columns
        self.keys = [str(column.name) for column in columns]
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]
        self.to_dicts = _row_converter(self.keys, processors, json_keys)
        self.on_driver_cursor = dialect.driver == "asyncmy"

    def dicts(self, connection: Connection, values: Mapping[str, Any]) -> list[Row]:
        """The rows for the bound ``values`` (by name), as dicts keyed by column,
        ready for a JSON response (the text of ``json_keys`` columns passed
        through), not for writing back."""
        parameters = [
            value if process is None or value is None else process(value)
            for value, process in zip(
                map({**self.fixed, **values}.__getitem__, self.names),
                self.bind_processors,
                strict=True,
            )
        ]
        return self.to_dicts(self._fetch(connection, parameters))

    def _fetch(self, connection: Connection, parameters: list[Any]) -> Any:
        """The rows as the driver gives them."""
        pooled: Any = connection.connection
        cursor = pooled.driver_connection.cursor() if self.on_driver_cursor else pooled.cursor()
        events: Any = connection.dispatch  # listeners (tracing, counts) see these reads too
        try:
            if events.before_cursor_execute:
                events.before_cursor_execute(connection, cursor, self.sql, parameters, None, False)
            if self.on_driver_cursor:
                fetched = _fetch_all(pooled.dbapi_connection, cursor, self.sql, parameters)
                rows = await_(fetched)
            else:
                cursor.execute(self.sql, parameters)
                rows = cursor.fetchall()
                cursor.close()
            if events.after_cursor_execute:
                events.after_cursor_execute(connection, cursor, self.sql, parameters, None, False)
            return rows
        except Exception as error:
            # SQLAlchemy's handling of a driver error, as in Connection.execute.
            # It closes SQLAlchemy's cursor; the driver's has nothing to close.
            sa_cursor = None if self.on_driver_cursor else cursor
            connection._handle_dbapi_exception(error, self.sql, parameters, sa_cursor, None)
            raise
        except BaseException:
            # Cancelled mid-statement (a deadline): what the connection will
            # read next is unknown, so it must never serve another read.
            connection.invalidate()
            raise


async def _fetch_all(adapted: Any, cursor: Any, sql: str, parameters: list[Any]) -> Any:
    """Every row of ``sql`` on the driver's own ``cursor``; errors raised as
    SQLAlchemy's cursor over ``adapted`` (its adapter of the connection) would."""
    try:
        await cursor.execute(sql, parameters)
        rows = await cursor.fetchall()
        await cursor.close()
        return rows
    except Exception as error:
        adapted._handle_exception(error)


def _row_converter(
    keys: list[str],
    processors: Sequence[Callable[[Any], Any] | None],
    json_keys: frozenset[str],
) -> Callable[[Any], list[Row]]:
    """A function from a statement's rows (tuples) to dicts, made for that statement.

    Its source is a list comprehension with one dict display, the keys as
    constants (``repr``), each value through its column type's result
    processor: cheaper than ``dict(zip(keys, row))`` and a second pass over
    the dicts for the JSON columns.
    """
    names = [f"c{i}" for i in range(len(keys))]
    namespace: dict[str, Any] = {"as_json": _as_json}
    entries = []
    for name, key, process in zip(names, keys, processors, strict=True):
        value = name
        if process is not None:
            namespace[f"process_{name}"] = process
            value = f"process_{name}({value})"
        if key in json_keys:
            value = f"as_json({value})"
        entries.append(f"{key!r}: {value}")
    source = f"lambda rows: [{{{', '.join(entries)}}} for ({', '.join(names)},) in rows]"
    converter: Callable[[Any], list[Row]] = eval(source, namespace)  # our source: repr()'d keys
    return converter


def _as_json(value: Any) -> Any:
    """Stored JSON text, written out as it is. SQLite hands back a JSON number
    as a number (and NULL as None), which are JSON already."""
    return orjson.Fragment(value) if isinstance(value, str) else value
