"""Compiled reads: the SQLAlchemy releases they are written for; values read back as written."""

import inspect

import sqlalchemy
from sqlalchemy.dialects.mysql.asyncmy import AsyncAdapt_asyncmy_connection
from sqlalchemy.engine import Connection

from api.reads.compiled import SUPPORTED_SQLALCHEMY
from tests.support import WRITER_ONE


def test_the_installed_sqlalchemy_is_one_the_compiled_reads_are_written_for():
    """compiled.py calls SQLAlchemy internals: a release outside the tested range
    fails here, loudly, before anything else can go subtly wrong."""
    installed = tuple(int(part) for part in sqlalchemy.__version__.split(".")[:3])
    lowest, beyond = SUPPORTED_SQLALCHEMY
    assert lowest <= installed < beyond, (
        f"SQLAlchemy {sqlalchemy.__version__} is outside {SUPPORTED_SQLALCHEMY}: check "
        "api/reads/compiled.py against its internals, then widen SUPPORTED_SQLALCHEMY"
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
