"""The write benchmark: each write of PostgREST's protocol against the API as
production runs it, beside the same statements straight through asyncmy.

    python -m bench.writes            # 100,000 rows; 32 and 128 connections; 1 and N workers
    python -m bench.writes --short    # 32 connections, 1 worker, 3 s a run
    python -m bench.writes --only post1000,upsert1000   # those scenarios alone

Prints per scenario req/s (rows/s for arrays), p50 and p99, and the ratio to
its ceiling measured in the same run (``bench/write_ceiling.py``): the PATCH
and PUT transaction, a single INSERT, a multi-row INSERT of 1,000 rows;
each ceiling's own p99 is printed too, the database's tail at that
concurrency, to tell a slow database from a slow API in the API's p99. The
table is seeded afresh before each worker count; before each run, versions
go back to 1 and DELETE's rows, above the seeded ones and as many as the
fastest run could take, are put back, and PATCH and PUT track the versions
they are answered, so that a run measures writes, not 412s and 404s. The
ceilings are measured before the API starts and after it stops (its pools
would hold connections beside them), and each ratio is to their mean: this
machine's speed drifts by a third within minutes, and one ceiling measured
in a slow minute made a ratio look better than it was. The API is warmed
(2 s of PATCH and of POST) before its first scenario.
"""

import argparse
import asyncio
import os

from bench.run import (
    DATABASE,
    SEEDED_DATA,
    _sql,
    api_server,
    ceiling_figures,
    seed,
    settled,
    wrk,
)

# (label, wrk scenario, rows a request writes, the ceiling it is compared with)
SCENARIOS = [
    ("PATCH + If-Match", "patch", 1, "transaction"),
    ("PUT + If-Match", "put", 1, "transaction"),
    ("DELETE", "delete", 1, "transaction"),
    ("PATCH one row by filter", "patch_eq", 1, "transaction"),
    ("PATCH one row by filter, shown", "patch_eq_shown", 1, "transaction"),
    ("POST one row", "post", 1, "insert"),
    ("POST 100 rows", "post100", 100, "insert1000"),
    ("POST 1000 rows", "post1000", 1000, "insert1000"),
    ("upsert 1000 rows", "upsert1000", 1000, "insert1000"),
    ("PATCH 1000 rows by filter", "patch1000", 1000, "insert1000"),
]

CEILING_UNITS = {
    "transaction": "PATCH transactions/s",
    "insert": "INSERTs/s",
    "insert1000": "rows/s in INSERTs of 1000",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--only", help="scenarios to run, by name: patch,post1000")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else {s[1] for s in SCENARIOS}
    seconds = 3 if args.short else 10
    connection_counts = (32,) if args.short else (32, 128)
    worker_counts = (1,) if args.short else (1, os.cpu_count())
    env = {"ROWS": str(args.rows), "DELETE_FROM": str(args.rows)}
    for workers in worker_counts:
        print(f"seeding {args.rows} rows ...", flush=True)
        url = seed(args.rows)
        print(f"\n== {workers} worker(s), {seconds} s a run", flush=True)
        for connections in connection_counts:
            print(f"-- {connections} connections: measuring ...", flush=True)
            # Not beside the API: both at once passed MariaDB's
            # max_connections (151) at 128.
            before = ceilings_of(connections, seconds, args.rows)
            api = api_server(url, workers)
            try:
                warm_up(api, connections, env)
                results = measure(api, connections, seconds, env, args.rows, only)
            finally:
                api.stop()
            asyncio.run(settled())
            after = ceilings_of(connections, seconds, args.rows)
            report(results, before, after)


def ceilings_of(connections, seconds, rows):
    """Each ceiling at ``connections``, straight through asyncmy: (its rate,
    the p99 of one transaction or INSERT in ms)."""
    return {
        kind: tuple(ceiling_figures("write_ceiling", kind, connections, seconds, rows))
        for kind in CEILING_UNITS
    }


def warm_up(api, connections, env):
    """Unmeasured writes, so that the first scenario does not pay for a
    cold server (its pools' connections opened, its statements compiled):
    the ceilings' pools are connected before they are timed."""
    for scenario in ("patch", "post"):
        wrk(api.url, connections, 2, scenario, env)


def measure(api, connections, seconds, env, rows, only):
    """(label, rate, wrk's result, ceiling kind) of each scenario named in ``only``."""
    results = []
    for label, scenario, written, kind in SCENARIOS:
        if scenario not in only:
            continue
        # Every version back to 1, as the requests expect, and the rows an
        # earlier DELETE run took put back: a run measures writes, not 412s
        # and 404s. Not before the requests the last run left queued in the
        # server have written (PATCHes of 1,000 rows count versions up).
        asyncio.run(settled())
        asyncio.run(
            _sql("UPDATE mytable SET version = 1", deletable(rows, seconds), database=DATABASE)
        )
        result = wrk(api.url, connections, seconds, scenario, env)
        results.append((label, result["rps"] * written, result, kind, written > 1))
    return results


def report(results, before, after):
    """Each result beside the mean of its ceiling before and after, and
    the ceilings' own p99, the database's tail at this concurrency."""
    ceilings = {kind: (before[kind][0] + after[kind][0]) / 2 for kind in before}

    print("   ceilings through asyncmy (mean of before and after; p99 before, after):", flush=True)
    for kind, unit in CEILING_UNITS.items():
        print(
            f"     {kind:<12} {ceilings[kind]:9.0f} {unit} "
            f"({before[kind][0]:.0f} before, {after[kind][0]:.0f} after; "
            f"p99 {before[kind][1]:.2f}, {after[kind][1]:.2f} ms)",
            flush=True,
        )
    for label, rate, result, kind, in_rows in results:
        unit = "rows/s" if in_rows else "req/s "
        errors = f"  NON-2XX {result['errors']}" if result["errors"] else ""
        print(
            f"  {label:<30} {rate:9.0f} {unit} p50 {result['p50']:7.2f} ms  "
            f"p99 {result['p99']:7.2f} ms  {rate / ceilings[kind]:6.1%} of "
            f"{kind}{errors}",
            flush=True,
        )


# More DELETEs a second than any run here has made (6,516 at 2 workers and
# 128 connections, when half the seeded table, 50,000 rows, ran out in 8 s).
DELETES_A_SECOND = 25_000


def deletable(rows, seconds):
    """The statement that makes sure DELETE's rows are there: the ids a run
    of ``seconds`` takes one after another from ``rows`` + 1 up (rows that
    POSTs put there are kept, and deletable too)."""
    last = rows + DELETES_A_SECOND * seconds
    return (
        "INSERT INTO mytable (id, name, data, version, created_at, updated_at) "
        f"SELECT seq, CONCAT('bench ', seq), {SEEDED_DATA}, 1, UTC_TIMESTAMP(6), "
        f"UTC_TIMESTAMP(6) FROM seq_{rows + 1}_to_{last} "
        "LEFT JOIN mytable ON mytable.id = seq WHERE mytable.id IS NULL"
    )


if __name__ == "__main__":
    main()
