"""Single-row writes beside bulk ones on the same worker: what a few clients
posting arrays of 1,000 rows do to everyone else's latency.

    python -m bench.mixed                    # 2 rounds, 10 s a run
    python -m bench.mixed --rounds 4 --bulk-connections 8

One worker of ``pserve production.ini`` on MariaDB. Each round runs wrk's
``patch`` (32 connections, ``PATCH`` with ``If-Match`` of random rows) alone,
then again while a second wrk runs ``post1000`` (4 connections). The run
alone is the reference each mixed run is read against, in the same round.

A request of 1,000 rows does its synchronous work (parsing, checking and
answering its rows) between two awaits, so the event loop serves nothing
else meanwhile: bench/RESULTS.md, "Where the event loop stalls".
"""

import argparse
import concurrent.futures
import time

from bench.run import api_server, reset_versions, seed, wrk

ROWS = 100_000
CONNECTIONS = 32
WRK_ENV = {"ROWS": str(ROWS)}  # the id range of bench/scenarios.lua


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--bulk-connections", type=int, default=4)
    args = parser.parse_args()
    server = api_server(seed(ROWS), workers=1)
    try:
        # Warm: pools connected, statements compiled.
        wrk(server.url, CONNECTIONS, 2, "patch", WRK_ENV)
        wrk(server.url, args.bulk_connections, 2, "post1000", WRK_ENV)
        for round_ in range(1, args.rounds + 1):
            reset_versions()
            alone = wrk(server.url, CONNECTIONS, args.seconds, "patch", WRK_ENV)
            print(f"round {round_}, alone:       {_shown(alone)}", flush=True)
            reset_versions()
            mixed, bulk = beside_bulk(server.url, args.seconds, args.bulk_connections)
            print(
                f"round {round_}, beside bulk: {_shown(mixed)}; POST of 1,000 rows beside it: "
                f"{bulk['rps'] * 1000:,.0f} rows/s, p99 {bulk['p99']:.0f} ms",
                flush=True,
            )
    finally:
        server.stop()


def beside_bulk(url, seconds, bulk_connections):
    """wrk's ``patch`` while a second wrk posts arrays of 1,000 rows: both results."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        posting = pool.submit(wrk, url, bulk_connections, seconds + 2, "post1000", WRK_ENV)
        time.sleep(1)  # the bulk load under way before the run starts
        patching = wrk(url, CONNECTIONS, seconds, "patch", WRK_ENV)
        return patching, posting.result()


def _shown(result):
    rps, p50, p99 = result["rps"], result["p50"], result["p99"]
    errors = f" ({result['errors']} not 2xx)" if result["errors"] else ""
    return f"PATCH {rps:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms{errors}"


if __name__ == "__main__":
    main()
