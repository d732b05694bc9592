"""A short random walk of ``bench.walk`` over Sakila: selects of casts,
aggregates and embeds, filters, orders and writes (tx=rollback) that
schemathesis cannot draw from the OpenAPI document. Its first walks found
seven 500s and wrong answers; one seed's 600 requests guard against more."""

import subprocess
import sys

from tests.support import ROOT


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
