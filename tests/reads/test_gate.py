"""The read gate: first come, first served, with one timer for its queue."""

import asyncio

import pytest

from api.reads.gate import Gate


def test_waiters_are_served_in_arrival_order():
    async def scenario():
        gate, served = Gate(1, timeout=5), []
        await gate.acquire()

        async def wait(n):
            await gate.acquire()
            served.append(n)
            gate.release()

        waiters = [asyncio.create_task(wait(n)) for n in range(5)]
        await asyncio.sleep(0)  # all queued
        gate.release()
        await asyncio.gather(*waiters)
        return served, gate.free

    assert asyncio.run(scenario()) == ([0, 1, 2, 3, 4], 1)


def test_a_waiter_gives_up_after_the_timeout_and_the_next_one_still_gets_in():
    async def scenario():
        gate = Gate(1, timeout=0.05)
        await gate.acquire()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await gate.acquire()
        waited = loop.time() - started
        gate.release()
        await asyncio.wait_for(gate.acquire(), 1)  # the slot came back
        return waited, gate.free, len(gate.waiters)

    waited, free, queued = asyncio.run(scenario())
    assert 0.04 <= waited < 1
    assert (free, queued) == (0, 0)


async def _two_waiters(gate):
    """``gate``'s only slot taken, and two tasks queued for it."""
    await gate.acquire()
    first = asyncio.create_task(gate.acquire())
    second = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    return first, second


def test_a_cancelled_waiter_loses_its_place_but_no_slot():
    async def scenario():
        gate = Gate(1, timeout=5)
        first, second = await _two_waiters(gate)
        first.cancel()
        gate.release()  # handed past the cancelled waiter
        await asyncio.wait_for(second, 1)
        gate.release()
        return gate.free

    assert asyncio.run(scenario()) == 1


def test_a_slot_handed_to_a_waiter_cancelled_before_it_ran_is_passed_on():
    async def scenario():
        gate = Gate(1, timeout=5)
        first, second = await _two_waiters(gate)
        gate.release()  # the slot goes to the first waiter ...
        first.cancel()  # ... which is cancelled before it resumes
        await asyncio.wait_for(second, 1)
        gate.release()
        return first.cancelled(), gate.free

    assert asyncio.run(scenario()) == (True, 1)
