"""Schemathesis against every table, view and routine of Sakila, as production serves them.

    python -m bench.fuzz [--max-time SECONDS] [--seed N]

It loads Sakila into a fresh MariaDB database (at TEST_MARIADB_URL), starts
``pserve production.ini`` on it with ``API_TABLES='*'`` and ``API_ROUTINES='*'``,
and runs schemathesis over the OpenAPI document with every check but
positive_data_acceptance (which wants a 2xx where 404, 409 and 412 are the
right answers). It prints schemathesis's report, and exits non-zero on any
failure. The suite fuzzes one table on SQLite; this covers Sakila's ~280
operations, which takes minutes, so it lives here and not in the suite.
"""

import argparse
import subprocess
import sys

from bench.run import BIN, sakila_server

TOKEN = "fuzz-token"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-time", type=int, help="seconds at most (else: until done)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with sakila_server(TOKEN, API_ROUTINES="*") as server:
        command = [
            *(str(BIN / "schemathesis"), "run", f"{server.url}/openapi.json"),
            *("--header", f"Authorization: Bearer {TOKEN}"),
            *("--checks", "all", "--exclude-checks", "positive_data_acceptance"),
            *("--max-examples", "30", "--workers", "2", "--seed", str(args.seed)),
        ]
        if args.max_time:
            command += ["--max-time", str(args.max_time)]
        returncode = subprocess.run(command).returncode
    sys.exit(returncode)


if __name__ == "__main__":
    main()
