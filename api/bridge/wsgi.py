"""The WSGI front door: Pyramid's WSGI world (pshell, prequest, WebTest, waitress).

Each request is handed to one background event loop per process, which runs
it in a request greenlet; the calling thread waits for the buffered response.
Stream over the ASGI front door instead.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from pyramid.router import Router

from api.bridge.greenlets import in_request_greenlet, run_in_greenlet
from api.bridge.integration import call_router, close_body, loop_stopping

log = logging.getLogger(__name__)
T = TypeVar("T")


class BackgroundLoop:
    """One event loop per process, in a thread, for the requests of WSGI callers."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="api-event-loop", daemon=True
        )
        self.thread.start()
        self.apps: weakref.WeakSet[WSGIApp] = weakref.WeakSet()
        # Runs before the interpreter joins non-daemon threads (aiosqlite's
        # connection threads are such), so pooled connections close first.
        register = getattr(threading, "_register_atexit", atexit.register)
        register(self.stop)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def release(self, app: WSGIApp) -> None:
        """Let ``app`` release what it holds on this loop (its engine and pool)."""
        self.apps.discard(app)
        try:
            self.run(run_in_greenlet(loop_stopping, app.registry, self.loop))
        except Exception:
            log.exception("releasing resources of the background loop failed")

    def stop(self) -> None:
        for app in list(self.apps):
            self.release(app)
        self.loop.call_soon_threadsafe(self.loop.stop)


_background: BackgroundLoop | None = None
_background_lock = threading.Lock()


def background_loop() -> BackgroundLoop:
    global _background
    with _background_lock:
        # A forked child inherits the object but not the thread: start its own.
        if _background is None or _background.pid != os.getpid():
            _background = BackgroundLoop()
        return _background


def _buffered_response(router: Router, environ: dict[str, Any]) -> tuple[str, Any, bytes]:
    started, app_iter = call_router(router, environ)
    try:
        body = b"".join(app_iter)
    finally:
        close_body(app_iter)
    return started[0], started[1], body


class WSGIApp:
    """The WSGI callable: hands each request to the process's background loop."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.registry = router.registry

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if in_request_greenlet():  # already inside a request: no second hop
            return self.router(environ, start_response)
        background = background_loop()
        background.apps.add(self)
        status, headers, body = background.run(
            run_in_greenlet(_buffered_response, self.router, environ)
        )
        start_response(status, headers)
        return [body]

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a request greenlet on the background loop (for scripts)."""
        background = background_loop()
        background.apps.add(self)
        return background.run(run_in_greenlet(fn, *args))

    def close(self) -> None:
        """Release the connections this app holds on the background loop."""
        if _background is not None and self in _background.apps:
            _background.release(self)
