"""The greenlet runtime: synchronous code that waits for async code, on an event loop.

It knows nothing of Pyramid. ``run_in_greenlet(fn)`` is called from a task on
the loop and runs the synchronous ``fn`` in a ``RequestGreenlet``; inside it,
``await_(awaitable)`` switches back to the task, which awaits the awaitable
and switches into the greenlet again with the result. This is the protocol of
SQLAlchemy's ``greenlet_spawn``/``await_only``, and the greenlet class says so
(``__sqlalchemy_greenlet_provider__``), so SQLAlchemy's own synchronous paths
(a zope.sqlalchemy commit) run inside it too. ``run_coroutine`` drives an
``async def`` function from inside the greenlet, where a task would.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from time import perf_counter
from typing import Any, Final, TypeVar, cast

from greenlet import getcurrent, greenlet

T = TypeVar("T")

# Idle greenlets kept per thread for the next request: making a fresh one
# maps (and later unmaps) a new frame stack, which costs more than a request's
# switches.
MAX_IDLE_GREENLETS: Final = 256

# How long a request may run without waiting before give_way() lets the loop
# serve the others: short beside a request that waits on others, long enough
# that a turn of the loop is a small share of it (docs/architecture.md).
TURN: Final = 0.0005


class RequestGreenlet(greenlet):
    """A greenlet that requests run in, one after another; SQLAlchemy may
    ``await_only`` inside it too. One whose call raised is not reused."""

    __sqlalchemy_greenlet_provider__ = True

    # When the greenlet last came back from waiting (or started a job).
    resumed_at = 0.0

    def __init__(self) -> None:
        super().__init__(_serve)


class _Done:
    """What a greenlet switches out with when its call has returned."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


# A job is [fn, args]: a list, so that the greenlet can empty it once started.
_Job = list[Any]


def _serve(job: _Job) -> None:
    # Each turn of this loop runs one job. Its result goes, as a _Done, to the
    # task that switched in (the greenlet's parent), and the switch returns
    # with the next job, when a later run_in_greenlet takes this greenlet.
    while True:
        parent = getcurrent().parent
        assert parent is not None  # a RequestGreenlet runs with the task that switched in
        job = parent.switch(_Done(_call(job)))


def _call(job: _Job) -> object:
    fn, args = job
    job.clear()  # nothing of a request stays with the idle greenlet
    return fn(*args)


class _Idle(threading.local):
    greenlets: list[RequestGreenlet]

    def __init__(self) -> None:
        self.greenlets = []


_idle = _Idle()


def in_request_greenlet() -> bool:
    """Whether the caller runs in a request greenlet, where ``await_()`` works."""
    return bool(getattr(getcurrent(), "__sqlalchemy_greenlet_provider__", False))


async def run_in_greenlet(fn: Callable[..., T], *args: Any) -> T:
    """Run the synchronous ``fn(*args)`` in a request greenlet, serving its awaits.

    A coroutine that ``run_coroutine`` drives runs in a request greenlet
    already: there ``fn`` is called as it is, with no second greenlet.
    """
    current = getcurrent()
    if getattr(current, "__sqlalchemy_greenlet_provider__", False):
        return fn(*args)
    idle = _idle.greenlets
    child = idle.pop() if idle else RequestGreenlet()
    child.parent = current
    # The greenlet shares the driving task's contextvars, so that what the
    # request sets in it is seen by its coroutines on the loop, and back.
    child.gr_context = current.gr_context
    # Start (or resume) the greenlet with the job. It runs until it either
    # returns, and switches out with a _Done, or calls await_(), and switches
    # out with the awaitable it waits for.
    child.resumed_at = perf_counter()
    result = child.switch([fn, args])
    while type(result) is not _Done:
        # Await it here, in the task, and switch back in with its value; an
        # error is thrown into the greenlet, where await_() raises it.
        try:
            value = await result
        except BaseException as error:
            child.resumed_at = perf_counter()
            result = child.throw(error)
        else:
            child.resumed_at = perf_counter()
            result = child.switch(value)
    # The call returned (had it raised, the error would have left the
    # greenlet, ended it, and come out of switch() or throw() above).
    child.gr_context = None
    if len(idle) < MAX_IDLE_GREENLETS:
        idle.append(child)
    return cast(T, result.value)


def await_(awaitable: Awaitable[T]) -> T:
    """Wait for ``awaitable`` from synchronous code running in a request greenlet."""
    current = getcurrent()
    if not getattr(current, "__sqlalchemy_greenlet_provider__", False):
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # no "never awaited" warning on top of the error
        raise RuntimeError(
            "await_() called outside a request greenlet; run the code through "
            "api.bridge.run_in_greenlet (or a front door of api.bridge)"
        )
    # Switch to the task in run_in_greenlet, which awaits it and switches back
    # with its value (or throws its error in here).
    parent = current.parent
    assert parent is not None  # a RequestGreenlet runs with the task that switched in
    return cast(T, parent.switch(awaitable))


def give_way() -> None:
    """Let the loop serve other requests, if this one has run for ``TURN``
    since it last waited; else, and outside a request greenlet, nothing.

    Long synchronous work calls it now and then (checking each row of a bulk
    write), so that a long array does not hold the worker, and every request
    on it, for its whole length: asyncio lets each ready task run until it
    waits, however long that is."""
    current = getcurrent()
    if type(current) is RequestGreenlet and perf_counter() - current.resumed_at > TURN:
        await_(asyncio.sleep(0))


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end here, in the request greenlet; return its result.

    Its code runs in this greenlet, and each time it waits, this greenlet
    waits for the same thing on the loop through ``await_()``. Unlike
    ``await_(coroutine)``, what it calls can ``await_()`` too: its
    ``run_in_greenlet`` calls need no greenlet of their own.
    """
    value: object = None
    error: BaseException | None = None
    while True:
        # Step the coroutine, as a task's __step does, until it waits or ends.
        try:
            waits_for = coroutine.send(value) if error is None else coroutine.throw(error)
        except StopIteration as stop:
            return cast(T, stop.value)
        value = error = None
        try:
            value = await_(_awaitable(waits_for))
        except BaseException as exc:  # its error, or a cancellation, goes back into it
            error = exc


def _awaitable(waits_for: object) -> Awaitable[object]:
    """What a coroutine on asyncio yielded, as something ``await_()`` can wait for.

    That is a future, or None to let the loop run once (``asyncio.sleep(0)``).
    The future comes marked as waited for by its coroutine; unmarked, as a
    task would, it can be awaited again.
    """
    if waits_for is None:
        return asyncio.sleep(0)
    future = cast(asyncio.Future[object], waits_for)
    future._asyncio_future_blocking = False
    return future
