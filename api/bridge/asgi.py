"""The ASGI front door: each HTTP request runs the Pyramid router in a request greenlet.

The body is read before the router runs (WSGI reads it synchronously) and
refused past its limit; a response held in memory is sent by the task, a
streamed one from the greenlet, chunk by chunk, as it is produced.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import functools
import io
import logging
import sys
import weakref
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from pyramid.router import Router

from api.bridge.greenlets import await_, run_in_greenlet
from api.bridge.integration import call_router, close_body, loop_stopping
from api.errors import problem_body
from api.logs import database_error

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# (the response's start message, its whole body), or None once it was streamed
Buffered = tuple[Message, bytes] | None


class Unread(enum.Enum):
    """Why ``_read_body`` has no body to hand on."""

    TOO_LARGE = "too large"
    INCOMPLETE = "incomplete"
    ENCODED = "encoded"  # gzip and the like: a 415, rather than bytes misread as JSON


TOO_LARGE, INCOMPLETE, ENCODED = Unread.TOO_LARGE, Unread.INCOMPLETE, Unread.ENCODED


class Deadline:
    """A task's deadline, shared with ``Deadlines``; ``task`` is None once lifted."""

    __slots__ = ("at", "expired", "task")

    def __init__(self, at: float, task: asyncio.Task[Any] | None) -> None:
        self.at, self.task, self.expired = at, task, False

    def lift(self) -> None:
        self.task = None


class Deadlines:
    """Deadlines of one length for the tasks of one loop, with one timer.

    ``asyncio.timeout()`` sets a timer per request, a noticeable part of a
    point read's CPU. All of these last the same, so they expire in the
    order they were set: one timer, for the oldest, serves them all (as the
    read gate's does).
    """

    def __init__(self, seconds: float, loop: asyncio.AbstractEventLoop) -> None:
        self.seconds = seconds
        self.loop = loop
        self.pending: collections.deque[Deadline] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None

    def set(self) -> Deadline:
        """A deadline for the current task: it is cancelled when the deadline passes."""
        pending = self.pending
        while pending and pending[0].task is None:  # lifted: most requests end in order
            pending.popleft()
        deadline = Deadline(self.loop.time() + self.seconds, asyncio.current_task(self.loop))
        pending.append(deadline)
        if self.timer is None:
            self.timer = self.loop.call_at(deadline.at, self._expire)
        return deadline

    def _expire(self) -> None:
        loop = self.loop
        now = loop.time()
        while self.pending and self.pending[0].at <= now:
            deadline = self.pending.popleft()
            if deadline.task is not None:
                deadline.expired = True
                deadline.task.cancel()
        # The oldest may have been lifted long before; then this ran early.
        self.timer = loop.call_at(self.pending[0].at, self._expire) if self.pending else None


