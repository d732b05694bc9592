"""The HTTP connection: coalesced writes, limits on what one client can
hold, and RFC 9112's rules on versions, hosts and upgrades."""

import asyncio
import contextlib
import json
import logging
import shutil
import socket
import subprocess
import time

import pytest

from api.bridge.asgi import ASGIApp
from api.observe import Observed
from api.protocol import CoalescingTransport, HTTPProtocol
from tests.support import WRITER, unique_name
from tests.support.servers import ThreadedServer


def test_small_writes_of_one_loop_iteration_leave_as_one_send_in_order():
    large = b"x" * CoalescingTransport.LARGE

    async def scenario():
        received = bytearray()
        closed = asyncio.Event()

        async def peer(reader, writer):
            received.extend(await reader.read())  # until the other end closes
            writer.close()
            closed.set()

        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        _, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        transport = writer.transport
        sends = []
        send = transport.write
        transport.write = lambda data: (sends.append(len(data)), send(data))
        coalescing = CoalescingTransport(transport, asyncio.get_running_loop())

        coalescing.write(b"status and headers;")
        coalescing.write(b"body;")
        assert sends == []  # not yet: the loop has not gone round
        await asyncio.sleep(0)
        assert sends == [24]
        coalescing.write(b"a chunk;")
        coalescing.write(large)  # a large write goes out at once, after what was pending
        assert sends == [24, 8 + len(large)]
        coalescing.write(b"last;")
        coalescing.close()  # sends what is pending before it closes
        await asyncio.wait_for(closed.wait(), 5)
        server.close()
        return bytes(received), sends

    received, sends = asyncio.run(scenario())
    assert received == b"status and headers;body;a chunk;" + large + b"last;"
    assert sends == [24, 8 + len(large), 5]


def _raw_request(port, head, chunk=64 * 1024):
    """Send ``head`` (bytes) as it comes, stopping if the server closes; its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            for start in range(0, len(head), chunk):
                sock.sendall(head[start : start + chunk])
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it was all sent: the answer is waiting
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while data := sock.recv(65536):
                answer += data
    return answer


def _status_and_problem(answer):
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/problem+json" in head.lower(), head
    return status, json.loads(body)


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /mytable/?name=eq." + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
        (b"GET /mytable/ HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        # far past the limit: refused after the limit, not read whole (nor buffered)
        (b"GET /mytable/ HTTP/1.1\r\nX-Big: " + b"a" * (32 << 20) + b"\r\n\r\n", 431),
        (
            b"GET /mytable/ HTTP/1.1\r\nHost: t\r\n"
            + b"".join(b"X-%d: 1\r\n" % n for n in range(101))
            + b"\r\n",
            431,
        ),
    ],
    ids=["long URL", "large header", "huge header", "many headers"],
)
def test_request_heads_over_their_limits_are_refused_with_a_problem(server, http, head, status):
    got, problem = _status_and_problem(_raw_request(server.port, head))
    assert (got, problem["status"]) == (status, status)
    assert http.get("/__lbheartbeat__").status_code == 200  # and the server goes on


def test_heads_within_the_limits_are_served(server):
    name = "a" * 8000  # a URL just under 8 KiB
    headers = b"".join(b"X-%d: %s\r\n" % (n, b"b" * 500) for n in range(98))  # ~50 KiB
    head = b"GET /mytable/?name=eq." + name.encode() + b" HTTP/1.1\r\nHost: t\r\n"
    answer = _raw_request(server.port, head + headers + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /mytable/1 HTTP/1.1\r\n\r\n", 400),
        (b"GET /mytable/1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /mytable/1 HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"GET /mytable/1 HTTP/0.9\r\nHost: t\r\n\r\n", 505),
        (b"GET /mytable/1 HTTP/1.1\r\nHost: evil.example/x?y=\r\n\r\n", 400),
        (b'GET /mytable/1 HTTP/1.1\r\nHost: "><script>\r\n\r\n', 400),
        (b"GET /mytable/1 HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        ("GET /mytable/1 HTTP/1.1\r\nHost: \u00e9vil\r\n\r\n".encode(), 400),
    ],
    ids=[
        "HTTP/1.1 without a host",
        "two hosts",
        "HTTP/2.0 as text",
        "HTTP/0.9",
        "a path in the host",
        "markup in the host",
        "a space in the host",
        "a host not in ASCII",
    ],
)
def test_a_request_s_version_and_host_are_checked_as_rfc_9112_asks(server, head, status):
    got, problem = _status_and_problem(_raw_request(server.port, head))
    assert (got, problem["status"]) == (status, status)


def test_only_a_malformed_request_is_logged_as_invalid(server):
    """A limit of the server's own (a long URL, a missing host) is no
    malformed request: uvicorn warned of each as one."""
    logged = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: logged.append(record.getMessage())
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(handler)
    try:
        for head in (
            b"GET /mytable/?name=eq." + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /mytable/1 HTTP/1.1\r\n\r\n",
            b"GET /mytable/1 HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        ):
            assert _status_and_problem(_raw_request(server.port, head))[0] in (400, 414)
    finally:
        uvicorn_log.removeHandler(handler)
    assert logged == ["Invalid HTTP request received."]  # the last one's


@pytest.mark.parametrize(
    "host", ["api.example", "api.example:8443", "127.0.0.1:8080", "[::1]:8111", "my_host", ""]
)
def test_a_host_as_rfc_3986_writes_one_is_served_and_named_in_links(server, host):
    head = b"GET /mytable/?limit=1 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
    answer = _raw_request(server.port, head % host.encode())
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    if host:
        assert f"<http://{host}/mytable/?".encode() in answer  # the Link to the next page


def test_an_http_1_0_request_needs_no_host(server):
    answer = _raw_request(server.port, b"GET /mytable/1 HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["id"] == 1


POST_AS_WRITER = (
    b"POST /mytable/ HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer writer-secret\r\n"
)
UPGRADE_TO_WEBSOCKET = (
    b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


def test_a_websocket_handshake_is_answered_as_http_1_1(server):
    head = b"GET /mytable/1 HTTP/1.1\r\nHost: t\r\n" + UPGRADE_TO_WEBSOCKET + b"\r\n"
    answer = _raw_request(server.port, head)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["id"] == 1


def test_a_body_asking_to_switch_protocols_is_read_whole_in_parts(server, http):
    """llhttp takes what follows such a head for the new protocol: the body
    is still the request's, however it is cut."""
    name = unique_name("upgrade-body")
    body = json.dumps({"name": name}).encode()
    head = POST_AS_WRITER + b"Content-Length: %d\r\n" % len(body) + UPGRADE_TO_WEBSOCKET + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body[:4])
        time.sleep(0.1)
        sock.sendall(body[4:])
        answer = b""
        while data := sock.recv(65536):  # closed after the answer
            answer += data
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    assert b"connection: close" in answer.lower()
    (created,) = http.get(f"/mytable/?name=eq.{name}").json()
    http.delete(f"/mytable/{created['id']}", headers=WRITER)


