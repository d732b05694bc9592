"""Instructions per request, counted by callgrind: a measure this noisy machine cannot blur.

    python -m bench.instructions seed                 # once: api_bench with 1,000 rows
    valgrind --tool=callgrind python -m bench.instructions point 1
    valgrind --tool=callgrind python -m bench.instructions point 6
    python -m bench.instructions patch 6 --profile    # cProfile of PATCHes, by own time
    python -m bench.instructions post1000 3            # POSTs of arrays of 1,000 rows
    valgrind --tool=callgrind python -m bench.instructions patch 12 --clients 8
    valgrind --tool=callgrind python -m bench.instructions page 3 --header 'Accept: */*'
    python -m bench.instructions post1000 4 --clients 8 --turns   # how long requests hold the loop

The app is driven in process over its ASGI front door (no HTTP server, no
client), 64 concurrent requests at a time (``--clients N``: N); the database
runs in its own process, so only the API's instructions are counted. The
difference of two totals ("Collected"), divided by the requests between them
(5 x clients a repetition: 5 x 320 for ``point`` 1 and 6), is the cost of
one request (pages: ``page``, with 3 and 1, divided by 2 x 320; writes:
``patch``, a merge patch of a random row with ``If-Match: *``, each
client's rows its own; ``post``, one new row (``post_shown``: answered
with it, ``Prefer: return=representation``); ``delete``, a row by key
without If-Match, from the 1,000th down (seed again before each run);
``post1000``, an array of 1,000; ``upsert1000``, the rows 1 to 1,000 again
under ``Prefer: resolution=merge-duplicates``; ``patch1000``, a ``PATCH`` of
the rows 1 to 1,000 by a filter). The process runs as a worker
does (``api.serve.worker_started``: the startup heap frozen out of the
cyclic GC's sight, its young generation collected less often). With
``--observed``, the requests go through the middleware a worker serves
too (``api.serve.asgi_app``: request id, gzip check, production.ini's JSON
access log line to /dev/null, metrics in multi-process mode). With
``--turns``, no count: how long each run of a request greenlet lasted, from
a switch into it to its next wait, as percentiles (no other task runs on the
loop meanwhile).
"""

import asyncio
import itertools
import logging
import os
import random
import sys
import tempfile
from collections import Counter

from pyramid.paster import get_appsettings

from bench.run import ROOT, SERVER_URL, seed


