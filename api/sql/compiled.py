"""Statements compiled once per dialect and run straight on the driver's cursor.

The one module that reaches into SQLAlchemy's internals: a driver error goes
through ``Connection._handle_dbapi_exception``, and on asyncmy through the
adapted connection's ``_handle_exception``, so that a statement here fails as
SQLAlchemy's own execution would. ``SUPPORTED_SQLALCHEMY`` names the releases
this is tested on (``tests/sql/test_compiled.py`` fails on any other).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import Executable

from api.bridge import await_, give_way

# The SQLAlchemy releases whose internals this module is written against.
SUPPORTED_SQLALCHEMY = ((2, 0, 31), (2, 2))  # from, and up to but not including

Row = dict[str, Any]

_NOTHING: Mapping[str, Any] = {}  # no values shared by every row


class CompiledSelect:
    """A statement compiled once for one dialect, run straight on the driver's
    cursor: a SELECT, or a write (``CompiledWrite``).

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
        self, statement: Executable, dialect: Dialect, json_keys: frozenset[str] = frozenset()
    ) -> None:
        compiled = self.compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        self.sql = compiled.string
        # The bind names in the order the (positional) paramstyle takes them.
        self.names: Sequence[str] = compiled.positiontup or ()
        binds = compiled.binds
        processors = [
            binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.names
        ]
        # Values the statement holds itself (SQLite's "OFFSET ?" after a LIMIT)
        self.fixed = {name: b.effective_value for name, b in binds.items() if not b.required}
        self.processors = processors
        self.bind = _binder(self.names, processors, self.fixed)
        # A SELECT's columns, or those a write RETURNs (a CALL's text has none)
        columns = getattr(statement, "exported_columns", ())
        self.keys = [str(column.name) for column in columns]
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]
        self.to_dicts = _row_converter(self.keys, processors, json_keys)
        self.on_driver_cursor = dialect.driver == "asyncmy"
        self.driver_cursor: Any = None  # the driver's cursor class: its default

    def dicts(self, connection: Connection, values: Mapping[str, Any]) -> list[Row]:
        """The rows for the bound ``values`` (by name), as dicts keyed by column,
        ready for a JSON response (the text of ``json_keys`` columns passed
        through), not for writing back."""
        return self.to_dicts(self._run(connection, self._parameters(values))[0])

    def _parameters(self, values: Mapping[str, Any]) -> list[Any]:
        """``values`` (by name) in the order of the statement's binds, as the driver takes them."""
        return self.bind(values)

    def _run(
        self,
        connection: Connection,
        parameters: list[Any],
        sql: str | None = None,
        fetch: Callable[..., Any] | None = None,
    ) -> tuple[Any, int]:
        """The rows as the driver gives them (None for a write that returns
        none), and the count of rows the statement matched; on the driver's
        cursor, as ``fetch`` reads them (``_fetch_all``'s signature)."""
        sql = self.sql if sql is None else sql
        pooled: Any = connection.connection
        if self.on_driver_cursor:
            cursor = pooled.driver_connection.cursor(self.driver_cursor)
        else:
            cursor = pooled.cursor()
        events: Any = connection.dispatch  # listeners (tracing, counts) see these reads too
        try:
            if events.before_cursor_execute:
                events.before_cursor_execute(connection, cursor, sql, parameters, None, False)
            if self.on_driver_cursor:
                fetched = (fetch or _fetch_all)(pooled.dbapi_connection, cursor, sql, parameters)
                rows, count = await_(fetched)
            else:
                cursor.execute(sql, parameters)
                rows = None if cursor.description is None else cursor.fetchall()
                count = cursor.rowcount
                cursor.close()
            if events.after_cursor_execute:
                events.after_cursor_execute(connection, cursor, sql, parameters, None, False)
            return rows, count
        except Exception as error:
            # SQLAlchemy's handling of a driver error, as in Connection.execute.
            # It closes SQLAlchemy's cursor; the driver's has nothing to close.
            sa_cursor = None if self.on_driver_cursor else cursor
            connection._handle_dbapi_exception(error, sql, parameters, sa_cursor, None)
            raise
        except BaseException:
            # Cancelled mid-statement (a deadline): what the connection will
            # read next is unknown, so it must never serve another read.
            connection.invalidate()
            raise


