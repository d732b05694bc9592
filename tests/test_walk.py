"""A short random walk of ``bench.walk`` over Sakila: selects of casts,
aggregates and embeds, filters, orders and writes (tx=rollback) that
schemathesis cannot draw from the OpenAPI document. Its first walks found
seven 500s and wrong answers; one seed's 600 requests guard against more."""

import random
import subprocess
import sys

import httpx

from bench.walk import Schema, walk_requests
from tests.support import ROOT, WRITER


def test_a_short_random_walk_over_sakila_answers_no_5xx():
    walked = subprocess.run(
        [sys.executable, "-m", "bench.walk", "--requests", "300", "--seed", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert walked.returncode == 0, walked.stdout[-4000:] + walked.stderr[-2000:]
    assert "read: 200 x" in walked.stdout  # it walked


def test_a_short_random_walk_over_the_probe_tables_answers_no_5xx(server, capsys):
    """The same walk, on both databases (SQLite, the embedded default, too),
    over the suite's own tables: types of every kind, keys of two columns,
    a table that refers to itself, a junction."""
    with httpx.Client(base_url=server.url, headers=WRITER, timeout=30) as client:
        schema = Schema(client)
        failed = walk_requests(random.Random(1), schema, client, 300)
    assert failed == 0, capsys.readouterr().out[-4000:]
