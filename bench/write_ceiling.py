"""The write ceilings: the statements of a write straight through asyncmy, no HTTP.

python bench/write_ceiling.py KIND CONNECTIONS SECONDS ROWS DATABASE

KIND is ``transaction`` (BEGIN; SELECT ... FOR UPDATE; UPDATE ... WHERE id = ?
AND version = ?; COMMIT, the transaction of a PATCH with If-Match),
``insert`` (one INSERT, committed) or ``insert1000`` (one INSERT of 1,000
rows, committed). Prints transactions/s (rows/s for ``insert1000``), then
the 99th percentile of one's time, in ms: the database's own tail at this
concurrency, beside which the API's p99 is read.
"""

import ast
import asyncio
import os
import random
import statistics
import sys

from bench.driver_ceiling import per_second

COLUMNS = "(name, data, version, created_at, updated_at)"
ROW = "(%s, '{\"n\": 1}', 1, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))"


async def main(kind, concurrency, seconds, rows, database):
    async def transaction(cursor):
        row = random.randint(1, rows)
        await cursor.execute("BEGIN")
        await cursor.execute("SELECT version FROM mytable WHERE id = %s FOR UPDATE", (row,))
        found = await cursor.fetchone()
        version = found[0] if found else 0  # a row deleted by a DELETE run updates none
        await cursor.execute(
            "UPDATE mytable SET data = '{\"patched\": true}', version = version + 1, "
            "updated_at = UTC_TIMESTAMP(6) WHERE id = %s AND version = %s",
            (row, version),
        )
        await cursor.execute("COMMIT")

    async def insert(cursor):
        await cursor.execute(f"INSERT INTO mytable {COLUMNS} VALUES {ROW}", ("ceiling",))

    async def insert1000(cursor):
        values = ", ".join([ROW] * 1000)
        await cursor.execute(f"INSERT INTO mytable {COLUMNS} VALUES {values}", ["c"] * 1000)

    work = {"transaction": transaction, "insert": insert, "insert1000": insert1000}[kind]
    connect = ast.literal_eval(os.environ["BENCH_CONNECT"])
    # Autocommit: each INSERT commits itself; the transaction says BEGIN and COMMIT.
    latencies = []
    rate = await per_second(connect, database, concurrency, seconds, work, latencies=latencies)
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    print(f"{rate * (1000 if kind == 'insert1000' else 1):.1f} {p99:.2f}")


if __name__ == "__main__":
    kind, c, s, r, db = sys.argv[1:6]
    asyncio.run(main(kind, int(c), float(s), int(r), db))
