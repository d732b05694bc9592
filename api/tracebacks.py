"""Failed requests let go of their tracebacks once answered.

Pyramid keeps a failure's exception and traceback on the request
(``request.exception``, ``request.exc_info``), and pyramid_tm's tween keeps
``sys.exc_info()`` in a local: the traceback's frames hold the request, a
reference cycle with its body, response and transaction in it, which only
the cyclic GC frees (docs/architecture.md, the read path).
"""

from __future__ import annotations

import inspect
from types import FrameType
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request


def forgetting_tracebacks(view: Any, info: Any) -> Any:
    """View deriver: a request answered by an exception view lets go of its
    exception's traceback once it is finished.

    Pyramid keeps the exception and its traceback on the request
    (``request.exception``, ``request.exc_info``), and the traceback's
    frames hold the request: a reference cycle, which only the cyclic GC
    frees, with the request's body, response and transaction in it. A flood
    of failing requests (404s, 412s, malformed bodies) kept them all alive
    until a collection, which then paused the worker to walk them.
    """
    if not info.exception_only:
        return view

    def answering_exception(context: Any, request: Request) -> Any:
        request.add_finished_callback(_forget_traceback)
        return view(context, request)

    return answering_exception


def _forget_traceback(request: Request) -> None:
    """The tracebacks of ``request.exception`` and of the exceptions it was
    raised from or during, let go, and the finished callers of the frame
    that caught it cleared. The exception stays: pyramid_retry looks at it
    after the finished callbacks."""
    request.exc_info = None
    caught = request.exception
    if isinstance(caught, BaseException) and caught.__traceback__ is not None:
        _clear_finished_callers(caught.__traceback__.tb_frame)
    pending, seen = [caught], set()
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseException) and id(exc) not in seen:
            seen.add(id(exc))
            exc.__traceback__ = None
            pending += [exc.__cause__, exc.__context__]


def _clear_finished_callers(frame: FrameType) -> None:
    """The frames that called ``frame`` and have returned, cleared of their
    locals, up to the first still running: pyramid_tm's tween keeps the
    ``sys.exc_info()`` it looked at in a local, and each finished frame
    holds its caller. Only plain functions' frames: clearing the frame of a
    suspended coroutine or generator would close it."""
    caller = frame.f_back
    while caller is not None and not caller.f_code.co_flags & _SUSPENDABLE:
        try:
            caller.clear()
        except RuntimeError:  # still running, and so are its callers
            return
        caller = caller.f_back


_SUSPENDABLE = (
    inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
    | inspect.CO_ITERABLE_COROUTINE
)


def includeme(config: Configurator) -> None:
    config.add_view_deriver(forgetting_tracebacks)
