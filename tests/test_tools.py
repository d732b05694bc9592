"""Pyramid's own tools on the API, as the README shows them: pviews and
pshell traverse to a row outside any request, and prequest prints JSON as text."""

import os
import pathlib
import subprocess
import sys

import pytest

from tests.support import ROOT

BIN = pathlib.Path(sys.executable).parent


@pytest.fixture(scope="module")
def ini(tmp_path_factory):
    """development.ini on a SQLite file of its own, migrated and seeded."""
    folder = tmp_path_factory.mktemp("tools")
    path = folder / "development.ini"
    path.write_text((ROOT / "development.ini").read_text())
    run(BIN / "alembic", "-c", path, "upgrade", "head")
    run(BIN / "api-seed", path, "3")
    return path


def run(*command, stdin=None):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        command, input=stdin, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout + done.stderr


def test_pviews_finds_the_view_of_a_row(ini):
    output = run(BIN / "pviews", ini, "/mytable/1")
    assert "context: <api.resources.Item" in output
    assert "api.views.items.show_row" in output


def test_prequest_prints_json_as_text(ini):
    output = run(BIN / "prequest", ini, "/mytable/1").strip()
    assert output.startswith('{"id":1,"name":"demo 1"')


def test_pshell_reads_rows_and_writes_in_a_transaction(ini):
    script = "\n".join(
        [
            'print("item", root["mytable"]["1"].row["name"])',
            'print("rows", [r["name"] for r in rows("mytable", limit=2)])',
            "t = tables['mytable']",
            "rename = sa.update(t).where(t.c.id == 2).values(name='x')",
            "_ = in_transaction(lambda s: s.execute(rename))",
            'print("after", rows("mytable", id=2)[0]["name"])',
            "in_transaction(lambda s: (s.execute(sa.delete(t)), 1 / 0))",
        ]
    )
    output = run(BIN / "pshell", ini, stdin=script + "\n")
    assert "item demo 1" in output
    assert "rows ['demo 1', 'demo 2']" in output
    assert "after x" in output
    assert "ZeroDivisionError" in output
    assert run(BIN / "prequest", ini, "/mytable/3").strip().startswith('{"id":3')  # not deleted
