"""Group commit: the single-row writes of concurrent requests in one
transaction, each committed when its own request's transaction commits.

A write whose answer the API knows without reading the row in the write's
transaction is one statement: a PATCH or PUT with If-Match, on a table with
a version column whose writes are known (``UPDATE ... WHERE key AND
version``); a DELETE by key; a POST of one row that answers no rows, where
the database has RETURNING (``INSERT ... RETURNING``: where the row went).
Such a request opens no session. Its view answers what it can, and joins
the request's transaction with a ``GroupedWrite``; when pyramid_tm commits
that transaction, the write is handed to the loop's ``GroupCommit`` and the
commit waits until it is durable, then settles the answer (an INSERT's
Location and ETag; an UPDATE or DELETE that matched no row, 404 or 412).
Writes handed over while a group is in flight go together in the next one:
one connection, one transaction, one COMMIT for all of them, one
multi-row INSERT for the INSERTs of a table that give the same columns, and
on MariaDB one round trip for the UPDATEs and DELETEs (a script).

Each request stays all or nothing, and nothing is written for a request
whose transaction aborts:
- a write is run only once its request votes to commit;
- a write whose statement fails (a unique key, a deadlock) or whose request
  gives up (its deadline) before the COMMIT is taken out, the group's
  transaction rolled back, and the others run again in a new one;
- a write that matches no row (its version changed) wrote nothing: its
  request fails its vote (404 or 412), and the others go on.

Why: a write's own ORM session (its connection, begin, zope's join and
two-phase commit, the COMMIT round trip, the pool's check-in) was a third
of its cost (the figures are in docs/architecture.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import transaction
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from api.bridge import await_, run_in_greenlet
from api.logs import deadlocked
from api.reads.gate import Gate
from api.sql.compiled import StatementFailed

# A write: its statement run on the group's connection; what it answers
# (the rows an UPDATE matched, the row an INSERT stored).
Write = Callable[[Connection], Any]
Member = tuple[Write, "asyncio.Future[Any]"]


class GroupCommit:
    """Writes run in groups on one event loop, each group one transaction.

    At most ``width`` groups are in flight at once, each on a connection of
    the write engine, taken through its gate as request sessions take theirs.
    Four, of production.ini's 16: a PATCH took less worker CPU the more
    groups could be in flight, up to four, and within the noise beyond
    (bench/RESULTS.md).
    """

    def __init__(self, engine: AsyncEngine, gate: Gate, timeout: float, width: int = 4) -> None:
        self.engine = engine
        self.gate = gate
        self.timeout = timeout  # seconds a group may take: no request's deadline covers it
        self.width = width
        self.queue: list[Member] = []
        self.in_flight = 0
        self.tasks: set[asyncio.Task[None]] = set()  # the loop holds tasks weakly

    async def write(self, write: Write) -> Any:
        """What ``write`` answered, once its group committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.queue.append((write, future))
        if self.in_flight < self.width:
            self.in_flight += 1
            task = loop.create_task(self._drain())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return await future

    async def _drain(self) -> None:
        """Groups of what is queued, until nothing is."""
        try:
            while self.queue:
                group, self.queue = self.queue, []
                try:
                    async with asyncio.timeout(self.timeout):
                        await run_in_greenlet(self._commit, group)
                except Exception as exc:  # each member's request answers it
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
        finally:
            self.in_flight -= 1

    def _commit(self, group: list[Member]) -> None:
        """Run the group's writes in one transaction and commit it; a write
        that fails, or whose request gave up, is taken out and the others
        run again in a new transaction. A deadlock is no write's fault: the
        database rolled the whole group back, and all of it runs again, up
        to ``DEADLOCK_RETRIES`` times."""
        self.gate.acquire_in_greenlet()
        try:
            pending, together, deadlocks = group, True, 0
            while pending:
                pending = [member for member in pending if not member[1].done()]
                failed, answers = self._run_once(pending, together)
                if failed is None:
                    for (_, future), answer in zip(pending, answers, strict=True):
                        if not future.done():
                            future.set_result(answer)
                    return
                index, error = failed
                if deadlocked(error) and deadlocks < DEADLOCK_RETRIES:
                    deadlocks += 1
                    continue
                if index is None:  # a statement of several writes: which, one by one tells
                    together = False
                    continue
                if not pending[index][1].done():
                    pending[index][1].set_exception(error)
                del pending[index]
        finally:
            self.gate.release()

    def _run_once(
        self, pending: list[Member], together: bool
    ) -> tuple[tuple[int | None, BaseException] | None, list[Any]]:
        """The writes of ``pending`` (``together``: those of one batch in one
        statement) and a COMMIT: what each answered, in order; or (which
        write failed or was given up, None if one of a batch, and why), all
        rolled back."""
        answers: list[Any] = [None] * len(pending)
        with self.engine.sync_engine.connect() as connection:
            group = connection.begin()
            for indexes in _statements(pending, together):
                writes = [pending[index][0] for index in indexes]
                try:
                    if len(writes) == 1:
                        found = [writes[0](connection)]
                    else:
                        found = writes[0].run_together(connection, writes)  # type: ignore[attr-defined]
                except StatementFailed as failed:  # one of a script: it says which
                    group.rollback()
                    return (indexes[failed.index], failed.error), answers
                except Exception as error:
                    group.rollback()
                    return (indexes[0] if len(indexes) == 1 else None, error), answers
                for index, answer in zip(indexes, found, strict=True):
                    answers[index] = answer
            gave_up = next((i for i, (_, f) in enumerate(pending) if f.done()), None)
            if gave_up is not None:  # its request's deadline passed: not written
                group.rollback()
                return (gave_up, asyncio.CancelledError()), answers
            group.commit()
        return None, answers


# Times a group runs again after the database chose it as a deadlock's
# victim, before the write it failed on fails its request (a 503).
DEADLOCK_RETRIES = 3


def _statements(pending: list[Member], together: bool) -> list[list[int]]:
    """The indexes of ``pending``'s writes, in the statements they run as:
    one each; or, ``together``, the writes of one ``batch`` in one, which
    ``run_together`` runs: the INSERTs of a table that give the same
    columns in one multi-row INSERT (of eight rows, a fraction of eight
    INSERTs' time), and the UPDATEs and DELETEs by key in one script, a
    round trip for all."""
    statements: dict[Any, list[int]] = {}
    for index, (write, _) in enumerate(pending):
        batch = getattr(write, "batch", None) if together else None
        statements.setdefault(index if batch is None else batch, []).append(index)
    return list(statements.values())


class GroupedWrite:
    """A request's write as a resource of its transaction (zope's data
    manager): run with its group when the transaction votes, and voted
    last, after any other resource. ``settle(answer)`` takes what the
    write answered, once committed, into the request's answer, or raises
    what the request answers instead (an UPDATE that matched no row)."""

    def __init__(
        self,
        manager: transaction.TransactionManager,
        group: GroupCommit,
        write: Write,
        settle: Callable[[Any], None],
    ) -> None:
        self.transaction_manager = manager
        self.group = group
        self.write = write
        self.settle = settle

    def tpc_vote(self, txn: Any) -> None:
        self.settle(await_(self.group.write(self.write)))

    def abort(self, txn: Any) -> None:
        pass  # nothing was written yet

    def tpc_begin(self, txn: Any) -> None:
        pass

    def commit(self, txn: Any) -> None:
        pass

    def tpc_finish(self, txn: Any) -> None:
        pass

    def tpc_abort(self, txn: Any) -> None:
        pass

    def sortKey(self) -> str:  # zope's name
        return "~api.db.groups"  # after zope.sqlalchemy's sessions
