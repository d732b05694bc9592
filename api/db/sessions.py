"""Request sessions joined to ``request.tm``, which pyramid_tm commits or
aborts, and which one reads a row: the table's coalescing loader, or the
request's own transaction."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from pyramid.request import Request
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session
from zope.sqlalchemy.datamanager import join_transaction, mark_changed

from api.bridge import await_, run_in_greenlet
from api.bridge.greenlets import in_request_greenlet
from api.bridge.wsgi import background_loop
from api.db.engines import engines_of
from api.db.groups import GroupedWrite, Write
from api.security import SAFE_METHODS
from api.sql.compiled import Row
from api.sql.writes import load_row


class RequestSession(Session):
    """The sync session behind a request's AsyncSession, joined to ``info["tm"]``.

    zope.sqlalchemy's ``register()`` adds event listeners to each session it
    is given, which costs more than the rest of a point read. These listeners
    are registered once, on the class, and find the request's transaction
    manager in ``session.info``.
    """


@event.listens_for(RequestSession, "after_begin")
def _join_request_transaction(session: Session, transaction: Any, connection: Connection) -> None:
    join_transaction(session, transaction_manager=session.info["tm"])


@event.listens_for(RequestSession, "do_orm_execute")
def _mark_writes(execute_state: ORMExecuteState) -> None:
    """Core INSERT/UPDATE/DELETE count as changes too, not only ORM flushes.

    Without this a Core write leaves the session "unchanged" and is rolled
    back at the end of the request. Raw ``text()`` writes are still invisible:
    write through Core statements.
    """
    if execute_state.is_insert or execute_state.is_update or execute_state.is_delete:
        session = execute_state.session
        mark_changed(session, session.info["tm"])


@event.listens_for(RequestSession, "after_flush")
def _mark_flush(session: Session, flush_context: Any) -> None:
    mark_changed(session, session.info["tm"])


def may_write(request: Request) -> bool:
    """pyramid_tm's activate hook: a transaction only for requests that may write.

    Beginning and committing an empty transaction costs a noticeable part of a
    point read.
    """
    return request.method not in SAFE_METHODS


def retries_of(request: Request) -> int | None:
    """pyramid_retry's activate hook: a request whose body could not be read
    again without a copy (the WSGI front door's; the ASGI door's is in
    memory) is tried once. None: as many times as ``retry.attempts`` says,
    a read's too (a call on a connection the server dropped runs again)."""
    return None if request.is_body_seekable else 1


def request_dbsession(request: Request) -> AsyncSession:
    """The request's AsyncSession, once a slot of the write gate is free.

    In a request that may write, it joins the request's transaction, which
    pyramid_tm commits or aborts. A safe request has no transaction manager:
    its session reads in a transaction of its own, rolled back and closed when
    the request finishes (a GET writes nothing). The slot is given back when
    the request is done with its connection.
    """
    engines = engines_of(request).on_loop()
    engines.write_gate.acquire_in_greenlet()
    if request.environ.get("tm.active"):
        session = AsyncSession(
            engines.engine,
            sync_session_class=RequestSession,
            expire_on_commit=False,
            info={"tm": request.tm},
        )
    else:
        session = AsyncSession(engines.engine, expire_on_commit=False)
        request.add_finished_callback(lambda request: await_(session.close()))
    # Finished callbacks run after pyramid_tm's commit or abort closed the session.
    request.add_finished_callback(lambda request: engines.write_gate.release())
    return session


def may_join_group(request: Request, table: sa.Table) -> bool:
    """Whether a write of this request to ``table`` may be committed with a
    group (``api.db.groups``): pyramid_tm commits its transaction, it opened
    no session, whose writes would be committed apart from the group's, and
    the table can undo a write (a group undoes them all when one fails, and
    runs the others again: on MyISAM they would land twice)."""
    return (
        request.environ.get("tm.active", False)
        and "dbsession" not in request.__dict__
        and "engine_without_transactions" not in table.info
    )


def join_group(request: Request, write: Write, settle: Callable[[Any], None]) -> None:
    """Run ``write`` with the loop's group when the request's transaction
    votes to commit; ``settle`` takes what it answered (``GroupedWrite``)."""
    group = engines_of(request).on_loop().group
    request.tm.get().join(GroupedWrite(request.tm, group, write, settle))


def fetch_row(
    request: Request, table: sa.Table, pk: Any, *, for_update: bool = False
) -> Row | None:
    """``request.fetch_row``: the row of ``table`` with primary key ``pk``, or None.

    A request with no session yet reads through the table's coalescing
    loader, with its peers, unless it locks the row (``for_update``): a
    write whose version settles it reads the row outside its transaction,
    which its UPDATE's version check makes safe. Any other reads in its own
    transaction: it sees its own writes, and ``for_update`` locks the row.
    """
    if not in_request_greenlet():
        # Pyramid's tools (pviews, pshell's root["mytable"]["1"]) traverse
        # outside any request: the lookup runs on the background loop.
        lookup = functools.partial(fetch_row, request, table, pk, for_update=for_update)
        return background_loop().run(run_in_greenlet(lookup))
    if not for_update and "dbsession" not in request.__dict__:
        parsed = request.method not in SAFE_METHODS
        return await_(request.registry.api_engines.point_loader(table, parsed).load(pk))
    return await_(load_row(request.dbsession, table, pk, for_update=for_update))