def main() -> None:
    if sys.argv[1] == "seed":
        print(seed(1000))
        return
    kind, reps = sys.argv[1], int(sys.argv[2])
    profile = "--profile" in sys.argv
    # Fewer clients vary less from run to run: 8 gave counts within 0.3%.
    clients = int(sys.argv[sys.argv.index("--clients") + 1]) if "--clients" in sys.argv else 64
    os.environ.pop("DATABASE_URL", None)
    from api import main as make_app
    from api.bridge.asgi import ASGIApp
    from api.serve import worker_started

    url = SERVER_URL.set(database="api_bench").render_as_string(hide_password=False)
    # production.ini's settings (its pools above all: overflow connections
    # opened and closed per request would be measured otherwise).
    settings = {
        **get_appsettings(str(ROOT / "production.ini")),
        "sqlalchemy.url": url,
        "api.tokens": "bench-token:read,write",
        # Pooled connections are renewed 5 s before this; under callgrind a
        # run lasts minutes, and the renewals' connects were counted.
        "db.idle_timeout": "3600",
    }
    app = make_app({}, **settings)
    asgi = observed(app) if "--observed" in sys.argv else ASGIApp(app)
    worker_started()
    # --header 'NAME: VALUE' (repeated): headers of every read, as clients
    # send them (wrk sends none but Host).
    given = [sys.argv[n + 1] for n, arg in enumerate(sys.argv) if arg == "--header"]
    reader = [
        (n.strip().lower().encode(), v.strip().encode())
        for n, v in (h.split(":", 1) for h in given)
    ]
    rng = random.Random(1)
    failed: list[int] = []  # statuses of error answers
    doomed = itertools.count(1000, -1)  # the rows ``delete`` takes

    writer = [
        (b"authorization", b"Bearer bench-token"),
        (b"content-type", b"application/merge-patch+json"),
        (b"if-match", b"*"),
    ]

    poster = [writer[0], (b"content-type", b"application/json")]
    upserter = (*poster, (b"prefer", b"resolution=merge-duplicates"))
    shower = (*poster, (b"prefer", b"return=representation"))
    array = b"[%s]" % b",".join(
        b'{"name": "posted %d", "data": {"n": %d}}' % (n, n) for n in range(1000)
    )
    upserts = b"[%s]" % b",".join(
        b'{"id": %d, "name": "upserted %d", "data": {"n": %d}}' % (n, n, n) for n in range(1, 1001)
    )

    async def one(
        path: str, query: bytes = b"", body: bytes = b"", method: str = "", headers: tuple = ()
    ) -> None:
        method = method or ("PATCH" if body else "GET")
        headers = headers or (poster if method == "POST" else writer if body else reader)
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": query,
            "headers": list(headers),
            "http_version": "1.1",
            "scheme": "http",
            "server": ("bench", 80),
            "client": ("bench", 1),
        }

        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 300:
                failed.append(message["status"])

        await asgi(scope, receive, send)

    async def client(requests: int, index: int) -> None:
        for _ in range(requests):
            if kind == "point":
                await one(f"/mytable/{rng.randint(1, 1000)}")
            elif kind == "patch":  # rows of the client's own: no two PATCHes race (412)
                row = 1 + index + clients * rng.randrange(1000 // clients)
                await one(f"/mytable/{row}", body=b'{"name": "patched"}')
            elif kind == "post":
                await one("/mytable/", body=b'{"name": "posted", "data": {"n": 1}}', method="POST")
            elif kind == "post1000":
                await one("/mytable/", body=array, method="POST")
            elif kind == "post_shown":  # as postgrest-py's insert() asks: the row in the answer
                body = b'{"name": "posted", "data": {"n": 1}}'
                await one("/mytable/", body=body, method="POST", headers=shower)
            elif kind == "delete":  # each row once, from the last seeded down: no 404s
                await one(f"/mytable/{next(doomed)}", method="DELETE", headers=writer[:1])
            elif kind == "upsert1000":
                await one("/mytable/", body=upserts, method="POST", headers=upserter)
            elif kind == "patch1000":  # every seeded row, by a filter
                body = b'{"name": "patched"}'
                query = b"id=gte.1&id=lte.1000"
                await one("/mytable/", query, body=body, method="PATCH", headers=poster)
            else:
                await one("/mytable/", b"limit=50&id=gt.%d" % rng.randint(1, 900))

    async def run() -> None:
        await asyncio.gather(*(client(5, i) for i in range(clients)))  # warm-up
        for _ in range(reps):
            await asyncio.gather(*(client(5, i) for i in range(clients)))

    if "--turns" in sys.argv:
        runs = timed_turns()
        asyncio.run(run())
        print(turns_summary(runs))
    elif not profile:
        asyncio.run(run())
    else:
        import cProfile
        import pstats

        cProfile.runctx("asyncio.run(run())", globals(), locals(), "/tmp/instructions.prof")
        pstats.Stats("/tmp/instructions.prof").sort_stats("tottime").print_stats(40)
    if failed:  # a count of error answers measures nothing
        statuses = ", ".join(f"{n} x {s}" for s, n in sorted(Counter(failed).items()))
        sys.exit(f"{statuses}: not the requests meant (seeded? python -m bench.instructions seed)")


def timed_turns() -> list[float]:
    """From now on, the length of each run of a request greenlet (seconds),
    from the task's switch into it to its next wait, in the list returned.
    SQLAlchemy's own greenlets (an ``AsyncSession``'s) switch into it too,
    from inside it: those switches are not runs, and are not timed."""
    import time

    from greenlet import getcurrent, greenlet

    from api.bridge.greenlets import RequestGreenlet

    runs: list[float] = []

    def timed(step):
        def run(self, *args):
            if getcurrent() is not self.parent:  # SQLAlchemy's greenlet, inside this one
                return step(self, *args)
            started = time.perf_counter()
            try:
                return step(self, *args)
            finally:
                runs.append(time.perf_counter() - started)

        return run

    RequestGreenlet.switch = timed(greenlet.switch)
    RequestGreenlet.throw = timed(greenlet.throw)
    return runs


def turns_summary(runs: list[float]) -> str:
    runs = sorted(runs)
    ms = [f"{runs[int(len(runs) * q)] * 1000:.2f}" for q in (0.5, 0.9, 0.99)]
    return (
        f"{len(runs)} runs between waits: p50 {ms[0]} ms, p90 {ms[1]} ms, p99 {ms[2]} ms, "
        f"longest {runs[-1] * 1000:.2f} ms; {sum(r > 0.002 for r in runs)} over 2 ms"
    )


def observed(app):
    """``app`` behind the middleware of a worker, its access log on /dev/null
    and its metrics in a folder of their own, as the server runner sets up."""
    from api.observe import MULTIPROCESS_DIR
    from api.serve import asgi_app

    os.environ[MULTIPROCESS_DIR] = tempfile.mkdtemp()
    access = logging.getLogger("api.access")
    access.addHandler(logging.StreamHandler(open(os.devnull, "w")))  # noqa: SIM115
    access.setLevel(logging.INFO)
    access.propagate = False
    return asgi_app(app)


if __name__ == "__main__":
    main()
