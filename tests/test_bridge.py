"""The execution model: request greenlets, await_(), thread-locals, engines per loop."""

import asyncio
import contextvars
import weakref

import httpx
import pytest
from greenlet import getcurrent

from api.bridge import await_, run_coroutine, run_in_greenlet
from api.bridge.asgi import ASGIApp


def test_await_outside_a_request_greenlet_is_a_clear_error():
    async def answer():
        return 42

    with pytest.raises(RuntimeError, match="outside a request greenlet"):
        await_(answer())


def test_run_in_greenlet_serves_awaits_and_propagates_errors():
    async def double(x):
        await asyncio.sleep(0)
        return 2 * x

    def sync_code(x):
        return await_(double(x)) + await_(double(1))

    def failing():
        await_(asyncio.sleep(0))
        raise ValueError("boom")

    async def scenario():
        assert await run_in_greenlet(sync_code, 20) == 42
        with pytest.raises(ValueError, match="boom"):
            await run_in_greenlet(failing)

    asyncio.run(scenario())


def test_an_awaited_exception_is_raised_inside_the_greenlet():
    async def fails():
        raise KeyError("missing")

    def sync_code():
        try:
            await_(fails())
        except KeyError:
            return "caught in the greenlet"

    assert asyncio.run(run_in_greenlet(sync_code)) == "caught in the greenlet"


def test_the_greenlet_shares_the_context_of_its_task():
    var = contextvars.ContextVar("var", default="unset")

    def sync_code():
        var.set("set in the greenlet")
        return await_(read_var())

    async def read_var():
        return var.get()

    async def scenario():
        seen_by_coroutine = await run_in_greenlet(sync_code)
        return seen_by_coroutine, var.get()

    assert asyncio.run(scenario()) == ("set in the greenlet", "set in the greenlet")


def test_request_greenlets_are_reused_and_one_whose_call_raised_is_not():
    seen = []

    def failing():
        seen.append(getcurrent())
        raise ValueError("boom")

    async def scenario():
        first = await run_in_greenlet(getcurrent)
        again = await run_in_greenlet(getcurrent)
        overlapping = [run_in_greenlet(_switching_current) for _ in range(3)]
        side_by_side = await asyncio.gather(*overlapping)
        with pytest.raises(ValueError, match="boom"):
            await run_in_greenlet(failing)
        after = await run_in_greenlet(getcurrent)
        return first, again, side_by_side, after

    first, again, side_by_side, after = asyncio.run(scenario())
    assert again is first
    assert len(set(side_by_side)) == 3
    assert seen[0].dead and after is not seen[0]


def _switching_current():
    await_(asyncio.sleep(0))  # the three overlap: each needs a greenlet of its own
    return getcurrent()


def test_an_idle_request_greenlet_keeps_nothing_of_the_request_it_ran():
    var = contextvars.ContextVar("var")

    class Payload:
        pass

    def sync_code(payload):
        var.set(payload)  # in the request's context, which the greenlet shared
        await_(asyncio.sleep(0))
        return weakref.ref(payload)

    async def scenario():
        ref = await asyncio.create_task(run_in_greenlet(sync_code, Payload()))
        await asyncio.sleep(0)  # asyncio lets go of the finished task
        return ref()  # the task is over; its greenlet idles on this loop's thread

    assert asyncio.run(scenario()) is None


def test_a_coroutine_run_in_the_request_greenlet_starts_no_second_one():
    async def coroutine():
        await asyncio.sleep(0.001)
        inner = await run_in_greenlet(getcurrent)
        await asyncio.sleep(0)
        return getcurrent(), inner

    def sync_code():
        return getcurrent(), run_coroutine(coroutine())

    request_greenlet, (runs_in, its_call_runs_in) = asyncio.run(run_in_greenlet(sync_code))
    assert runs_in is request_greenlet
    assert its_call_runs_in is request_greenlet


def test_a_coroutine_run_in_the_request_greenlet_gets_errors_timeouts_and_cancellation():
    cleaned_up = []

    async def coroutine(started):
        failing = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.001, failing.set_exception, KeyError("gone"))
        with pytest.raises(KeyError, match="gone"):
            await failing
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        started.set_result(None)
        try:
            await asyncio.sleep(10)
        finally:
            cleaned_up.append(True)

    async def scenario():
        started = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(run_in_greenlet(run_coroutine, coroutine(started)))
        await started
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert cleaned_up == [True]


@pytest.mark.parametrize("probe", ["_probe_sync_locals", "_probe_async_locals"])
def test_thread_locals_stay_with_their_request_under_interleaving(server, probe):
    """Hundreds of interleaved requests each see their own request and registry."""

    async def fire():
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            responses = await asyncio.gather(
                *(client.get(f"/{probe}", params={"n": n}) for n in range(300))
            )
        return [r.json() for r in responses]

    results = asyncio.run(fire())
    assert [r["n"] for r in results] == [str(n) for n in range(300)]
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]][:5]


def test_engines_are_made_lazily_per_loop_and_disposed_when_the_loop_stops(database_url):
    from tests.conftest import make_app

    app = make_app(database_url)
    engines = app.registry.api_engines
    assert len(engines.by_loop) == 0  # building the app connects nothing (gunicorn forks after)

    asgi = ASGIApp(app)

    async def serve_one_request_in_a_lifespan():
        messages, sent = asyncio.Queue(), []

        async def send(message):
            sent.append(message)

        lifespan = asyncio.create_task(asgi({"type": "lifespan"}, messages.get, send))
        await messages.put({"type": "lifespan.startup"})
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/mytable/1")).status_code == 200
        engine = engines.by_loop[asyncio.get_running_loop()]
        await messages.put({"type": "lifespan.shutdown"})
        await lifespan
        return engine, sent

    first_engine, sent = asyncio.run(serve_one_request_in_a_lifespan())
    assert sent == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]
    assert len(engines.by_loop) == 0  # disposed of with its loop
    second_engine, _ = asyncio.run(serve_one_request_in_a_lifespan())
    assert second_engine is not first_engine


def test_closing_the_wsgi_app_disposes_of_its_background_engine(database_url):
    from tests.conftest import make_app

    app = make_app(database_url)
    assert app.run(lambda: app.registry.api_engines.current()) is not None
    assert len(app.registry.api_engines.by_loop) == 1
    app.close()
    assert len(app.registry.api_engines.by_loop) == 0


def test_reads_leave_no_reference_cycles_for_the_gc(wsgi_app):
    """Point reads and pages are freed by reference counting alone: a cycle per
    request made the cyclic GC pause every request for 30-40 ms under load."""
    import gc

    from api.bridge.integration import loop_stopping

    asgi = ASGIApp(wsgi_app)
    paths = [("/mytable/1", b""), ("/mytable/", b"limit=3&id=gt.1&order=name.desc")]

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def get(path, query_string):
        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "query_string": query_string,
            "headers": [(b"host", b"localhost")],
        }
        sent = []

        async def send(message):
            sent.append(message)

        await asgi(scope, receive, send)
        return sent[0]["status"]

    async def cyclic_garbage_of_reads():
        for path, query_string in paths:  # the engines and caches of this loop are made now
            assert await get(path, query_string) == 200
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(10):
                for path, query_string in paths:
                    assert await get(path, query_string) == 200
            gc.collect()
            return [type(o).__name__ for o in gc.garbage]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
            await run_in_greenlet(loop_stopping, wsgi_app.registry, asyncio.get_running_loop())

    assert asyncio.run(cyclic_garbage_of_reads()) == []
