"""PasteDeploy server runners that serve the app over its ASGI front door, and worker policy.

``[app:main]`` stays the plain Pyramid app (a WSGI callable); these runners
wrap its router in ``api.bridge.asgi.ASGIApp`` and hand it to an async server.
What a worker process does when it starts serving is decided here
(``worker_started``), not in the ASGI adapter.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
from http import HTTPStatus
from typing import Any, ClassVar

import uvicorn
from gunicorn.app.base import BaseApplication
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from api.bridge.asgi import ASGIApp
from api.errors import problem_body


def worker_started() -> None:
    """Process-wide policy, once a worker starts serving.

    What exists by now (modules, the app and its registry) lives as long as
    the worker: freeze it out of the cyclic GC's sight, so that full
    collections stop walking it (they made the tail of point reads). A
    request makes many short-lived objects: collect the young generation
    less often than CPython's default.
    """
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def asgi_app(wsgi_app: Any) -> ASGIApp:
    """The app as a worker serves it: the ASGI front door, with the worker policy."""
    return ASGIApp(wsgi_app, on_startup=worker_started)


class CoalescingTransport:
    """A transport whose small writes of one loop iteration go out as one.

    uvicorn writes a response's status line and headers, then its body: two
    sends, and on loopback two trips through the TCP stack of both ends.
    Joined, they cross the stacks once. A large write (a streamed export's
    chunk) goes out at once, with what is pending before it, so flow control
    sees it.
    """

    LARGE = 64 * 1024

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            if len(data) >= self.LARGE:
                self._transport.write(data)
                return
            self._pending = [data]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(data)
            if len(data) >= self.LARGE:
                self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # the rest of the transport's interface, as it is
        return getattr(self._transport, name)


# Limits on a request's head, refused before the app sees it (RFC 9110 15.5.15,
# RFC 6585 5). Bytes are counted as they arrive, so that no limit can be passed
# by buffering: the parser holds a header until it is complete.
MAX_TARGET_BYTES = 8 * 1024  # the request target (path and query): 414 beyond
MAX_HEAD_BYTES = 64 * 1024  # request line and headers together: 431 beyond
MAX_HEADERS = 100  # 431 beyond


class _Refused(Exception):
    def __init__(self, status: int, title: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title


class HTTPProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a ``CoalescingTransport``,
    and refusing request heads over their limits with a problem+json."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(coalescing)  # type: ignore[arg-type]  # a Transport by its methods
        # Bytes of the head being read (up to its blank line), None from its
        # end to the end of its request.
        self._head_bytes: int | None = 0
        self._header_count = 0
        self._refused = False
        self._refusal: _Refused | None = None  # raised in a parser callback

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        try:
            if self._head_bytes is not None:  # counted before the parser buffers it
                end = data.find(b"\r\n\r\n")
                self._head_bytes += len(data) if end < 0 else end + 4
                if self._head_bytes > MAX_HEAD_BYTES:
                    raise _Refused(431, "The request's headers are larger than the server accepts")
            super().data_received(data)
        except _Refused as refusal:
            self._refuse(refusal)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_TARGET_BYTES:
            self._stop(414, "The request's URL is longer than the server accepts")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            self._stop(431, "The request has more headers than the server accepts")
        super().on_header(name, value)

    def _stop(self, status: int, title: str) -> None:
        """Stop the parser from a callback: httptools turns what a callback
        raises into a parser error, which uvicorn answers with
        ``send_400_response``, where the refusal is found again."""
        self._refusal = _Refused(status, title)
        raise self._refusal

    def send_400_response(self, msg: str) -> None:
        """Every request the parser rejects gets a problem+json, not text."""
        refusal, self._refusal = self._refusal, None
        self._refuse(refusal or _Refused(400, "The request is not valid HTTP/1.1"))

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_bytes = 0

    def _refuse(self, refusal: _Refused) -> None:
        """Answer with the problem and close: the rest of the request is not read."""
        self._refused = True
        body = problem_body(refusal.status, refusal.title)
        head = (
            f"HTTP/1.1 {refusal.status} {HTTPStatus(refusal.status).phrase}\r\n"
            "content-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()


class Worker(UvicornWorker):
    """The gunicorn worker: uvicorn's, with ``HTTPProtocol``."""

    CONFIG_KWARGS: ClassVar[dict] = {**UvicornWorker.CONFIG_KWARGS, "http": HTTPProtocol}


class _Gunicorn(BaseApplication):
    def __init__(self, app: ASGIApp, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        # GUNICORN_CMD_ARGS (e.g. "--bind 127.0.0.1:9000 --workers 1") wins
        # over the ini file, as it does for the gunicorn command.
        parsed = self.cfg.parser().parse_args(self.cfg.get_cmd_args_from_env())
        for key, value in vars(parsed).items():
            if value is not None and key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> ASGIApp:
        return self.application


def gunicorn_runner(wsgi_app: Any, global_conf: dict[str, Any], **settings: Any) -> None:
    """Multi-process serving: gunicorn with uvicorn workers, one per core by default.

    Every setting is a gunicorn setting (``bind``, ``workers``, ``backlog``, ...).
    """
    app = asgi_app(wsgi_app)
    settings.setdefault("workers", multiprocessing.cpu_count())
    settings.setdefault("worker_class", "api.serve.Worker")
    # pserve built the app before gunicorn forks, so it must not hold
    # connections: engines are made per event loop, inside each worker (api.db).
    _Gunicorn(app, settings).run()


def uvicorn_runner(
    wsgi_app: Any,
    global_conf: dict[str, Any],
    host: str = "127.0.0.1",
    port: str = "6543",
    **settings: Any,
) -> None:
    """One process, one event loop: for development."""
    app = asgi_app(wsgi_app)
    settings.setdefault("http", HTTPProtocol)
    uvicorn.run(app, host=host, port=int(port), **settings)
