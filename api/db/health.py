"""What the health checks ask of the database: a round trip, and the schema
revision it was migrated to, against the one the shipped migrations end at."""

from __future__ import annotations

import asyncio
import functools
import pathlib

from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from api.bridge import run_in_greenlet
from api.logs import misconfigured
from api.reads.reader import Reader


async def ping(reader: Reader, timeout: float) -> None:
    """Round-trip to the database, or raise within ``timeout`` seconds."""

    def select_one(connection: Connection) -> None:
        connection.execute(text("SELECT 1"))

    await asyncio.wait_for(run_in_greenlet(reader.run, select_one), timeout)


MIGRATIONS = pathlib.Path(__file__).parent.parent / "migrations"


@functools.cache
def migrations_head() -> str | None:
    """The revision the shipped migrations end at (``alembic heads``)."""
    head: str | None = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    return head


async def schema_revision(reader: Reader, timeout: float) -> str | None:
    """The revision the database was migrated to; None if it never was."""

    def read(connection: Connection) -> str | None:
        try:
            revision: str | None = connection.execute(
                text("SELECT version_num FROM alembic_version")
            ).scalar()
        except DBAPIError as exc:
            if misconfigured(exc) is None:  # anything but a missing table
                raise
            return None
        return revision

    return await asyncio.wait_for(run_in_greenlet(reader.run, read), timeout)
