"""The driver ceiling: point SELECTs/s straight through asyncmy, no HTTP, no ORM.

python bench/driver_ceiling.py CONNECTIONS SECONDS ROWS POOL_SIZE DATABASE
"""

import ast
import asyncio
import os
import random
import sys
import time

import asyncmy


async def per_second(
    connect, database, concurrency, seconds, work, pool_size=None, latencies=None
):
    """How many times a second ``concurrency`` clients run ``work(cursor)``
    straight through asyncmy, on a pool of ``pool_size`` connections; each
    run's seconds appended to ``latencies``, when given."""
    size = pool_size or concurrency
    pool = await asyncmy.create_pool(
        **connect, db=database, minsize=size, maxsize=size, autocommit=True
    )
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal done
        while (began := time.perf_counter()) < deadline:
            async with pool.acquire() as connection, connection.cursor() as cursor:
                await work(cursor)
            done += 1
            if latencies is not None:
                latencies.append(time.perf_counter() - began)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    pool.close()
    await pool.wait_closed()
    return done / elapsed


async def main(concurrency, seconds, rows, pool_size, database):
    async def point_read(cursor):
        await cursor.execute(
            "SELECT id, name, data, version, created_at, updated_at FROM mytable WHERE id = %s",
            (random.randint(1, rows),),
        )
        await cursor.fetchall()

    connect = ast.literal_eval(os.environ["BENCH_CONNECT"])
    rate = await per_second(connect, database, concurrency, seconds, point_read, pool_size)
    print(f"{rate:.1f} selects/s")


if __name__ == "__main__":
    c, s, r, p, db = sys.argv[1:6]
    asyncio.run(main(int(c), float(s), int(r), int(p), db))
