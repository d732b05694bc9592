"""Alembic environment: async engine, URL resolved the way the app resolves it.

The URL: ``DATABASE_URL`` from the environment, else ``sqlalchemy.url`` of the
ini file named by ``-x ini=FILE`` (default ``development.ini``).
There is no alembic.ini: configuration lives in pyproject.toml.
"""

import asyncio
import logging

from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from api.models import metadata
from api.settings import load_settings

config = context.config
target_metadata = metadata

logging.basicConfig(format="%(levelname)-5.5s [%(name)s] %(message)s")
logging.getLogger("alembic").setLevel(logging.INFO)


def _settings():
    if config.attributes.get("settings") is not None:
        return config.attributes["settings"]
    import plaster

    ini = context.get_x_argument(as_dictionary=True).get("ini", "development.ini")
    try:
        return plaster.get_settings(ini, "app:main")
    except (plaster.exceptions.PlasterError, FileNotFoundError):
        return {}


def run_migrations_offline():
    context.configure(
        url=load_settings(_settings()).database_url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection):
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations():
    url = load_settings(_settings()).database_url
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_async_migrations())
