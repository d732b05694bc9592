"""The greenlet runtime: await_(), run_in_greenlet(), run_coroutine(), with no Pyramid."""

import asyncio
import contextvars
import time
import weakref

import pytest
from greenlet import getcurrent

from api.bridge import await_, run_coroutine, run_in_greenlet
from api.bridge.greenlets import TURN, give_way


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


def test_give_way_lets_others_run_once_the_request_has_run_a_turn_without_waiting():
    served = []

    def long_work():
        give_way()  # it has only just started: it goes on
        before = list(served)
        busy_until = time.perf_counter() + 2 * TURN
        while time.perf_counter() < busy_until:
            pass
        give_way()  # a turn has passed: the other task runs first
        after = list(served)
        give_way()  # it has only just come back
        return before, after, list(served)

    async def other():
        served.append("other")

    async def scenario():
        task = asyncio.ensure_future(other())
        found = await run_in_greenlet(long_work)
        await task
        return found

    assert asyncio.run(scenario()) == ([], ["other"], ["other"])
    give_way()  # outside a request greenlet: nothing to give way to, and no error
