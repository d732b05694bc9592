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

from bench.run import BIN, Server
from tests.support import alembic, mariadb_database
from tests.support.sakila import load_sakila

TOKEN = "fuzz-token"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-time", type=int, help="seconds at most (else: until done)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    url, drop = mariadb_database()
    try:
        load_sakila(url)
        alembic(url, "upgrade", "head")
        env = {
            "DATABASE_URL": url,
            "API_TABLES": "*",
            "API_ROUTINES": "*",
            "API_AGGREGATES_ENABLED": "true",
            "API_TOKENS": f"{TOKEN}:read,write",
            "API_ACCESS_LOG": "off",
        }
        server = Server([str(BIN / "pserve"), "production.ini"], env, workers=1)
        try:
            command = [
                *(str(BIN / "schemathesis"), "run", f"{server.url}/openapi.json"),
                *("--header", f"Authorization: Bearer {TOKEN}"),
                *("--checks", "all", "--exclude-checks", "positive_data_acceptance"),
                *("--max-examples", "30", "--workers", "2", "--seed", str(args.seed)),
            ]
            if args.max_time:
                command += ["--max-time", str(args.max_time)]
            returncode = subprocess.run(command).returncode
        finally:
            server.stop()
    finally:
        drop()
    sys.exit(returncode)


if __name__ == "__main__":
    main()
