"""Alembic environment: async engine, URL resolved the way the app resolves it.

The URL: ``DATABASE_URL`` from the environment, else ``sqlalchemy.url`` of the
app's ini file: the one alembic was given (``alembic -c production.ini``,
whose ``[alembic]`` section names ``api:migrations``), else ``-x ini=FILE``,
else ``development.ini``. In the checkout, plain ``alembic`` reads
``[tool.alembic]`` in pyproject.toml.
"""

import asyncio
import logging

from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from api.models import UTCDateTime, metadata
from api.settings import SettingsError, load_settings

config = context.config
target_metadata = metadata

logging.basicConfig(format="%(levelname)-5.5s [%(name)s] %(message)s")
logging.getLogger("alembic").setLevel(logging.INFO)


def _settings():
    if config.attributes.get("settings") is not None:
        return config.attributes["settings"]
    import plaster

    given = config.config_file_name
    ini = given if given and given.endswith(".ini") else "development.ini"
    ini = context.get_x_argument(as_dictionary=True).get("ini", ini)
    try:
        return plaster.get_settings(ini, "app:main")
    except (plaster.exceptions.PlasterError, FileNotFoundError):
        return {}


def _database_url():
    try:
        return load_settings(_settings()).database_url
    except SettingsError as exc:  # one line that says how to give one, not a traceback
        raise SystemExit(f"alembic: {exc}") from None


def render_item(type_, obj, autogen_context):
    """How autogenerate writes the project's own types: spelled out in
    SQLAlchemy's, so that a migration keeps meaning what it meant when the
    models change (and needs no import of api)."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        autogen_context.imports.add("from sqlalchemy.dialects import mysql")
        return 'sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")'
    return False  # the default rendering


def run_migrations_offline():
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection):
    context.configure(
        connection=connection, target_metadata=target_metadata, render_item=render_item
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations():
    url = _database_url()
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
