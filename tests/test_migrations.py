"""Alembic owns the schema: upgrade, downgrade, and the scripts a user runs, from the CLI."""

import asyncio
import os
import pathlib
import subprocess
import sys

import pytest
import sqlalchemy as sa

from tests.support import ROOT, mariadb_database

BIN = pathlib.Path(sys.executable).parent


@pytest.fixture
def empty_mariadb():
    url, drop = mariadb_database()
    yield url
    drop()


def test_migrations_upgrade_and_downgrade_from_the_command_line(tmp_path, empty_mariadb):
    """``alembic upgrade head`` / ``downgrade base`` from the repository root, no alembic.ini."""
    alembic_cli = BIN / "alembic"
    assert not (ROOT / "alembic.ini").exists()
    for database_url in (f"sqlite:///{tmp_path}/cli.sqlite", empty_mariadb):
        env = {**os.environ, "DATABASE_URL": database_url}
        for step in (["downgrade", "base"], ["upgrade", "head"]):
            subprocess.run([alembic_cli, *step], cwd=ROOT, env=env, check=True)
        assert "mytable" in tables(database_url)
        subprocess.run([alembic_cli, "downgrade", "base"], cwd=ROOT, env=env, check=True)
        assert "mytable" not in tables(database_url)


def tables(database_url):
    from sqlalchemy.ext.asyncio import create_async_engine

    from api.settings import database_url as async_url

    async def names():
        engine = create_async_engine(async_url(database_url))
        async with engine.connect() as connection:
            result = await connection.run_sync(lambda c: sa.inspect(c).get_table_names())
        await engine.dispose()
        return result

    os.environ.pop("DATABASE_URL", None)
    return asyncio.run(names())


def test_a_fresh_ini_file_migrates_seeds_and_answers_prequest(tmp_path):
    """The embedded-default flow: alembic with -x ini=, api-seed, then prequest."""
    ini = tmp_path / "local.ini"
    ini.write_text(
        "[app:main]\nuse = egg:api\nsqlalchemy.url = sqlite+aiosqlite:///%(here)s/local.sqlite\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}

    def run(*command):
        return subprocess.run(
            command, cwd=ROOT, env=env, check=True, capture_output=True, text=True
        ).stdout

    run(BIN / "alembic", "-x", f"ini={ini}", "upgrade", "head")
    assert "inserted 5 demo rows" in run(BIN / "api-seed", str(ini), "5")
    assert "left as is" in run(BIN / "api-seed", str(ini), "5")
    output = run(BIN / "prequest", str(ini), "/mytable/1")
    assert '"name":"demo 1"' in output
    assert '"data":{"n":1,"tags":["demo","odd"]}' in output
