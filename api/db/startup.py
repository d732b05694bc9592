"""Reading the database at start-up (reflection, stored routines): on a
connection of its own, in a thread of its own, waiting for a database that
is not up yet."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from api.collections import StartupError
from api.logs import error_number, misconfigured

# What MySQL's client says while a server is not there yet, or is starting
# or stopping: no connection (2002, 2003), a name not resolved yet (2005),
# a connection lost (2006, 2013), too many (1040), a shutdown (1053), killed
# (1927). Start-up tries again on these only.
NOT_UP = frozenset({2002, 2003, 2005, 2006, 2013, 1040, 1053, 1927})

log = logging.getLogger(__name__)


def run_at_startup(
    url: sa.URL, read: Callable[..., Any], *args: Any, patience: float = 0.0
) -> Any:
    """``read(connection, *args)`` on a connection to the database, now.

    Run in a thread of its own with its own event loop and an engine without
    a pool, disposed of before returning: nothing of it outlives start-up,
    and start-up may itself run inside an event loop.

    A server that is not there yet (one started beside the API, as in a
    compose file or a pod) is tried again for ``patience`` seconds
    (``db.startup_timeout``), at growing intervals, as PostgREST waits for
    its database; one that refuses the API is not.
    """
    where = url.render_as_string(hide_password=True)
    deadline = time.monotonic() + patience
    pause = 0.5
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        while True:
            try:
                return pool.submit(asyncio.run, _run_sync(url, read, args)).result()
            except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:  # away, or refusing
                left = deadline - time.monotonic()
                if error_number(exc) not in NOT_UP or left <= 0:
                    reason = misconfigured(exc)
                    meaning = f" ({reason})" if reason else ""
                    raise StartupError(
                        f"start-up could not read the database at {where}: {exc.orig}{meaning}"
                    ) from None
                pause = min(pause, left)
                log.warning("start-up: no database at %s yet (%s); trying again", where, exc.orig)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)


async def _run_sync(url: sa.URL, read: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(read, *args)
    finally:
        await engine.dispose()
