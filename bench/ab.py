"""A/B on a noisy machine: another commit's server and this tree's, up at
once on one database, with wrk runs alternating between them.

    python -m bench.ab 8de8893 post                  # 12 runs of each, 5 s, 32 connections
    python -m bench.ab HEAD~3 point --rounds 20 --seconds 3
    python -m bench.ab HEAD point --set API_ACCESS_LOG=off   # what a setting costs

Prints, for each run, requests/s, p99 and the worker's CPU time a request
(from /proc: what a cut of a few percent changes, where req/s swings with
the machine), then the median of each side. The other commit is checked out
in a temporary git worktree and served from there, with this tree's
virtualenv. One worker each. Versions go back to 1 before each run, so that
``patch`` and ``put`` measure writes, not 412s. ``--set NAME=VALUE`` puts
an environment variable (a setting, README "Settings") in this tree's
server only.
"""

import argparse
import os
import statistics
import subprocess
import tempfile

from bench.run import BIN, ROOT, Server, reset_versions, seed, wrk

ROWS = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("commit", help="the other side: a commit, tag or branch")
    parser.add_argument("scenario", help="a scenario of bench/scenarios.lua: point, post, ...")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    changed = dict(setting.split("=", 1) for setting in args.set)
    url = seed(ROWS)
    env = {"DATABASE_URL": url, "API_TOKENS": "bench-token:read,write"}
    with tempfile.TemporaryDirectory() as folder:
        tree = os.path.join(folder, "tree")
        subprocess.run(
            ["git", "-C", ROOT, "worktree", "add", "-q", "--detach", tree, args.commit], check=True
        )
        servers = {}
        try:
            servers[args.commit] = Server(
                [str(BIN / "pserve"), os.path.join(tree, "production.ini")],
                {**env, "PYTHONPATH": tree},
                1,
            )
            servers["this tree"] = Server(
                [str(BIN / "pserve"), "production.ini"], {**env, **changed}, 1
            )
            compare(servers, args)
        finally:
            for server in servers.values():
                server.stop()
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree], check=True)


def compare(servers: dict[str, Server], args: argparse.Namespace) -> None:
    if args.set:
        print(f"this tree runs with {' '.join(args.set)}")
    scenario_env = {"ROWS": str(ROWS)}
    for server in servers.values():  # warm both
        wrk(server.url, args.connections, 2, args.scenario, scenario_env)
    cpu_per_request: dict[str, list[float]] = {name: [] for name in servers}
    order = list(servers)
    for round_ in range(args.rounds):
        for name in order if round_ % 2 == 0 else order[::-1]:
            server = servers[name]
            reset_versions()
            before = server.cpu_seconds()
            result = wrk(server.url, args.connections, args.seconds, args.scenario, scenario_env)
            used = server.cpu_seconds() - before
            per_request = used / max(result["rps"] * args.seconds, 1) * 1e6
            cpu_per_request[name].append(per_request)
            errors = f"  NON-2XX {result['errors']}" if result["errors"] else ""
            print(
                f"{name:>12}  {result['rps']:7.0f} req/s  p99 {result['p99']:7.2f} ms  "
                f"worker CPU {per_request:5.0f} us a request{errors}",
                flush=True,
            )
    for name, values in cpu_per_request.items():
        print(
            f"{name:>12}  median worker CPU {statistics.median(values):.0f} us a request "
            f"(from {min(values):.0f} to {max(values):.0f})"
        )


if __name__ == "__main__":
    main()
