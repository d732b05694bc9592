"""The benchmark: the API as production runs it, against ceilings measured in the same run.

    python bench/run.py            # full: 100,000 rows, 64 and 256 connections, 10 s a run
    python bench/run.py --short    # well under a minute
    python bench/run.py --export-rows 1000000   # also an NDJSON export of a million rows
    python bench/run.py --soak     # worker RSS after 10,000 and after 500,000 requests

Needs MariaDB (TEST_MARIADB_URL, default root@127.0.0.1:3306) and wrk. It
creates and drops its own database. Every result is printed as requests/s with
p50/p99 latency and as a ratio to the ceilings of this run:

- driver ceiling: point SELECTs/s straight through asyncmy, same concurrency, no HTTP,
  measured before and after the scenarios (their mean; the machine's speed drifts);
- HTTP ceiling: a bare ASGI app answering a fixed JSON body, same server and workers.
"""

import argparse
import asyncio
import contextlib
import os
import pathlib
import random
import re
import socket
import subprocess
import sys
import tempfile
import time

import httpx
from sqlalchemy.engine import make_url

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent
SERVER_URL = make_url(os.environ.get("TEST_MARIADB_URL", "mysql+asyncmy://root@127.0.0.1:3306/"))
DATABASE = "api_bench"
CONNECT = {
    "host": SERVER_URL.host,
    "port": SERVER_URL.port or 3306,
    "user": SERVER_URL.username,
    "password": SERVER_URL.password or "",
}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- database -----------------------------------------------------------------------


async def _sql(*statements, database=None):
    import asyncmy

    connection = await asyncmy.connect(**CONNECT, database=database, autocommit=True)
    try:
        async with connection.cursor() as cursor:
            for statement in statements:
                await cursor.execute(statement)
            return await cursor.fetchall()
    finally:
        await connection.ensure_closed()


# The data column of seeded row number ``seq`` (MariaDB's sequence engine)
SEEDED_DATA = "JSON_OBJECT('n', seq, 'tags', JSON_ARRAY('a', 'b'))"