class CompiledWrite(CompiledSelect):
    """An INSERT, UPDATE or DELETE compiled once for one dialect, run straight
    on the driver's cursor in the caller's transaction: it answers the rows
    it RETURNs, and the count of rows it matched.

    An INSERT of one row's VALUES (every bind in that group) runs for many
    rows too, as one statement of many VALUES groups per page of rows, as
    SQLAlchemy's "insertmanyvalues" does: it takes the group from a
    compilation that RETURNs, where SQLAlchemy describes it.
    """

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        super().__init__(statement, dialect)
        # Columns whose defaults are computed in Python, for each row, as
        # SQLAlchemy's execution would (``default=1``, ``default=utcnow``).
        prefetched = [*self.compiled.insert_prefetch, *self.compiled.update_prefetch]
        self.defaults = {str(column.key): column.default for column in prefetched}
        self.values_group: str | None = None  # "(%s, %s)": one row's VALUES
        # run_many's binders, by the columns its rows give and those every row shares
        self.page_binders: dict[tuple[frozenset[str], tuple[str, ...]], PageBinder] = {}
        # Pages within the driver's limit of parameters a statement.
        per_page = dialect.insertmanyvalues_max_parameters // max(1, len(self.names))
        self.page_size = max(1, min(dialect.insertmanyvalues_page_size, per_page))
        if getattr(statement, "is_insert", False) and dialect.insert_returning:
            first: Any = next(iter(statement.table.columns))  # type: ignore[attr-defined]
            returning = statement.returning(first)  # type: ignore[attr-defined]
            single = returning.compile(dialect=dialect, for_executemany=True)._insertmanyvalues
            group = f"({single.single_values_expr})"
            if single.num_positional_params_counted == len(self.names) and group in self.sql:
                self.values_group = group

    def _parameters(self, values: Mapping[str, Any]) -> list[Any]:
        if self.defaults and not self.defaults.keys() <= values.keys():
            values = {**self._defaulted(values), **values}
        return self.bind(values)

    def _defaulted(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The Python-side defaults of the columns ``values`` leave out: a
        value, or a function's result (SQLAlchemy wraps a function of no
        argument to take the context)."""
        return {
            name: default.arg(None) if default.is_callable else default.arg
            for name, default in self.defaults.items()
            if name not in values
        }

    def run(self, connection: Connection, values: Mapping[str, Any]) -> tuple[list[Row], int]:
        """The rows it RETURNs for the bound ``values`` (by name), and the count it matched."""
        rows, count = self._run(connection, self._parameters(values))
        return ([] if rows is None else self.to_dicts(rows)), count

    def run_many(
        self,
        connection: Connection,
        many: Sequence[Mapping[str, Any]],
        shared: Mapping[str, Any] = _NOTHING,
    ) -> list[Row]:
        """For an INSERT: ``many`` rows of values that give the same columns,
        and the values ``shared`` gives every row in their place (its
        stamps), a page of rows a statement; every row it RETURNs, in the
        order the database gives them."""
        group = self.values_group
        if group is None:  # no column given (DEFAULT VALUES): no group to repeat
            runs = (self.run(connection, {**values, **shared})[0] for values in many)
            return [row for rows in runs for row in rows]
        head, _, tail = self.sql.partition(group)
        shape = (frozenset(many[0]), tuple(shared))
        bind_page = self.page_binders.get(shape)
        if bind_page is None:
            bind_page = self.page_binders[shape] = _page_binder(self, *shape)
        returned: list[Row] = []
        for start in range(0, len(many), self.page_size):
            page = many[start : start + self.page_size]
            sql = head + ", ".join([group] * len(page)) + tail
            rows, _ = self._run(connection, _bound_in_turns(bind_page, page, shared), sql)
            returned += [] if rows is None else self.to_dicts(rows)
        return returned


# Rows bound between two looks at the clock (give_way).
ROWS_A_BIND = 100


def _bound_in_turns(bind_page: PageBinder, page: Sequence[Any], shared: Any) -> list[Any]:
    """The parameters of ``page``, bound ``ROWS_A_BIND`` rows at a time, in
    turns with other requests: binding a whole page, and the driver's
    escaping of it after, would each hold the loop."""
    parameters: list[Any] = []
    for start in range(0, len(page), ROWS_A_BIND):
        parameters += bind_page(page[start : start + ROWS_A_BIND], shared)
        give_way()
    return parameters


class CompiledCall(CompiledSelect):
    """A stored procedure's ``CALL`` compiled once for one dialect (asyncmy),
    whose first result set is read through the driver's unbuffered cursor
    (SSCursor): no more than the rows asked for are ever held, however many
    it makes."""

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        from asyncmy.cursors import SSCursor  # the production driver's; routines need MySQL

        super().__init__(statement, dialect)
        self.driver_cursor = SSCursor

    def first_rows(
        self, connection: Connection, values: Mapping[str, Any], limit: int
    ) -> list[Row] | None:
        """The first ``limit`` rows of the CALL's first result set, keyed by
        its column names, as the driver gives them (None if it makes none).
        An error the procedure raises after its rows (a SIGNAL) is raised
        as SQLAlchemy's own execution raises it, which only logs an error
        that comes as it closes a cursor."""
        fetch = functools.partial(_first_rows, limit=limit)
        return self._run(connection, self._parameters(values), fetch=fetch)[0]


async def _first_rows(
    adapted: Any, cursor: Any, sql: str, parameters: list[Any], limit: int
) -> tuple[list[Row] | None, int]:
    """``CompiledCall.first_rows`` on the driver's unbuffered ``cursor``:
    closing it reads past the rest of the set, and any later one, to the
    CALL's status, raising an error found on the way."""
    try:
        await cursor.execute(sql, parameters)
        rows = None
        if cursor.description is not None:
            keys = [str(column[0]) for column in cursor.description]
            rows = [dict(zip(keys, row, strict=True)) for row in await cursor.fetchmany(limit)]
        await cursor.close()
        return rows, -1  # the DBAPI's unknown count: a CALL's is not read
    except Exception as error:
        adapted._handle_exception(error)
        raise  # _handle_exception always raises


