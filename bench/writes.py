"""The write benchmark: each write of PostgREST's protocol against the API as
production runs it, beside the same statements straight through asyncmy.

    python -m bench.writes            # 100,000 rows; 32 and 128 connections; 1 and N workers
    python -m bench.writes --short    # 32 connections, 1 worker, 3 s a run

Prints per scenario req/s (rows/s for arrays), p50 and p99, and the ratio to
its ceiling measured in the same run (``bench/write_ceiling.py``): the PATCH
and PUT transaction, a single INSERT, a multi-row INSERT of 1,000 rows. The
table is seeded afresh before each worker count, and PATCH and PUT track the
versions they are answered, so that a run measures writes, not 412s.
"""

import argparse
import asyncio
import os

from bench.run import DATABASE, _sql, api_server, ceiling_of, seed, wrk

# (label, wrk scenario, rows a request writes, the ceiling it is compared with)
SCENARIOS = [
    ("PATCH + If-Match", "patch", 1, "transaction"),
    ("PUT + If-Match", "put", 1, "transaction"),
    ("DELETE", "delete", 1, "transaction"),
    ("POST one row", "post", 1, "insert"),
    ("POST 100 rows", "post100", 100, "insert1000"),
    ("POST 1000 rows", "post1000", 1000, "insert1000"),
    ("upsert 1000 rows", "upsert1000", 1000, "insert1000"),
    ("PATCH 1000 rows by filter", "patch1000", 1000, "insert1000"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    seconds = 3 if args.short else 10
    connection_counts = (32,) if args.short else (32, 128)
    worker_counts = (1,) if args.short else (1, os.cpu_count())
    env = {"ROWS": str(args.rows)}
    deleted_from = args.rows // 2  # each DELETE run takes rows after the last one's
    for workers in worker_counts:
        print(f"seeding {args.rows} rows ...", flush=True)
        url = seed(args.rows)
        deleted_from = args.rows // 2
        print(f"\n== {workers} worker(s), {seconds} s a run", flush=True)
        api = api_server(url, workers)
        try:
            for connections in connection_counts:
                ceilings = {
                    kind: ceiling_of("write_ceiling", kind, connections, seconds, args.rows)
                    for kind in ("transaction", "insert", "insert1000")
                }
                print(
                    f"-- {connections} connections; ceilings through asyncmy: "
                    f"{ceilings['transaction']:.0f} PATCH transactions/s, "
                    f"{ceilings['insert']:.0f} INSERTs/s, "
                    f"{ceilings['insert1000']:.0f} rows/s in INSERTs of 1000",
                    flush=True,
                )
                for label, scenario, rows, kind in SCENARIOS:
                    # Every version back to 1, as the requests expect: a run
                    # measures writes, not 412s.
                    asyncio.run(_sql("UPDATE mytable SET version = 1", database=DATABASE))
                    env["DELETE_FROM"] = str(deleted_from)
                    result = wrk(api.url, connections, seconds, scenario, env)
                    if scenario == "delete":
                        deleted_from += int(result["rps"] * seconds * 1.5) + 1000
                    rate = result["rps"] * rows
                    unit = "rows/s" if rows > 1 else "req/s "
                    errors = f"  NON-2XX {result['errors']}" if result["errors"] else ""
                    print(
                        f"  {label:<27} {rate:9.0f} {unit} p50 {result['p50']:7.2f} ms  "
                        f"p99 {result['p99']:7.2f} ms  {rate / ceilings[kind]:6.1%} of "
                        f"{kind}{errors}",
                        flush=True,
                    )
        finally:
            api.stop()


if __name__ == "__main__":
    main()