def seed(rows):
    """A fresh database with ``rows`` rows of mytable (MariaDB's sequence engine makes them)."""
    # sql_notes off: no "Can't drop database" note printed when it is not there
    drop = ("SET sql_notes = 0", f"DROP DATABASE IF EXISTS {DATABASE}")
    asyncio.run(_sql(*drop, f"CREATE DATABASE {DATABASE}"))
    url = SERVER_URL.set(database=DATABASE).render_as_string(hide_password=False)
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run(
        [BIN / "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    asyncio.run(
        _sql(
            "INSERT INTO mytable (name, data, version, created_at, updated_at) "
            f"SELECT CONCAT('bench ', seq), {SEEDED_DATA}, 1, "
            f"UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) FROM seq_1_to_{rows}",
            "ANALYZE TABLE mytable",
            database=DATABASE,
        )
    )
    return url


# --- servers -------------------------------------------------------------------------


class Server:
    """A gunicorn master with uvicorn workers; ``command`` picks the app."""

    def __init__(self, command, env, workers):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        env = {
            **os.environ,
            **env,
            "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{self.port} --workers {workers}",
        }
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/__lbheartbeat__").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError("server did not start")
        time.sleep(1)  # let every worker boot

    def worker_pids(self):
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout
        return [int(pid) for pid in out.split()]

    def cpu_seconds(self):
        """The CPU time (user and system) its workers have used so far."""
        total = 0
        for pid in self.worker_pids():
            stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()  # after the command, which may hold spaces
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def rss_mib(self):
        """(current RSS, peak RSS) of the largest worker, in MiB."""
        best = (0.0, 0.0)
        for pid in self.worker_pids():
            status = pathlib.Path(f"/proc/{pid}/status").read_text()
            rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
            hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
            best = max(best, (rss, hwm))
        return best

    def stop(self):
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


def reset_versions():
    """Every row's version back to 1, so that a run of ``patch`` or ``put``
    (whose wrk script starts from version 1) measures writes, not 412s; not
    before the requests the last run left in the server have written."""
    asyncio.run(settled())
    asyncio.run(_sql("UPDATE mytable SET version = 1", database=DATABASE))


async def settled(quiet=0.5, longest=60.0):
    """Once no other statement has run on the server for ``quiet`` seconds."""
    busy = (
        "SELECT COUNT(*) FROM information_schema.processlist "
        "WHERE command <> 'Sleep' AND id <> CONNECTION_ID() AND user <> 'system user'"
    )
    idle_since = deadline = time.monotonic()
    deadline += longest
    while time.monotonic() < deadline:
        ((running,),) = await _sql(busy)
        now = time.monotonic()
        if running:
            idle_since = now
        elif now - idle_since >= quiet:
            return
        await asyncio.sleep(0.05)


def api_server(database_url, workers, **settings):
    """``pserve production.ini`` on ``database_url``; ``settings`` as environment variables."""
    env = {"DATABASE_URL": database_url, "API_TOKENS": "bench-token:read,write", **settings}
    return Server([str(BIN / "pserve"), "production.ini"], env, workers)


@contextlib.contextmanager
def sakila_server(token, **settings):
    """``pserve production.ini`` (one worker) on a fresh MariaDB database
    holding Sakila, every table served, aggregates on, ``token`` granted
    reads and writes, ``settings`` as environment variables; dropped after."""
    from tests.support import alembic, mariadb_database
    from tests.support.sakila import load_sakila

    url, drop = mariadb_database()
    try:
        load_sakila(url)
        alembic(url, "upgrade", "head")
        env = {
            "DATABASE_URL": url,
            "API_TABLES": "*",
            "API_AGGREGATES_ENABLED": "true",
            "API_TOKENS": f"{token}:read,write",
            "API_ACCESS_LOG": "off",
            **settings,
        }
        server = Server([str(BIN / "pserve"), "production.ini"], env, workers=1)
        try:
            yield server
        finally:
            server.stop()
    finally:
        drop()


def bare_server(workers):
    # The same worker class as production.ini's server
    command = [str(BIN / "gunicorn"), "-k", "api.serve.Worker", "bench.bare_asgi:app"]
    return Server(command, {}, workers)


# --- measurements ---------------------------------------------------------------------

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url, connections, seconds, scenario=None, env=None):
    # One wrk thread: with two, on this 2-core machine, even the bare ASGI app
    # showed a p99 of ~1 s at 256 connections (42 ms with one), at the same
    # throughput: the tail was the load generator's, not the server's.
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if scenario:
        command += ["-s", str(ROOT / "bench" / "scenarios.lua")]
        env = {**(env or {}), "SCENARIO": scenario}
    out = subprocess.run(
        [*command, url],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=True,
    ).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))

    def ms(text):
        value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
        return float(value) * UNITS[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": ms(latency["50"]),
        "p99": ms(latency["99"]),
        "errors": int(errors.group(1)) if errors else 0,
    }


def ceiling_of(module, *args):
    """What ``python -m bench.MODULE ARGS... DATABASE`` prints first: a ceiling
    measured straight through asyncmy, in a process of its own."""
    return ceiling_figures(module, *args)[0]


def ceiling_figures(module, *args):
    """Every number ``python -m bench.MODULE ARGS... DATABASE`` prints."""
    out = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *map(str, args), DATABASE],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "BENCH_CONNECT": repr(CONNECT)},
    ).stdout
    return [float(word) for word in out.split() if word[:1].isdigit()]


def driver_ceiling(connections, seconds, rows, pool_size):
    return ceiling_of("driver_ceiling", connections, seconds, rows, pool_size)


def export_ndjson(server, expected_rows, pause=0.0):
    """(rows/s, peak worker RSS MiB) of a whole-table NDJSON export; a client
    that waits ``pause`` seconds after each chunk is slower than the database."""
    peak = server.rss_mib()[1]
    rows = 0
    started = time.perf_counter()
    with httpx.stream(
        "GET", f"{server.url}/mytable/", headers={"Accept": "application/x-ndjson"}, timeout=600
    ) as response:
        for chunk in response.iter_bytes():
            rows += chunk.count(b"\n")
            peak = max(peak, server.rss_mib()[1]) if random.random() < 0.01 else peak
            time.sleep(pause)
    elapsed = time.perf_counter() - started
    peak = max(peak, server.rss_mib()[1])
    assert rows == expected_rows, (rows, expected_rows)
    return rows / elapsed, peak