class StatementFailed(Exception):
    """Statement ``index`` of a script failed with ``error`` (SQLAlchemy's
    exception, as its own execution raises it); those before it ran, those
    after it did not."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


# A script's length in characters, at most: well under MariaDB's max_allowed_packet.
SCRIPT_LIMIT = 1 << 20


StatementResult = tuple[list[Row], int]  # the rows a statement answers, and the count it matched


def run_script(
    connection: Connection, runs: Sequence[tuple[CompiledSelect, Mapping[str, Any]]]
) -> list[StatementResult]:
    """What each statement of ``runs`` (a statement, its values by name)
    answers, run in order in the caller's transaction: its rows (a SELECT's;
    none for a write) and the count it matched. A failure raises
    ``StatementFailed``.

    On asyncmy, the statements go as one script, separated by ";", a round
    trip for all of them: each answers its own rows and count, and MariaDB
    stops at the first that fails. asyncmy always opens its connections
    with multi-statements, and escapes each value into the text as it would
    for one statement (``Cursor.mogrify``). Elsewhere, one statement at a
    time."""
    found: list[tuple[Any, int]] = []
    if runs and runs[0][0].on_driver_cursor:
        pooled: Any = connection.connection
        cursor = pooled.driver_connection.cursor()
        texts = [cursor.mogrify(each.sql, each._parameters(values)) for each, values in runs]
        for start, end in _scripts(texts):
            found += _run_script(connection, pooled, texts[start:end], start)
    else:
        for statement, values in runs:
            try:
                found.append(statement._run(connection, statement._parameters(values)))
            except Exception as error:
                raise StatementFailed(len(found), error) from error
    return [
        ([] if rows is None else statement.to_dicts(rows), count)
        for (statement, _), (rows, count) in zip(runs, found, strict=True)
    ]


def _scripts(texts: list[str]) -> list[tuple[int, int]]:
    """``texts`` cut into runs of whole statements of at most ``SCRIPT_LIMIT`` characters."""
    cuts, start, size = [], 0, 0
    for index, text in enumerate(texts):
        if index > start and size + len(text) > SCRIPT_LIMIT:
            cuts.append((start, index))
            start, size = index, 0
        size += len(text) + 1
    return [*cuts, (start, len(texts))]


def _run_script(
    connection: Connection, pooled: Any, texts: list[str], offset: int
) -> list[tuple[Any, int]]:
    """The rows (as the driver gives them; None for a write) and counts of
    the statements ``texts`` (the ``offset``-th on), as one script; an
    error as ``CompiledSelect._run`` raises it, in a ``StatementFailed``."""
    sql = ";\n".join(texts)
    cursor = pooled.driver_connection.cursor()
    events: Any = connection.dispatch
    if events.before_cursor_execute:
        events.before_cursor_execute(connection, cursor, sql, (), None, False)
    found: list[tuple[Any, int]] = []  # up to the statement that fails
    try:
        await_(_results_of_script(pooled.dbapi_connection, cursor, sql, len(texts), found))
    except Exception as error:
        try:
            connection._handle_dbapi_exception(error, texts[len(found)], (), None, None)
        except Exception as wrapped:
            raise StatementFailed(offset + len(found), wrapped) from wrapped
    except BaseException:
        connection.invalidate()  # cancelled mid-script: what it reads next is unknown
        raise
    if events.after_cursor_execute:
        events.after_cursor_execute(connection, cursor, sql, (), None, False)
    return found


async def _results_of_script(
    adapted: Any, cursor: Any, sql: str, statements: int, found: list[Any]
) -> None:
    """The rows and count of each statement of the script ``sql``, added to
    ``found`` up to the first that fails, whose error is raised as
    ``_fetch_all`` raises it."""
    try:
        await cursor.execute(sql)
        while True:
            rows = None if cursor.description is None else await cursor.fetchall()
            found.append((rows, cursor.rowcount))
            if len(found) == statements or not await cursor.nextset():
                break
    except Exception as error:
        adapted._handle_exception(error)
        raise  # _handle_exception always raises
    await cursor.close()


async def _fetch_all(
    adapted: Any, cursor: Any, sql: str, parameters: list[Any]
) -> tuple[Any, int]:
    """Every row of ``sql`` on the driver's own ``cursor`` (None when it
    gives none), and the rows it matched; errors raised as SQLAlchemy's
    cursor over ``adapted`` (its adapter of the connection) would."""
    try:
        count = await cursor.execute(sql, parameters)
        rows = None if cursor.description is None else await cursor.fetchall()
        await cursor.close()
        return rows, count
    except Exception as error:
        adapted._handle_exception(error)
        raise  # _handle_exception always raises


def _binder(
    names: Sequence[str],
    processors: Sequence[Callable[[Any], Any] | None],
    fixed: Mapping[str, Any],
) -> Callable[[Mapping[str, Any]], list[Any]]:
    """A function from values by name to a statement's parameters, in the
    order of its binds, each through its type's bind processor (None stays
    None), made for that statement as ``_row_converter`` is: a row of an
    INSERT of 1,000 is bound in one call. A bind the statement holds a value
    of (``fixed``) takes it unless the values give one; any other a value
    leaves out is a KeyError."""
    namespace: dict[str, Any] = {}
    entries = []
    for index, (name, process) in enumerate(zip(names, processors, strict=True)):
        if name in fixed:
            namespace[f"fixed_{index}"] = fixed[name]
            value = f"values.get({name!r}, fixed_{index})"
        else:
            value = f"values[{name!r}]"
        entries.append(_processed(index, value, process, namespace))
    source = f"lambda values: [{', '.join(entries)}]"
    binder: Callable[[Mapping[str, Any]], list[Any]] = eval(source, namespace)  # repr()'d names
    return binder


def _processed(
    index: int, value: str, process: Callable[[Any], Any] | None, namespace: dict[str, Any]
) -> str:
    """The source of bind ``index``'s ``value`` through its type's bind
    processor, if it has one (None stays None), which ``namespace`` gets."""
    if process is None:
        return value
    namespace[f"process_{index}"] = process
    return f"(None if (v{index} := {value}) is None else process_{index}(v{index}))"


PageBinder = Callable[[Sequence[Mapping[str, Any]], Mapping[str, Any]], list[Any]]


def _page_binder(
    statement: CompiledWrite, given: frozenset[str], shared: tuple[str, ...]
) -> PageBinder:
    """A function from a page of rows that give the columns ``given``, and
    the values every row takes for ``shared``, to the parameters of their
    VALUES groups, in order. What is the same for every row (a shared value,
    a default that is not a function, a value the statement holds) goes
    through its bind processor once a page, not once a row: in a POST of
    1,000 rows the binding was a quarter of the request. A default that is
    a function is called for each row, as SQLAlchemy's execution would."""
    namespace: dict[str, Any] = {}
    once, entries = [], []
    for index, (name, process) in enumerate(
        zip(statement.names, statement.processors, strict=True)
    ):
        default = statement.defaults.get(name)
        if name in shared:
            value, per_row = f"shared[{name!r}]", False
        elif name in given:
            value, per_row = f"values[{name!r}]", True
        elif default is not None and default.is_callable:
            namespace[f"default_{index}"] = default.arg
            value, per_row = f"default_{index}(None)", True
        elif default is not None or name in statement.fixed:
            found = default.arg if default is not None else statement.fixed[name]
            namespace[f"constant_{index}"] = found
            value, per_row = f"constant_{index}", False
        else:  # no value for a bind: a KeyError, as the statement's own binding gives
            value, per_row = f"values[{name!r}]", True
        value = _processed(index, value, process, namespace)
        if per_row:
            entries.append(value)
        else:
            once.append(f"    once_{index} = {value}\n")
            entries.append(f"once_{index}")
    source = (
        "def bind_page(rows, shared):\n"
        + "".join(once)
        + "    parameters = []\n"
        + "    extend = parameters.extend\n"
        + "    for values in rows:\n"
        + f"        extend(({', '.join(entries)},))\n"
        + "    return parameters\n"
    )
    exec(source, namespace)  # our source: repr()'d names
    binder: PageBinder = namespace["bind_page"]
    return binder


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
    if not keys:  # a write that RETURNs nothing
        return lambda rows: []
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
