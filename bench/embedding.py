"""Embedding on a real schema: a page of 50 Sakila films with their actors.

    python -m bench.embedding            # 10 s a run
    python -m bench.embedding --short    # 3 s a run

Loads Sakila into its own MariaDB database, serves it by reflection
(``API_TABLES=*``) with ``pserve production.ini`` (one worker), and prints,
for the page with and without the actors embedded: the statements one
request costs (MariaDB's Com_select), requests/s, p50 and p99 with wrk at 32
connections, and beside them the ceiling: the same statements straight
through asyncmy at the same concurrency, no HTTP.
"""

import argparse
import asyncio

import asyncmy
import httpx

from bench.driver_ceiling import per_second
from bench.run import BIN, CONNECT, SERVER_URL, Server, _sql, wrk
from tests.support.sakila import load_sakila

DATABASE = "api_bench_sakila"
PAGE = "/film/?select=film_id,title,actor(first_name,last_name)&limit=50"
PLAIN = "/film/?select=film_id,title&limit=50"
# What the API runs for PAGE, as plain SQL: the page, then the actors of its films.
PAGE_SQL = "SELECT film_id, title FROM film ORDER BY film_id LIMIT 51"
ACTORS_SQL = (
    "SELECT actor.first_name, actor.last_name, actor.actor_id, film_actor.film_id "
    "FROM actor JOIN film_actor ON film_actor.actor_id = actor.actor_id "
    "WHERE film_actor.film_id IN ({}) ORDER BY actor.actor_id"
)


async def selects_so_far():
    connection = await asyncmy.connect(**CONNECT, autocommit=True)
    async with connection.cursor() as cursor:
        await cursor.execute("SHOW GLOBAL STATUS LIKE 'Com_select'")
        (_, value), *_ = await cursor.fetchall()
    connection.close()
    return int(value)


def statements_per_request(url):
    """Com_select counts every SELECT on the server: the request's, and those
    of reading it (calibrated by two readings with nothing between them)."""
    httpx.get(url).raise_for_status()  # pools and statement caches warm
    idle = -asyncio.run(selects_so_far()) + asyncio.run(selects_so_far())
    before = asyncio.run(selects_so_far())
    httpx.get(url).raise_for_status()
    return asyncio.run(selects_so_far()) - before - idle


async def ceiling(connections, seconds, embed):
    async def page(cursor):
        await cursor.execute(PAGE_SQL)
        films = [row[0] for row in await cursor.fetchall()][:50]
        if embed:
            await cursor.execute(ACTORS_SQL.format(", ".join(["%s"] * len(films))), films)
            await cursor.fetchall()

    return await per_second(CONNECT, DATABASE, connections, seconds, page)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true")
    seconds = 3 if parser.parse_args().short else 10
    connections = 32
    asyncio.run(_sql(f"CREATE OR REPLACE DATABASE {DATABASE}"))
    url = SERVER_URL.set(database=DATABASE).render_as_string(hide_password=False)
    load_sakila(url)
    env = {"DATABASE_URL": url, "API_TABLES": "*"}
    server = Server([str(BIN / "pserve"), "production.ini"], env, workers=1)
    try:
        print(f"Sakila, one worker, {connections} connections, {seconds} s a run")
        for label, path, embed in (("with actors", PAGE, True), ("without", PLAIN, False)):
            statements = statements_per_request(server.url + path)
            limit = asyncio.run(ceiling(connections, seconds, embed))
            result = wrk(server.url + path, connections, seconds)
            print(
                f"  50 films {label:<12} {statements} statements  {result['rps']:7.0f} req/s  "
                f"p50 {result['p50']:6.2f} ms  p99 {result['p99']:6.2f} ms  "
                f"driver {limit:7.0f}/s ({result['rps'] / limit:.0%})"
                + (f"  ERRORS {result['errors']}" if result["errors"] else ""),
                flush=True,
            )
    finally:
        server.stop()
        asyncio.run(_sql(f"DROP DATABASE IF EXISTS {DATABASE}"))


if __name__ == "__main__":
    main()
