"""Where a request's worker CPU goes, by layer of the stack.

    python -m bench.layers                      # post and point, 10 s each
    python -m bench.layers patch post --seconds 5
    API_ACCESS_LOG=off python -m bench.layers post   # a setting changed for the server
    PY_SPY_ARGS=--nonblocking python -m bench.layers  # py-spy's options, added

One worker of ``pserve production.ini`` on MariaDB, 32 connections of wrk
(a scenario of bench/scenarios.lua). A first run measures the worker's CPU
time a request from /proc; a second samples the worker with py-spy (200 Hz)
and puts each sample in the layer of its innermost frame that names one
(``LAYERS``): a sample in the logging module called by pyramid_tm is
pyramid_tm's, one called by the access log is the access log's. A layer's
share of the samples, times the CPU a request, is its microseconds.

py-spy pauses the worker to sample it, so the second run is slower, and
its pauses land on system calls more often than their time warrants (a
line calling ``asyncio.get_running_loop()``, 160 ns, held 1.4% of a
``POST``'s samples); ``--nonblocking`` does not pause it, and loses some
samples instead. A layer's share swings by a few points from run to run:
compare runs, not one. Absolute times come from the first run. Native
code (asyncmy, uvloop, greenlet's switch, the kernel) has no Python frame: its time goes
to the Python function that called it (asyncmy's to the database layer,
the loop's polling and socket calls to the event loop).
"""

import argparse
import collections
import os
import subprocess
import sys

from bench.run import BIN, Server, api_server, reset_versions, seed, wrk

ROWS = 10_000
CONNECTIONS = 32

# Each layer and the frames that belong to it: a function name (with its
# class) or a path fragment. Checked in this order for each frame.
LAYERS = [
    (
        "access log, metrics, request id, gzip",
        (
            "api/observe.py",
            "prometheus_client/",
            "api/serve.py",
            "starlette/",
            "ForwardedHeaders",
            "proxy_headers",
        ),
    ),
    (
        "database: statements, driver, pools, groups",
        ("api/sql/", "api/reads/", "api/db/", "sqlalchemy/", "asyncmy/", "aiosqlite/"),
    ),
    ("pyramid_tm and transaction", ("pyramid_tm/", "transaction/", "zope/sqlalchemy/")),
    (
        "Pyramid and WebOb: router, traversal, security, request, response",
        (
            "pyramid/",
            "pyramid_retry/",
            "webob/",
            "zope/interface/",
            "api/security.py",
            "api/resources.py",
        ),
    ),
    ("ASGI bridge and request greenlets", ("api/bridge/",)),
    ("the view: body, checks, answer", ("api/",)),
    ("HTTP server: uvicorn, httptools", ("uvicorn/", "api/protocol.py", "h11/")),
    ("event loop and sockets", ("asyncio/", "uvloop/")),
]
OTHER = "other"


def layer_of(stack: str) -> str:
    """The layer of a sample: that of its innermost frame that names one."""
    for frame in reversed(stack.split(";")):
        for name, markers in LAYERS:
            if any(marker in frame for marker in markers):
                return name
    return OTHER


def run(server: Server, scenario: str, seconds: int) -> dict:
    """wrk's result for ``scenario``, every row's version back to 1 first."""
    reset_versions()
    return wrk(server.url, CONNECTIONS, seconds, scenario, {"ROWS": str(ROWS)})


def profile(server: Server, scenario: str, seconds: int, out: str) -> None:
    """py-spy's raw samples of the worker while wrk runs ``scenario``."""
    (pid,) = server.worker_pids()
    spy = subprocess.Popen(
        [
            str(BIN / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--duration",
            str(seconds),
            "--format",
            "raw",
            *os.environ.get("PY_SPY_ARGS", "").split(),
            "--output",
            out,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run(server, scenario, seconds)
    if spy.wait() != 0:
        sys.exit("py-spy failed: it needs to trace the worker (root, or CAP_SYS_PTRACE)")


def shares(raw: str) -> collections.Counter:
    """Samples by layer, from py-spy's raw output (a stack and a count a line)."""
    counts: collections.Counter = collections.Counter()
    with open(raw) as lines:
        for line in lines:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            counts[layer_of(stack)] += int(count)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", default=["post", "point"])
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    url = seed(ROWS)
    for scenario in args.scenarios:
        server = api_server(url, 1)
        try:
            run(server, scenario, 2)  # warm
            before = server.cpu_seconds()
            result = run(server, scenario, args.seconds)
            per_request = (server.cpu_seconds() - before) / (result["rps"] * args.seconds)
            raw = f"/tmp/bench-layers-{scenario}-{os.getpid()}.txt"
            profile(server, scenario, args.seconds, raw)
        finally:
            server.stop()
        counts = shares(raw)
        total = sum(counts.values())
        errors = f", NON-2XX {result['errors']}" if result["errors"] else ""
        print(
            f"== {scenario}: {result['rps']:.0f} req/s{errors}, {per_request * 1e6:.0f} us of "
            f"worker CPU a request, {total} samples ({raw})"
        )
        for name, count in counts.most_common():
            share = count / total
            print(f"   {share:6.1%} {share * per_request * 1e6:6.0f} us  {name}")


if __name__ == "__main__":
    main()