def report(label, result, ceilings):
    ratios = "  ".join(
        f"{result['rps'] / value:6.1%} of {name}" for name, value in ceilings.items()
    )
    errors = f"  ERRORS {result['errors']}" if result["errors"] else ""
    print(
        f"  {label:<34} {result['rps']:9.0f} req/s  p50 {result['p50']:7.2f} ms  "
        f"p99 {result['p99']:7.2f} ms  {ratios}{errors}",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="a quick run, well under a minute")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--export-rows",
        type=int,
        default=0,
        help="also export this many rows as NDJSON (re-seeds the table)",
    )
    parser.add_argument("--soak", action="store_true", help="RSS after 10k and 500k requests")
    args = parser.parse_args()
    seconds = 3 if args.short else 10
    connection_counts = (64,) if args.short else (64, 256)
    worker_counts = (1,) if args.short else (1, os.cpu_count())
    pool_size = 30  # generous: the ceiling is asyncmy at its best, whatever production.ini says

    print(f"seeding {args.rows} rows ...", flush=True)
    url = seed(args.rows)
    env = {"ROWS": str(args.rows)}
    for workers in worker_counts:
        print(f"\n== {workers} worker(s), {seconds} s a run", flush=True)
        bare = bare_server(workers)
        api = api_server(url, workers)
        try:
            for connections in connection_counts:
                bare_app = wrk(f"{bare.url}/", connections, seconds)
                # The driver ceiling before and after the scenarios: a shared
                # machine's speed drifts by 10-20% over a minute; their mean
                # is what the scenarios are compared with, and both are shown.
                before = driver_ceiling(connections, seconds, args.rows, pool_size * workers)
                scenarios = [
                    ("GET /mytable/{id}", "point"),
                    ("GET /mytable/?limit=50 (keyset)", "page"),
                    ("filtered + ordered page", "filtered"),
                ]
                results = [
                    (label, wrk(api.url, connections, seconds, script, env))
                    for label, script in scenarios
                ]
                after = driver_ceiling(connections, seconds, args.rows, pool_size * workers)
                ceilings = {"driver": (before + after) / 2, "http": bare_app["rps"]}
                print(
                    f"-- {connections} connections: driver ceiling {ceilings['driver']:.0f} "
                    f"selects/s ({before:.0f} before, {after:.0f} after), HTTP ceiling "
                    f"{ceilings['http']:.0f} req/s (its p99 {bare_app['p99']:.2f} ms)",
                    flush=True,
                )
                for label, result in results:
                    report(label, result, ceilings)
            patches = wrk(api.url, 32, seconds, "patch", env)
            report("PATCH + If-Match, 32 connections", patches, ceilings)
            rows_per_s, peak = export_ndjson(api, args.rows)
            print(
                f"  NDJSON export of {args.rows} rows: {rows_per_s:,.0f} rows/s, "
                f"peak worker RSS {peak:.0f} MiB",
                flush=True,
            )
            print(f"  worker RSS now {api.rss_mib()[0]:.0f} MiB", flush=True)
        finally:
            api.stop()
            bare.stop()

    if args.export_rows:
        print(f"\nseeding {args.export_rows} rows for the export ...", flush=True)
        url = seed(args.export_rows)
        api = api_server(url, 1)
        try:
            before = api.rss_mib()[0]
            rows_per_s, peak = export_ndjson(api, args.export_rows)
            print(
                f"  NDJSON export of {args.export_rows} rows: {rows_per_s:,.0f} rows/s; "
                f"worker RSS {before:.0f} MiB before, peak {peak:.0f} MiB",
                flush=True,
            )
            # The worker must not hold what a slow client has not taken yet.
            rows_per_s, peak = export_ndjson(api, args.export_rows, pause=0.001)
            print(
                f"  the same, a client pausing 1 ms a chunk: {rows_per_s:,.0f} rows/s; "
                f"peak worker RSS {peak:.0f} MiB",
                flush=True,
            )
        finally:
            api.stop()

    if args.soak:
        url = seed(args.rows)
        api = api_server(url, 1)
        try:
            warm_up = 0
            while warm_up < 10_000:  # a second or a few, by the machine's speed
                warm_up += int(wrk(api.url, 64, 1, "point", env)["rps"])
            after_10k = api.rss_mib()[0]
            total = warm_up
            while total < 500_000:
                total += int(wrk(api.url, 64, 30, "point", env)["rps"] * 30)
            after_500k = api.rss_mib()[0]
            print(
                f"\nsoak: worker RSS {after_10k:.1f} MiB after ~{warm_up:,} requests, "
                f"{after_500k:.1f} MiB after ~{total:,} ({after_500k / after_10k - 1:+.1%})"
            )
        finally:
            api.stop()

    asyncio.run(_sql(f"DROP DATABASE IF EXISTS {DATABASE}"))


if __name__ == "__main__":
    main()