def test_a_chunked_body_asking_to_switch_protocols_is_411_and_nothing_is_written(server, http):
    name = unique_name("upgrade-chunked")
    body = json.dumps({"name": name}).encode()
    head = (
        POST_AS_WRITER
        + b"Transfer-Encoding: chunked\r\n"
        + UPGRADE_TO_WEBSOCKET
        + b"\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )
    status, problem = _status_and_problem(_raw_request(server.port, head))
    assert (status, problem["status"]) == (411, 411)
    assert http.get(f"/mytable/?name=eq.{name}").json() == []


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_http2_over_plain_http_is_served_in_http_1_1(server, http):
    """``curl --http2`` asks every plain-HTTP request to switch to h2c
    (``Upgrade: h2c``); its POST was a 500 from uvicorn."""
    name = unique_name("curl-h2c")
    sent = subprocess.run(
        [
            "curl", "-s", "--http2", "-w", "\n%{http_version} %{http_code}",
            "-H", "Authorization: Bearer writer-secret", "-H", "Prefer: return=representation",
            "-H", "Content-Type: application/json", "-d", json.dumps({"name": name}),
            f"{server.url}/mytable/",
        ],
        capture_output=True, check=True, text=True, timeout=30,
    )  # fmt: skip
    answer, _, versions = sent.stdout.rpartition("\n")
    assert versions == "1.1 201"
    ((created),) = json.loads(answer)
    assert created["name"] == name
    assert http.get(f"/mytable/{created['id']}").json()["name"] == name
    http.delete(f"/mytable/{created['id']}", headers=WRITER)


@pytest.fixture(scope="module")
def impatient_server(wsgi_app):
    """A server that gives a client half a second to send a head, and holds 3 connections."""
    limits = {"header_timeout": 0.5, "body_timeout": 0.5, "send_timeout": 0.5}
    limits["max_connections"] = 3
    http = type("Impatient", (HTTPProtocol,), limits)
    with ThreadedServer(Observed(ASGIApp(wsgi_app), "json"), http=http) as running:
        yield running


def test_a_connection_that_sends_nothing_is_closed(impatient_server):
    with socket.create_connection(("127.0.0.1", impatient_server.port), timeout=10) as sock:
        assert sock.recv(1024) == b""  # closed by the server, before the socket's timeout


def test_a_head_that_does_not_arrive_in_time_is_408(impatient_server):
    with socket.create_connection(("127.0.0.1", impatient_server.port), timeout=10) as sock:
        sock.sendall(b"GET /mytable/ HTTP/1.1\r\nHost: t\r\n")  # and no more
        answer = b""
        while data := sock.recv(65536):
            answer += data
    status, problem = _status_and_problem(answer)
    assert (status, problem["status"]) == (408, 408)


def test_a_body_that_stops_coming_is_408_and_nothing_is_written(impatient_server, http, caplog):
    name = unique_name("stalled-body")
    body = json.dumps({"name": name}).encode()
    head = POST_AS_WRITER + b"X-Request-ID: %s\r\n" % name.encode()
    head += b"Content-Length: %d\r\n\r\n" % len(body)
    caplog.set_level(logging.INFO, "api.access")
    with socket.create_connection(("127.0.0.1", impatient_server.port), timeout=10) as sock:
        sock.sendall(head + body[:5])
        time.sleep(0.3)  # bytes that keep coming keep the body open
        sock.sendall(body[5:9])
        answer = b""
        while data := sock.recv(65536):  # then nothing more: the server answers and closes
            answer += data
    status, problem = _status_and_problem(answer)
    assert (status, problem["status"]) == (408, 408)
    assert http.get(f"/mytable/?name=eq.{name}").json() == []
    assert _logged(caplog, name)["status"] == 408  # as answered: it was logged 499, a client gone


def _logged(caplog, request_id):
    """The access log's line of ``request_id``, once the app has finished it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for record in caplog.records:
            if record.name == "api.access" and request_id in record.getMessage():
                return json.loads(record.getMessage())
        time.sleep(0.05)
    raise AssertionError(f"no access log line of {request_id}: {caplog.text}")


def test_a_body_sent_in_slow_parts_is_served(impatient_server, http):
    name = unique_name("slow-body")
    body = json.dumps({"name": name}).encode()
    head = POST_AS_WRITER + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", impatient_server.port), timeout=10) as sock:
        sock.sendall(head)
        for start in range(0, len(body), 8):  # 0.3 s apart: longer in all than body_timeout
            time.sleep(0.3)
            sock.sendall(body[start : start + 8])
        answer = b""
        while data := sock.recv(65536):
            answer += data
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    created = http.get(f"/mytable/?name=eq.{name}").json()
    assert len(created) == 1
    http.delete(f"/mytable/{created[0]['id']}", headers=WRITER)


def test_a_client_that_reads_nothing_is_dropped_with_what_was_buffered_for_it(impatient_server):
    """Pipelined requests for pages, and not a byte read: once the server's
    buffer for it is full, the connection has ``send_timeout`` to take some."""
    requests = 500  # about 10 MB of answers: more than the kernel buffers of both ends
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
        sock.connect(("127.0.0.1", impatient_server.port))
        sock.sendall(b"GET /mytable/?limit=1000 HTTP/1.1\r\nHost: t\r\n\r\n" * requests)
        time.sleep(2)
        sock.settimeout(10)
        answer = b""
        with contextlib.suppress(ConnectionResetError):  # dropped: reset, not closed
            while data := sock.recv(65536):
                answer += data
    assert 0 < answer.count(b"HTTP/1.1 200 OK") < requests


def test_connections_past_the_cap_are_503_at_once(impatient_server):
    address = ("127.0.0.1", impatient_server.port)
    with contextlib.ExitStack() as held:
        for _ in range(3):
            sock = held.enter_context(socket.create_connection(address, timeout=10))
            sock.sendall(b"GET /mytable/1 HTTP/1.1\r\nHost: t\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")  # each one open, kept alive
        answer = _raw_request(impatient_server.port, b"GET /mytable/1 HTTP/1.1\r\n\r\n")
    status, problem = _status_and_problem(answer)
    assert (status, problem["status"]) == (503, 503)
    assert b"retry-after: 1" in answer.lower()
