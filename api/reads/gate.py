"""A first-come-first-served semaphore for connections, with one timer for its queue."""

from __future__ import annotations

import asyncio
import collections

from api.bridge import await_
from api.observe import metrics


class Gate:
    """A first-come-first-served semaphore whose waiters give up after ``timeout`` seconds.

    asyncio's Semaphore inside ``asyncio.timeout()`` does the same with a
    timer per waiter. As every waiter waits the same time, their deadlines
    come in queue order: one timer, set for the head of the queue, serves
    them all.
    """

    def __init__(self, width: int, timeout: float) -> None:
        self.free = width
        self.timeout = timeout
        # (deadline, future) of each waiter, oldest first
        self.waiters: collections.deque[tuple[float, asyncio.Future[None]]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None

    def acquire_in_greenlet(self) -> None:
        """``acquire()`` from a request greenlet: a free slot is taken there,
        with no switch to the loop and back."""
        if self.free and not self.waiters:
            self.free -= 1
        else:
            await_(self.acquire())

    async def acquire(self) -> None:
        """A slot, or TimeoutError after ``timeout`` seconds in the queue."""
        if self.free and not self.waiters:
            self.free -= 1
            return
        observed = metrics()
        if observed is not None:
            observed.pool_waits.inc()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiters.append((loop.time() + self.timeout, future))
        if self.timer is None:
            self.timer = loop.call_at(self.waiters[0][0], self._expire)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release()  # handed a slot just as the caller was cancelled: pass it on
            raise

    def release(self) -> None:
        while self.waiters:
            _, future = self.waiters.popleft()
            if not future.done():  # else it timed out or was cancelled
                future.set_result(None)  # the slot goes straight to the oldest waiter
                return
        self.free += 1

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self.waiters and self.waiters[0][0] <= now:
            _, future = self.waiters.popleft()
            if not future.done():
                future.set_exception(TimeoutError("no connection came free in time"))
        # The head may have been served long before its deadline; then this ran early.
        self.timer = loop.call_at(self.waiters[0][0], self._expire) if self.waiters else None