class ASGIApp:
    """An ASGI application over a Pyramid app (its router, or a ``WSGIApp`` of it).

    ``on_startup`` runs when the server starts serving (ASGI lifespan): the
    server runner's process policy; the loop-stopping hooks run when it stops.
    """

    def __init__(
        self,
        wsgi_app: Any,
        on_startup: Callable[[], None] | None = None,
        root_path: str = "",
    ) -> None:
        self.router: Router = getattr(wsgi_app, "router", wsgi_app)
        # The prefix a proxy serves the API under, where the server sets none.
        self.root_path = root_path.rstrip("/")
        self.registry = self.router.registry
        self.max_body_bytes = self.registry.api_settings.max_body_bytes
        self.response_timeout = self.registry.api_settings.response_timeout
        self.deadlines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = (
            weakref.WeakKeyDictionary()
        )
        # Those of the loop served last, found without a lookup (it keeps one
        # loop alive after it stops, until another serves)
        self._last_deadlines: Deadlines | None = None
        self.send_timeout = self.registry.api_settings.send_timeout
        self.on_startup = on_startup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self.root_path and not scope.get("root_path"):
                scope = {**scope, "root_path": self.root_path}
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.on_startup is not None:
                    self.on_startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                loop = asyncio.get_running_loop()
                await run_in_greenlet(loop_stopping, self.registry, loop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self._read_body(scope, receive)
        if isinstance(body, Unread):
            if body is TOO_LARGE:
                await send_problem(send, 413, "Request body is larger than the server accepts")
            elif body is ENCODED:  # RFC 9110 8.4.1, 12.5.3
                title = "The server takes a body with no Content-Encoding"
                await send_problem(send, 415, title, {"accept-encoding": "identity"})
            # INCOMPLETE: the client went away mid-body; nothing of it is processed.
            return
        environ = build_environ(scope, body)
        # Until the response starts: a stalled database must not hold the
        # request (nor its connection) for longer. The deadline's cancellation
        # reaches the statement in flight, whose connection SQLAlchemy then
        # discards.
        deadline = self._deadlines().set()
        try:
            response = await run_in_greenlet(self._respond, environ, send, receive, deadline)
        except asyncio.CancelledError:
            if not deadline.expired:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]  # we run in one
            log.warning("no response within %s s: answered 503", self.response_timeout)
            await send_problem(
                send, 503, "The server could not answer in time", {"retry-after": "1"}
            )
            return
        except Exception:
            # The exception views answer every error a request can raise; this
            # is only reached when they fail themselves.
            log.exception("unhandled error outside the exception views")
            await send_problem(send, 500, "The server failed to answer this request")
            return
        finally:
            deadline.lift()
        if response is not None:
            start, whole = response
            await send(start)
            await send({"type": "http.response.body", "body": whole})

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | Unread:
        """The whole body; TOO_LARGE past the limit (checked before reading
        when Content-Length says so), INCOMPLETE when the client disconnected
        before its last byte or sent fewer bytes than it announced, ENCODED
        when it has a content coding (``Content-Encoding: gzip``)."""
        announced = None
        encoded = False
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                announced = int(value)
                if announced > self.max_body_bytes:
                    return TOO_LARGE
            elif name == b"content-encoding":
                encoded = value.strip().lower() not in (b"", b"identity")
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return INCOMPLETE
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return TOO_LARGE
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if announced is not None and size != announced:
            return INCOMPLETE
        if encoded and size:
            return ENCODED
        return b"".join(chunks)

    def _deadlines(self) -> Deadlines:
        loop = asyncio.get_running_loop()
        last = self._last_deadlines
        if last is not None and last.loop is loop:  # a worker serves from one loop
            return last
        deadlines = self.deadlines.get(loop)
        if deadlines is None:
            deadlines = self.deadlines[loop] = Deadlines(self.response_timeout, loop)
        self._last_deadlines = deadlines
        return deadlines

    def _respond(
        self, environ: dict[str, Any], send: Send, receive: Receive, deadline: Deadline
    ) -> Buffered:
        """Run the router (in the request greenlet).

        A response whose body is in memory, the usual case, is returned for
        the task to send, which spares two switches to and fro; a streamed
        one is sent from here, as its chunks may need the greenlet to be
        produced.
        """
        started, app_iter = call_router(self.router, environ)
        try:
            status, headers = started
            start = {
                "type": "http.response.start",
                "status": int(status[:3]),
                "headers": [
                    (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers
                ],
            }
            if isinstance(app_iter, list | tuple):
                return start, b"".join(app_iter)
            # A stream has started: its pace is the client's (an export
            # bounds each of its statements itself).
            deadline.lift()
            self._stream(start, app_iter, send, receive)
            return None
        finally:
            close_body(app_iter)  # a stream stopped early releases what it holds

    def _stream(
        self, start: Message, chunks: Iterable[bytes], send: Send, receive: Receive
    ) -> None:
        """Send a streamed body chunk by chunk, as it is produced; stop early
        when the client has gone away, or has taken nothing for
        ``send_timeout`` seconds (uvicorn then closes the connection).

        Once the status is sent, a failure can only cut the body off: the
        client sees a chunked body without its last chunk.
        """
        gone = asyncio.ensure_future(receive())  # http.disconnect, once the client is gone
        try:
            if not self._send(send, start):
                return
            for chunk in chunks:
                if gone.done():
                    return
                message = {"type": "http.response.body", "body": chunk, "more_body": True}
                if chunk and not self._send(send, message):
                    return
            self._send(send, {"type": "http.response.body", "body": b""})
        except Exception as exc:
            log.warning("a streamed response broke off: %s", database_error(exc))
        finally:
            gone.cancel()

    def _send(self, send: Send, message: Message) -> bool:
        """Send ``message`` unless the client takes nothing for ``send_timeout``."""
        try:
            await_(asyncio.wait_for(send(message), self.send_timeout))
        except TimeoutError:
            log.info("a client took nothing for %s s: its stream is dropped", self.send_timeout)
            return False
        return True


async def send_problem(
    send: Send, status: int, title: str, headers: dict[str, str] | None = None
) -> None:
    """A problem+json response sent straight to the ASGI server, outside Pyramid."""
    body = problem_body(status, title)
    extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def build_environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """A PEP 3333 environ for one ASGI HTTP request whose body was read already."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    root_path, path = scope.get("root_path", ""), scope["path"]
    # ASGI's path holds the root path (the prefix a proxy serves the app
    # under); WSGI's PATH_INFO does not: taken off as Starlette's WSGI bridge does.
    if root_path and (path == root_path or path.startswith(root_path + "/")):
        path = path[len(root_path) :]
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root_path.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": "HTTP/" + scope.get("http_version", "1.1"),
        "REMOTE_ADDR": client[0],
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
        # The path as the client encoded it (gunicorn's name): a composite
        # key's values may hold an encoded comma (api.resources).
        "RAW_URI": (scope.get("raw_path") or b"").decode("latin-1"),
        # The body is in memory already: WebOb need not copy it to a temporary
        # file (which it would for larger bodies, and leave to the GC).
        "webob.is_body_seekable": True,
    }
    for name, value in scope["headers"]:
        key = _environ_key(name)
        if key == "CONTENT_LENGTH":
            continue  # the length of the body as read, set above
        text = value.decode("latin-1")
        if key == "CONTENT_TYPE":  # a media type is case-blind (RFC 9110 8.3.1): Application/JSON
            media_type, semicolon, parameters = text.partition(";")
            environ[key] = media_type.lower() + semicolon + parameters
        elif key not in environ:
            environ[key] = text
        else:  # a repeated header: its values joined, as one header would hold them
            environ[key] = f"{environ[key]},{text}"
    return environ


# Clients send the same few header names on every request: each name's key
# is made once. The cache is bounded: names a client makes up push older
# ones out.
@functools.lru_cache(maxsize=256)
def _environ_key(name: bytes) -> str:
    """A header's key in a PEP 3333 environ: CONTENT_TYPE, CONTENT_LENGTH or HTTP_*."""
    key = name.decode("latin-1").upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key
