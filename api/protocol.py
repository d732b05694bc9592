"""The HTTP/1.1 connection: uvicorn's httptools protocol, with its writes
coalesced, limits on what one client can hold (head size, time to send it
and its body, connections per worker) and RFC 9112's rules on a request's
version and host, each refused with a problem+json."""

from __future__ import annotations

import asyncio
import re
from http import HTTPStatus
from typing import Any

import httptools
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.errors import problem_body
from api.observe import ANSWERED_BY_PROTOCOL


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
# RFC 3986's host (an IP literal or a reg-name: unreserved, sub-delims,
# percent-encoded) and port. The links the API builds start with the Host,
# so a value that is none (a slash, a quote, a space) made links that are none.
HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?\Z")


class _Refused(Exception):
    def __init__(self, status: int, title: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title


class HTTPProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a ``CoalescingTransport``,
    and bounding what a client can hold: a request head's size, the time to
    send it and its body, and the connections of a worker. Each refusal is a
    problem+json."""

    # Seconds a client has to send a request's head, from its connection or
    # from the first byte of the head (uvicorn's keep-alive timeout covers the
    # idle time between requests). A connection that sent nothing is closed
    # silently; one that sent part of a head gets 408.
    header_timeout = 10.0
    # Seconds a request's body may go without a byte, as nginx's
    # client_body_timeout: the app reads the body before its response
    # deadline starts, so a client that stops mid-body would hold its
    # connection, and a worker's connection slot, for good. 408 past it.
    body_timeout = 10.0
    # Seconds a response may wait for its client to take any of it, once
    # the transport's buffer is full; then the connection is dropped, buffer
    # and all. close() would wait for a client that reads nothing to read
    # it, so each one kept a whole response in memory for good. The runners
    # set it from api.send_timeout (api.serve).
    send_timeout = 30.0
    # Open connections of a worker; one more is answered 503 and closed.
    # gunicorn's worker_connections sets it (api.serve.Worker).
    max_connections = 1000
    # Seconds an idle keep-alive connection stays open once its worker stops
    # (a reload, a deploy). uvicorn closed it at once, and a request the
    # client had sent just then met a closed socket: one is now answered,
    # with Connection: close.
    drain_grace = 1.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        loop = asyncio.get_running_loop()
        super().connection_made(CoalescingTransport(transport, loop))  # type: ignore[arg-type]
        # Bytes of the head being read (up to its blank line), None from its
        # end to the end of its request.
        self._head_bytes: int | None = 0
        self._header_count = 0
        self._hosts = 0  # Host headers of the head being read
        # Body bytes still to come of a request that asked to switch
        # protocols (``_serve_despite_upgrade``); 0 once it came, after which
        # the connection reads nothing more. None: the parser reads.
        self._after_upgrade: int | None = None
        self._head_open = False  # from a request's first byte to the end of its head
        self._received_any = False
        self._refused = False
        self._refusal: _Refused | None = None  # raised in a parser callback
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_open = False  # from a request's head's end to its body's
        self._body_seen = 0.0  # when the body last brought bytes (the loop's clock)
        self._body_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._draining = False
        if len(self.connections) > self.max_connections:
            self._refuse(_Refused(503, "The server has too many connections; try again"))
            return
        self._head_timer = loop.call_later(self.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        self._stop_body_timer()
        self._stop_send_timer()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.send_timeout, self._send_timed_out)

    def resume_writing(self) -> None:
        self._stop_send_timer()
        super().resume_writing()

    def _send_timed_out(self) -> None:
        self._send_timer = None
        self._refused = True
        self.transport.abort()

    def _stop_send_timer(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head_bytes is None or self._refused:
            return
        if not self._received_any:
            self._refused = True
            self.transport.close()  # it never said anything: nothing to answer
            return
        self._refuse(_Refused(408, "The request's head did not arrive in time"))

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _body_timed_out(self) -> None:
        """408 once the body has brought nothing for ``body_timeout``; checked
        again later while bytes keep coming, or while uvicorn has paused
        reading because the app has yet to take what came."""
        self._body_timer = None
        if not self._body_open or self._refused:
            return
        idle = self.loop.time() - self._body_seen
        if idle < self.body_timeout or self.flow.read_paused:
            wait = self.body_timeout - idle if idle < self.body_timeout else self.body_timeout
            self._body_timer = self.loop.call_later(wait, self._body_timed_out)
            return
        if self.cycle is not None and self.cycle.response_started:
            self._refused = True
            self.transport.close()
            return
        self._refuse(_Refused(408, "The request's body did not arrive in time"))

    def _stop_body_timer(self) -> None:
        self._body_open = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._received_any = True
        try:
            if self._after_upgrade is not None:
                self._take_body_after_upgrade(data)
            else:
                if self._head_bytes is not None:
                    self._count_head(data)
                self._feed(data)
        except _Refused as refusal:
            self._refuse(refusal)
            return
        # A head begun and not finished in this read: it has header_timeout to
        # arrive. (Most heads arrive in one read: no timer for them.)
        if self._head_open and self._head_timer is None and not self._refused:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)
        # A body begun and not finished in this read: its next bytes have
        # body_timeout to come. (Most bodies arrive with their head.)
        if self._body_open and not self._refused:
            self._body_seen = self.loop.time()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self.body_timeout, self._body_timed_out)

    def _count_head(self, data: bytes) -> None:
        """The head's bytes, counted before the parser buffers them."""
        end = data.find(b"\r\n\r\n")
        self._head_bytes = (self._head_bytes or 0) + (len(data) if end < 0 else end + 4)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise _Refused(431, "The request's headers are larger than the server accepts")

    def _feed(self, data: bytes) -> None:
        """uvicorn's ``data_received``, but for the upgrade: its handler is
        not told where the request's head ended."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refusal is None:  # one of this class's own limits is no malformed request
                self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade as upgrade:
            self._serve_despite_upgrade(data[upgrade.args[0] :])

    def _serve_despite_upgrade(self, rest: bytes) -> None:
        """A request that asks to switch protocols (``Connection: Upgrade``:
        a WebSocket, or h2c, which ``curl --http2`` asks on every plain-HTTP
        request) is served as HTTP/1.1, as RFC 9110 7.8 allows: the API
        speaks nothing else. llhttp ends such a request at its head and takes
        what follows for the new protocol, so the body is read here, by its
        Content-Length, and the connection closes after the answer, since
        the parser cannot go on. (uvicorn answered such a body with a 500.)"""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return
        cycle.keep_alive = False
        length = 0
        for name, value in self.headers:
            if name == b"transfer-encoding":
                raise _Refused(411, "A request asking to switch protocols gives its body's length")
            if name == b"content-length":
                length = int(value)  # llhttp checked it: digits, given once
        self._after_upgrade = length
        if length:
            cycle.more_body = True  # llhttp said the message was complete: the app has yet to run
            self._body_open = True
            self._take_body_after_upgrade(rest)

    def _should_upgrade(self) -> bool:
        return False  # whatever uvicorn's ``ws`` setting: see _serve_despite_upgrade

    def _take_body_after_upgrade(self, data: bytes) -> None:
        wanted = self._after_upgrade or 0
        if not wanted:
            return  # past the request: the connection closes after its answer
        self._after_upgrade = wanted - len(data[:wanted])
        if data:
            self.on_body(data[:wanted])
        if not self._after_upgrade:
            self.on_message_complete()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0
        self._hosts = 0
        self._head_open = True

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_TARGET_BYTES:
            self._stop(414, "The request's URL is longer than the server accepts")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            self._stop(431, "The request has more headers than the server accepts")
        super().on_header(name, value)
        if self.headers[-1][0] == b"host":  # uvicorn's own lower-cased name
            self._hosts += 1
            if not HOST.match(self.headers[-1][1]):
                self._stop(400, "The Host header names no host (RFC 3986)")

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
        self._head_open = False
        self._stop_head_timer()
        self._check_version_and_host()
        super().on_headers_complete()
        self._body_open = True
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def _check_version_and_host(self) -> None:
        """RFC 9112: a version other than 1.x is 505; an HTTP/1.1 request
        without a Host header, or any with two, is 400 (2.3, 3.2), as nginx
        answers them, and as one whose Host is no host is (``on_header``).
        Two hosts would leave the one that the links the API builds name to
        the order of the headers."""
        version = self.parser.get_http_version()
        if not version.startswith("1."):
            self._stop(505, "The server speaks HTTP/1.1")
        if self._hosts > 1 or (self._hosts == 0 and version != "1.0"):
            self._stop(400, "An HTTP/1.1 request names its host once, in a Host header")

    def shutdown(self) -> None:
        """The worker stops: a response under way says Connection: close; an
        idle connection waits ``drain_grace`` for a request already sent."""
        self._draining = True
        if self.cycle is None or self.cycle.response_complete:
            self.loop.call_later(self.drain_grace, self._close_if_idle)
        else:
            self.cycle.keep_alive = False

    def _close_if_idle(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_bytes = 0
        self._stop_body_timer()

    def _refuse(self, refusal: _Refused) -> None:
        """Answer with the problem and close: the rest of the request is not read."""
        self._refused = True
        self._stop_head_timer()
        self._stop_body_timer()
        body = problem_body(refusal.status, refusal.title)
        retry = "retry-after: 1\r\n" if refusal.status == 503 else ""
        head = (
            f"HTTP/1.1 {refusal.status} {HTTPStatus(refusal.status).phrase}\r\n"
            f"content-type: application/problem+json\r\n{retry}"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()
        if self.cycle is not None and not self.cycle.response_started:
            # The app saw its client go; the log and metrics say what it got.
            self.cycle.scope["state"][ANSWERED_BY_PROTOCOL] = refusal.status


class ForwardedHeaders(ProxyHeadersMiddleware):
    """uvicorn's proxy headers (``X-Forwarded-Proto``, ``X-Forwarded-For``)
    and ``X-Forwarded-Host`` too, from a proxy of ``forwarded_allow_ips``
    only, so that the links the API builds carry the client's scheme and
    host. uvicorn's own middleware leaves the host out, and hides the peer
    that this one checks: it takes its place (``proxy_headers`` off)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and client and client[0] in self.trusted_hosts:
            forwarded = [value for name, value in scope["headers"] if name == b"x-forwarded-host"]
            if forwarded:
                host = forwarded[0].split(b",")[0].strip()
                headers = [(n, v) for n, v in scope["headers"] if n != b"host"]
                scope = {**scope, "headers": [*headers, (b"host", host)]}
        await super().__call__(scope, receive, send)
