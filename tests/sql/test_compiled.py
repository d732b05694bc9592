"""Compiled statements: the SQLAlchemy releases they are written for; values
read back as written; many rows inserted a page a statement."""

import asyncio
import copy
import inspect
from datetime import datetime, timedelta

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.dialects.mysql.asyncmy import AsyncAdapt_asyncmy_connection
from sqlalchemy.engine import Connection

from api.db import create_engine
from api.models import metadata, utcnow
from api.sql.compiled import SUPPORTED_SQLALCHEMY, CompiledWrite
from tests.support import WRITER_ONE, make_app


def test_the_installed_sqlalchemy_is_one_the_compiled_reads_are_written_for():
    """compiled.py calls SQLAlchemy internals: a release outside the tested range
    fails here, loudly, before anything else can go subtly wrong."""
    installed = tuple(int(part) for part in sqlalchemy.__version__.split(".")[:3])
    lowest, beyond = SUPPORTED_SQLALCHEMY
    assert lowest <= installed < beyond, (
        f"SQLAlchemy {sqlalchemy.__version__} is outside {SUPPORTED_SQLALCHEMY}: check "
        "api/sql/compiled.py against its internals, then widen SUPPORTED_SQLALCHEMY"
    )
    handle = inspect.signature(Connection._handle_dbapi_exception)
    assert list(handle.parameters)[:6] == [
        "self",
        "e",
        "statement",
        "parameters",
        "cursor",
        "context",
    ]
    assert callable(AsyncAdapt_asyncmy_connection._handle_exception)


def test_a_single_selected_column_and_any_json_value_read_back_as_written(http):
    values = [None, 0, -1.5, "text", True, [], {"deep": [1, {"x": None}]}, 2**62]
    created = [
        http.post(
            "/mytable/", json={"name": f"json {n}", "data": value}, headers=WRITER_ONE
        ).json()
        for n, value in enumerate(values)
    ]
    first, last = created[0]["id"], created[-1]["id"]
    between = f"id=gte.{first}&id=lte.{last}"
    page = http.get(f"/mytable/?select=data,id&{between}").json()
    assert [row["data"] for row in page] == values
    only_ids = http.get(f"/mytable/?select=id&{between}&limit=3").json()
    assert only_ids == [{"id": first}, {"id": first + 1}, {"id": first + 2}]
    # point reads go through the same row reader, in batches
    assert [http.get(f"/mytable/{row['id']}").json()["data"] for row in created] == values


def test_many_rows_are_inserted_a_page_a_statement_and_returned_in_order(
    database_url, monkeypatch
):
    """An array's INSERT repeats one row's VALUES group, as many times as a
    page holds (here 3 rows, bound 2 at a time), and answers the rows as
    stored, in order; Python-side defaults (the version's 1) are filled in
    for each row."""
    monkeypatch.setattr("api.sql.compiled.ROWS_A_BIND", 2)
    table = metadata.tables["mytable"]
    names = ("name", "data", "created_at", "updated_at")
    binds = {name: sqlalchemy.bindparam(name, type_=table.columns[name].type) for name in names}
    statement = sqlalchemy.insert(table).values(binds).returning(*table.columns)
    engine = create_engine(make_app(database_url).registry.api_settings)

    def insert(connection):
        dialect = copy.copy(connection.dialect)
        dialect.insertmanyvalues_page_size = 3
        statements = []
        event.listen(connection, "before_cursor_execute", lambda *a: statements.append(a[2]))
        now = utcnow()
        rows = [
            {"name": f"paged {n}", "data": {"n": n}, "created_at": now, "updated_at": now}
            for n in range(5)
        ]
        return CompiledWrite(statement, dialect).run_many(connection, rows), statements

    async def run():
        async with engine.connect() as connection:
            returned, statements = await connection.run_sync(insert)
            await connection.rollback()
        await engine.dispose()
        return returned, statements

    returned, statements = asyncio.run(run())
    assert [row["name"] for row in returned] == [f"paged {n}" for n in range(5)]
    assert [row["data"] for row in returned] == [{"n": n} for n in range(5)]
    assert {row["version"] for row in returned} == {1}
    assert [sql.count("), (") + 1 for sql in statements] == [3, 2]


def test_values_every_row_shares_are_bound_once_and_a_default_function_per_row(database_url):
    """``run_many(rows, shared)``: each row takes the shared values (an
    array's stamps); a column no row gives takes its default, a function's
    called once for each row, as SQLAlchemy's own execution would."""
    table = metadata.tables["mytable"]
    names = ("name", "updated_at")  # created_at and version: their defaults
    binds = {name: sqlalchemy.bindparam(name, type_=table.columns[name].type) for name in names}
    statement = sqlalchemy.insert(table).values(binds).returning(*table.columns)
    engine = create_engine(make_app(database_url).registry.api_settings)
    stamp = datetime(2026, 1, 2, 3, 4, 5, 600000)
    calls = []

    def insert(connection):
        compiled = CompiledWrite(statement, connection.dialect)
        assert compiled.defaults["created_at"].is_callable  # utcnow, counted here
        compiled.defaults["created_at"] = sqlalchemy.ColumnDefault(
            lambda: calls.append(1) or stamp + timedelta(days=len(calls))
        )
        rows = [{"name": f"shared {n}"} for n in range(3)]
        return compiled.run_many(connection, rows, {"updated_at": stamp})

    async def run():
        async with engine.connect() as connection:
            returned = await connection.run_sync(insert)
            await connection.rollback()
        await engine.dispose()
        return returned

    returned = asyncio.run(run())
    assert [row["name"] for row in returned] == ["shared 0", "shared 1", "shared 2"]
    assert {row["updated_at"].replace(tzinfo=None) for row in returned} == {stamp}
    created = [row["created_at"].replace(tzinfo=None) for row in returned]
    assert created == [stamp + timedelta(days=n) for n in (1, 2, 3)]
    assert [row["version"] for row in returned] == [1, 1, 1]
