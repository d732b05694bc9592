"""Instructions per request, counted by callgrind: a measure this noisy machine cannot blur.

    python -m bench.instructions seed                 # once: api_bench with 1,000 rows
    valgrind --tool=callgrind python -m bench.instructions point 1
    valgrind --tool=callgrind python -m bench.instructions point 6

The app is driven in process over its ASGI front door (no HTTP server, no
client), 64 concurrent requests at a time; the database runs in its own
process, so only the API's instructions are counted. The difference of the
two totals ("Collected"), divided by 5 x 320 requests, is the cost of one
request (pages: ``page``, with 3 and 1, divided by 2 x 320).
"""

import asyncio
import os
import random
import sys

from bench.run import SERVER_URL, seed


def main() -> None:
    if sys.argv[1] == "seed":
        print(seed(1000))
        return
    kind, reps = sys.argv[1], int(sys.argv[2])
    os.environ.pop("DATABASE_URL", None)
    from api import main as make_app
    from api.bridge.asgi import ASGIApp

    url = SERVER_URL.set(database="api_bench").render_as_string(hide_password=False)
    asgi = ASGIApp(make_app({}, **{"sqlalchemy.url": url}))
    rng = random.Random(1)

    async def one(path: str, query: bytes = b"") -> None:
        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "query_string": query,
            "headers": [],
            "http_version": "1.1",
            "scheme": "http",
            "server": ("bench", 80),
            "client": ("bench", 1),
        }

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            pass

        await asgi(scope, receive, send)

    async def client(requests: int) -> None:
        for _ in range(requests):
            if kind == "point":
                await one(f"/mytable/{rng.randint(1, 1000)}")
            else:
                await one("/mytable/", b"limit=50&id=gt.%d" % rng.randint(1, 900))

    async def run() -> None:
        await asyncio.gather(*(client(5) for _ in range(64)))  # warm-up
        for _ in range(reps):
            await asyncio.gather(*(client(5) for _ in range(64)))

    asyncio.run(run())


if __name__ == "__main__":
    main()
