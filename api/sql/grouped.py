"""The writes a group commits (``api.db.groups``), each also run alone in a
request's session: one row's ``INSERT ... RETURNING`` (``GroupedInsert``),
whose group goes in one multi-row INSERT; and the UPDATEs and DELETEs of one
row by key whose answer is the count they matched (``CountedWrite``, and
``ShownUpdate``, which reads the row back), whose group goes as one script.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from api.collections import describe
from api.models import utcnow
from api.sql import write_statements
from api.sql.compiled import (
    CompiledSelect,
    CompiledWrite,
    StatementFailed,
    StatementResult,
    run_script,
)
from api.sql.keys import key_parameters

Row = dict[str, Any]


class GroupedInsert:
    """One row's ``INSERT ... RETURNING`` for a group to commit
    (``api.db.groups``), run on a connection: the row as stored. The rows of
    one ``batch`` (a table, the columns given) go in one multi-row INSERT
    with the others of their group. For a database that has RETURNING
    (``Dialect.insert_returning``)."""

    def __init__(self, table: sa.Table, row: Row) -> None:
        self.table = table
        self.row = row
        self.batch = (table, tuple(row))

    def __call__(self, connection: Connection) -> Row:
        (stored,) = self.run_together(connection, [self])
        return stored

    def run_together(self, connection: Connection, inserts: list[GroupedInsert]) -> list[Row]:
        """The rows of ``inserts`` (of this batch) in one statement, as stored, in order.

        The rows of several are checked against the values their requests
        sent: RETURNING's rows come in the order of VALUES in MariaDB and
        SQLite as they are, but no document promises it, and a row answered
        to another request would tell it where someone else's row went.
        Rows sent alike cannot be told apart, nor need to be; a row a
        trigger changed sends its group one by one, where nothing is
        checked."""
        stamps = new_row_stamps(self.table, connection.dialect)
        names = tuple(dict.fromkeys([*self.row, *stamps]))
        statement = write_statements.insert(self.table, names, True, connection.dialect)
        sent = [insert.row for insert in inserts]
        stored = statement.run_many(connection, sent, stamps)
        if len(sent) > 1 and not all(map(_as_sent, sent, stored)):
            raise OutOfOrder("RETURNING answered the rows of a multi-row INSERT out of order")
        return stored


class OutOfOrder(RuntimeError):
    """A multi-row INSERT's rows came back in another order than sent: its
    group runs again, a statement a row."""


def _as_sent(sent: Row, stored: Row) -> bool:
    """Whether ``stored`` holds ``sent``'s values, where both are text or
    integers (other types come back converted: JSON, decimals, times)."""
    return all(
        stored.get(name) == value
        for name, value in sent.items()
        if type(value) in (str, int) and type(stored.get(name)) is type(value)
    )


def new_row_stamps(table: sa.Table, dialect: Dialect) -> Row:
    """The instant new rows are stamped with, in the columns the table has:
    UTC without its zone, as the columns store it. For MySQL/MariaDB, the
    text the driver would send for it, made once rather than for each row:
    asyncmy's formatting of a datetime was a fifth of the time of a POST of
    1,000 rows."""
    now = utcnow().replace(tzinfo=None)
    stamp: Any = now if dialect.name == "sqlite" else now.isoformat(" ")
    return {name: stamp for name in ("created_at", "updated_at") if name in table.columns}


def key_after(table: sa.Table, pk: Any, values: Row) -> Any:
    """The row's key once ``values`` are written: a write may change it."""
    description = describe(table)
    parts = (pk,) if len(description.key) == 1 else pk
    return description.key_of(
        {**{str(c.name): part for c, part in zip(description.key, parts, strict=True)}, **values}
    )


class CountedWrite:
    """An UPDATE or DELETE of one row by key, whose answer is the count of
    rows it matched: run on a connection, in a session or by a group. The
    counted writes of a group (a ``batch`` of their own, whatever their
    table) go as one script, a round trip for all (``compiled.run_script``):
    a statement's own round trip was a large part of a PATCH's cost."""

    batch = "counted writes"

    def __init__(
        self, statement: Callable[[Dialect], CompiledWrite], values: Row, table: sa.Table, pk: Any
    ) -> None:
        self.statement = statement  # of the dialect
        self.values = values
        self.table = table
        self.pk = pk
        # Its place in the order every script locks rows in: the same for
        # all groups, so that no two wait for each other.
        parts = pk if isinstance(pk, tuple) else (pk,)
        self.lock_order = (str(table.fullname), tuple(map(lock_order_of, parts)))

    def statements(self, dialect: Dialect) -> list[tuple[CompiledSelect, Row]]:
        """Its statements, with their values."""
        return [(self.statement(dialect), self.values)]

    def answer(self, results: list[StatementResult]) -> Any:
        """What it answers of its statements' results: the count it matched."""
        return results[0][1]

    def __call__(self, connection: Connection) -> Any:
        """Its answer, run alone: in a session, whose failure is the
        statement's own error (a unique key's IntegrityError is a 409)."""
        try:
            return self.answer(run_script(connection, self.statements(connection.dialect)))
        except StatementFailed as failed:
            raise failed.error from None

    def run_together(self, connection: Connection, writes: list[CountedWrite]) -> list[Any]:
        """The answers of ``writes`` (this one among them), in order; one that
        fails raises ``compiled.StatementFailed``, which says which.

        The script writes their rows in one order, the same in every group:
        two groups that wrote rows 1 and 2 in opposite orders would each
        hold the lock the other waits for, and MariaDB would fail one with
        a deadlock."""
        dialect = connection.dialect
        runs: list[tuple[CompiledSelect, Row]] = []
        spans = []  # (the write's index, where its statements start, how many)
        for index in sorted(range(len(writes)), key=lambda index: writes[index].lock_order):
            statements = writes[index].statements(dialect)
            spans.append((index, len(runs), len(statements)))
            runs += statements
        try:
            results = run_script(connection, runs)
        except StatementFailed as failed:
            (index,) = [i for i, start, size in spans if start <= failed.index < start + size]
            raise StatementFailed(index, failed.error) from failed.error
        answers: list[Any] = [None] * len(writes)
        for index, start, size in spans:
            answers[index] = writes[index].answer(results[start : start + size])
        return answers


def lock_order_of(part: Any) -> tuple[int, int, str]:
    """Where a key's part sorts among the rows a write locks (a group's
    script, an upsert's rows): an integer by its value, the order of the
    table's index, in which a session's UPDATE of a range locks rows too (by
    their text, row 10 came before row 9, and such a group and such a range
    could each wait for the other); any other value by its text, after the
    integers."""
    return (0, part, "") if type(part) is int else (1, 0, str(part))


class ShownUpdate(CountedWrite):
    """An UPDATE of one row by key, and the read of that row after it, in
    the same transaction: the row as the UPDATE left it (None if it matched
    none), as RETURNING would answer it, which MariaDB lacks. ``written``:
    the values it writes, which may change the key it is read by."""

    def __init__(
        self,
        statement: Callable[[Dialect], CompiledWrite],
        values: Row,
        table: sa.Table,
        pk: Any,
        written: Row,
    ) -> None:
        super().__init__(statement, values, table, pk)
        self.key_after = key_parameters(describe(table).key, key_after(table, pk, written))

    def statements(self, dialect: Dialect) -> list[tuple[CompiledSelect, Row]]:
        read = write_statements.row_by_key(self.table, False, dialect)
        return [*super().statements(dialect), (read, self.key_after)]

    def answer(self, results: list[StatementResult]) -> Row | None:
        (_, matched), (rows, _) = results
        return rows[0] if matched == 1 and rows else None
