"""Hostile load: the attacks of a bad day, replayed against the API as production runs it.

    python -m bench.hostile          # from the checkout, MariaDB at TEST_MARIADB_URL
    python -m bench.hostile --only forged_jwts,scanned_paths

It seeds its own MariaDB database, starts ``pserve production.ini`` (2 workers)
with the database behind a TCP proxy that can stall, and runs each attack
while a prober asks for liveness every 20 ms. For every attack it prints the
requests sent, how many answers were 5xx (the 503s that a stalled database
must give are counted apart, as due), liveness p99 during the attack, and
rows lost: writes answered 201 whose row is not there at the end (always 0),
and the largest worker's peak RSS so far; after the row, which 5xx they were
(a connection still held past the header timeout is "held").
Every request loop is bounded in count and time, and only goes to 127.0.0.1.
"""

import argparse
import base64
import concurrent.futures
import contextlib
import hashlib
import hmac
import json
import os
import random
import socket
import statistics
import threading
import time
import uuid
from collections import Counter

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from sqlalchemy.engine import make_url

from bench.run import api_server, seed
from tests.support import run_sql
from tests.support.servers import TcpProxy, free_port

WRITER = {"Authorization": "Bearer bench-token"}
HELD = 599  # a connection the server still held when it should have closed it: a failure
ATTACK_SECONDS = 20  # no attack runs longer


class Liveness:
    """Asks for /__lbheartbeat__ every 20 ms in a thread; latencies in ms."""

    def __init__(self, url):
        self.url, self.latencies, self.failures = url, [], 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stopping.wait(0.02):
                started = time.perf_counter()
                try:
                    ok = client.get("/__lbheartbeat__").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append((time.perf_counter() - started) * 1000)
                self.failures += not ok

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(15)

    def p99(self):
        if len(self.latencies) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies, n=100)[98]


def raw(port, data, read=True, timeout=15):
    """Send raw bytes; the status code answered, or 0 for none."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            for start in range(0, len(data), 1 << 16):
                sock.sendall(data[start : start + (1 << 16)])
        if not read:
            return 0
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
            head = sock.recv(64)
            return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return 0


# --- the attacks: each returns the statuses of what it sent ------------------------------


def quadratic_in_list(server, proxy):
    long = "/mytable/?name=in.(a" + "+" * 60_000 + '")'
    under_limit = "/mytable/?name=in.(a" + "+" * 8_000 + '")'
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return [client.get(path).status_code for path in [long] * 4 + [under_limit] * 40]


def huge_and_many_headers(server, proxy):
    huge = b"GET /mytable/ HTTP/1.1\r\nX-Big: " + b"a" * (64 << 20) + b"\r\n\r\n"
    many = b"GET /mytable/ HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(10_000))
    return [raw(server.port, huge) for _ in range(2)] + [raw(server.port, many + b"\r\n")]


def long_accept_headers(server, proxy):
    """300 reads whose Accept is 60 KB of media ranges, each different,
    under the 64 KiB head limit: WebOb took the worker 15 ms to parse one."""
    ranges = ", ".join(f"text/x-{n}" for n in range(4700))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return [
            client.get(
                "/mytable/?limit=1", headers={"Accept": f"{ranges}, text/y-{n}"}
            ).status_code
            for n in range(300)
        ]


def fuzzed_query_strings(server, proxy):
    pieces = ["%FF", "%C2%B2", "%", "eq.", "in.(", ")", "not.", "id", "name", "created_at",
              "limit", "cursor", "select", "order", "=", "&", "0001-01-01T00:00:00%2B14:00",
              "9" * 30, "gt.", "lt.", "is.", "like.", "*", '"', ","]  # fmt: skip
    rng = random.Random(7)
    statuses = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for n in range(3000):
            query = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
            accept = "text/csv" if n % 10 == 0 else "application/json"
            statuses.append(
                client.get(f"/mytable/?{query}", headers={"Accept": accept}).status_code
            )
    return statuses


def scanned_paths(server, proxy):
    """5,000 paths a scanner tries, each different, at the root and as keys:
    each a 404, none a metrics series of its own (before, each name with a
    dot was one, and the worker's memory grew without end)."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return [
            client.get(f"/wp-admin-{n}.php" if n % 2 else f"/mytable/{10**9 + n}").status_code
            for n in range(5000)
        ]


def truncated_bodies(server, proxy):
    statuses = []
    for _ in range(50):
        body = b'{"name": "truncated-body"}'
        head = (
            b"POST /mytable/ HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer bench-token\r\nContent-Length: 1000\r\n\r\n"
        )
        statuses.append(raw(server.port, head + body))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        found = client.get("/mytable/?name=eq.truncated-body").json()
    return statuses + [500] * len(found)  # a row written from a truncated body counts as a 5xx


def malformed_large_bodies(server, proxy):
    """300 bodies of 0.9 MB that are not JSON, one after another: each a 400,
    whose body the worker must let go of as soon as it answers."""
    body = b'{"name": "' + b"x" * 900_000  # unterminated
    headers = {**WRITER, "Content-Type": "application/json"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return [client.post("/mytable/", content=body, headers=headers).status_code
                for _ in range(300)]  # fmt: skip


def escaped_form_bodies(server, proxy):
    """300 forms of 0.9 MB of percent escapes, one after another: each
    decoded in turns with the worker's other requests (a 422: the name is
    too long), not in one hold of the loop."""
    body = b"name=" + b"%41" * 300_000
    headers = {**WRITER, "Content-Type": "application/x-www-form-urlencoded"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return [client.post("/mytable/", content=body, headers=headers).status_code
                for _ in range(300)]  # fmt: skip


def idle_connections(server, proxy):
    """1,500 connections that never send a byte; then requests go on being served."""
    return _held_connections(server, b"")


def stalled_bodies(server, proxy):
    """1,500 writes whose body stops halfway, and never goes on (a slow-body
    attack): the body timeout must close each, as the header timeout closes
    connections that send nothing."""
    head = (
        b"POST /mytable/ HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer bench-token\r\nContent-Length: 30\r\n\r\n"
    )
    return _held_connections(server, head + b'{"name": "stall')


def unread_answers(server, proxy):
    """300 connections that ask for 20 pages of 1,000 rows each, pipelined,
    and read nothing: each must be dropped once it has taken nothing for
    api.send_timeout (5 s here), with what the server had buffered for it."""
    asked = b"GET /mytable/?limit=1000 HTTP/1.1\r\nHost: t\r\n\r\n" * 20
    return _held_connections(server, asked, count=300, receive_buffer=4096)


def _held_connections(server, sent, count=1500, receive_buffer=None):
    """``count`` connections that send ``sent`` and then read nothing; requests
    go on being served meanwhile, and the server closes every one within 15 s."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            if receive_buffer:  # before connecting, or the window is already offered
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.settimeout(5)
            sock.connect(("127.0.0.1", server.port))
            sockets.append(sock)
            if sent:
                sock.sendall(sent)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            statuses = [client.get(f"/mytable/{n}").status_code for n in range(1, 21)]
        deadline = time.monotonic() + 15  # a header, body or send timeout closes them all
        open_ones = sockets
        if receive_buffer:  # a look reads, which these clients never do: one, past the timeout
            time.sleep(8)
            open_ones = [s for s in open_ones if not _closed_by_peer(s)]
        while open_ones and time.monotonic() < deadline and not receive_buffer:
            time.sleep(0.5)
            open_ones = [s for s in open_ones if not _closed_by_peer(s)]
        statuses += [HELD] * len(open_ones)  # still held: counted as failures
        return statuses
    finally:
        for sock in sockets:
            sock.close()


def _closed_by_peer(sock):
    """Whether the server closed ``sock``: its end is read after whatever it
    sent first (a 503 to a connection over a worker's cap, which reading a
    byte at a time took for one still held)."""
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def abandoned_and_stalled_exports(server, proxy):
    """10 exports dropped after 1 KB, 10 never read; point reads and writes go on."""
    export = b"GET /mytable/ HTTP/1.1\r\nHost: t\r\nAccept: application/x-ndjson\r\n\r\n"
    stalled = []
    for _ in range(10):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(export)
            sock.recv(1024)
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(export)
        stalled.append(sock)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            statuses = [client.get(f"/mytable/{n}").status_code for n in range(1, 101)]
            statuses += [write(client) for _ in range(20)]
        return statuses
    finally:
        for sock in stalled:
            sock.close()


def stalled_database(server, proxy):
    """The network to the database forwards nothing for 5 s: 503s, then recovery."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        proxy.stall()
        try:
            paths = ["/mytable/1", "/mytable/?limit=5", "/mytable/2"]
            statuses = [client.get(path).status_code for path in paths * 3]
            statuses.append(write(client))
        finally:
            proxy.resume()
        statuses += [client.get(f"/mytable/{n}").status_code for n in range(1, 11)]
        statuses.append(write(client))
    return statuses


def dropped_connections(server, proxy):
    """The database cuts every connection (a restart, a failover), and is
    back before the next request, five times: writes, reads and calls go
    on, none a 503 (the first write of each worker was one)."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        statuses = []
        for _ in range(5):
            proxy.down()
            proxy.up()
            time.sleep(0.2)  # each worker's event loop sees its connections closed
            statuses += [write(client) for _ in range(4)]
            statuses += [client.get(f"/mytable/{n}").status_code for n in range(1, 5)]
            statuses.append(client.get("/rpc/many_rows", params={"p_n": 3}).status_code)
        return statuses


def huge_call_results(server, proxy):
    """20 calls of a procedure that makes a million rows, two at a time: each
    answers api.page_limit_max of them, and no worker holds the rest."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        statuses = []
        for _ in range(10):
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                calls = [pool.submit(client.get, MANY_ROWS_CALL) for _ in range(2)]
                statuses += [call.result().status_code for call in calls]
        statuses.append(write(client))
    return statuses


MANY_ROWS = (  # a million rows of 100 bytes and more, from MariaDB's sequence engine
    "CREATE PROCEDURE many_rows(IN p_n INT) READS SQL DATA "
    "SELECT seq, REPEAT('x', 100) AS pad FROM seq_1_to_10000000 LIMIT p_n"
)
MANY_ROWS_CALL = "/rpc/many_rows?p_n=1000000"


# The API's JWT key, an RSA public key (api.jwt_secret): the costliest to verify.
JWT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWT_SETTINGS = {
    "API_JWT_SECRET": json.dumps(
        {**json.loads(RSAAlgorithm.to_jwk(JWT_KEY.public_key())), "kid": "api", "alg": "RS256"}
    ),
    "API_JWT_ROLES": "authenticated:read,write",
}


def _public_pem():
    return JWT_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _hmac_signed(claims, secret):
    """HS256 by hand: PyJWT refuses to sign with a public key as the secret."""
    part = lambda data: base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")  # noqa: E731
    signed = part({"alg": "HS256", "kid": "api"}) + b"." + part(claims)
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return (signed + b"." + base64.urlsafe_b64encode(digest).rstrip(b"=")).decode()


def forged_jwts(server, proxy):
    """3,000 reads, each with a JWT the API must refuse (401): signed by
    another RSA key, with and without the API's kid; HS256 with the API's
    public key as its passphrase (the confusion of algorithms); alg none;
    expired; a header nested 20,000 deep; a 40 KB payload (53 KB in base64,
    under the head limit). Each different: none is a cached signature."""
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    deep = base64.urlsafe_b64encode(b'{"x":' + b"[" * 20_000 + b"]" * 20_000 + b"}").decode()
    kid, claims = {"kid": "api"}, {"role": "authenticated"}
    forgeries = [
        lambda n: jwt.encode({**claims, "n": n}, attacker, "RS256", kid),
        lambda n: jwt.encode({**claims, "n": n}, attacker, "RS256"),
        lambda n: _hmac_signed({**claims, "n": n}, _public_pem()),
        lambda n: jwt.encode({**claims, "n": n}, None, "none"),
        lambda n: jwt.encode({**claims, "exp": n}, JWT_KEY, "RS256", kid),
        lambda n: f"{deep}.e30.{n}",
        lambda n: jwt.encode({"n": n, "pad": "p" * 40_000}, attacker, "RS256", kid),
    ]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        statuses = [
            client.get(
                "/mytable/?limit=1",
                headers={"Authorization": f"Bearer {forgeries[n % len(forgeries)](n)}"},
            ).status_code
            for n in range(3000)
        ]
    # Anything but a 401 let a forgery through, or failed on it.
    assert set(statuses) == {401}, Counter(statuses)
    return statuses


ATTACKS = [
    forged_jwts,
    quadratic_in_list,
    huge_and_many_headers,
    long_accept_headers,
    fuzzed_query_strings,
    scanned_paths,
    truncated_bodies,
    malformed_large_bodies,
    escaped_form_bodies,
    idle_connections,
    stalled_bodies,
    unread_answers,
    abandoned_and_stalled_exports,
    stalled_database,
    dropped_connections,
    huge_call_results,
]
# Where a 503 is the right answer (the database is stalled), it is not counted as a failure.
EXPECTED_503 = {"stalled_database"}

written = []  # names of rows answered 201


def write(client):
    name = f"hostile-{uuid.uuid4().hex[:12]}"
    response = client.post("/mytable/", json={"name": name}, headers=WRITER)
    if response.status_code == 201:
        written.append(name)
    return response.status_code


def rows_lost(url):
    with httpx.Client(base_url=url, timeout=30) as client:
        names, page = set(), "/mytable/?name=like.hostile-*&select=name&limit=500"
        while page:
            response = client.get(page)
            names |= {row["name"] for row in response.json()}
            link = response.links.get("next")
            page = link["url"] if link else None
    return len(set(written) - names)


def _failures_named(statuses, due):
    """Which 5xx an attack met, by status (a held connection as "held")."""
    counts = Counter(s for s in statuses if s >= 500)
    if due:
        counts[503] -= due
    named = [f"{'held' if s == HELD else s} x{n}" for s, n in sorted(counts.items()) if n > 0]
    return f"  ({', '.join(named)})" if named else ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="these attacks alone, separated by commas")
    only = parser.parse_args().only
    attacks = [a for a in ATTACKS if not only or a.__name__ in only.split(",")]
    seeded = seed(10_000)
    run_sql(seeded, MANY_ROWS)
    database_url = make_url(seeded)
    proxy = TcpProxy(database_url.host, database_url.port or 3306, free_port())
    proxy.up()
    through_proxy = database_url.set(port=proxy.port).render_as_string(hide_password=False)
    os.environ["DB_STATEMENT_TIMEOUT"] = "2"
    os.environ["API_RESPONSE_TIMEOUT"] = "3"
    os.environ["API_SEND_TIMEOUT"] = "5"
    server = api_server(through_proxy, workers=2, API_ROUTINES="many_rows", **JWT_SETTINGS)
    try:
        print(
            f"{'attack':34} {'sent':>6} {'5xx':>5} {'503 due':>8} "
            f"{'liveness p99':>13} {'rows lost':>10} {'worker peak RSS':>16}"
        )
        for attack in attacks:
            with Liveness(server.url) as liveness, httpx.Client(base_url=server.url) as client:
                write(client)  # a committed write before each attack
                started = time.monotonic()
                statuses = attack(server, proxy)
                assert time.monotonic() - started < ATTACK_SECONDS * 3, attack.__name__
            due = sum(s == 503 for s in statuses) if attack.__name__ in EXPECTED_503 else 0
            failures = sum(s >= 500 for s in statuses) - due
            lost = rows_lost(server.url)
            p99 = liveness.p99()
            shown = "-" if p99 != p99 else f"{p99:.1f} ms"  # too short for a p99
            print(
                f"{attack.__name__:34} {len(statuses):>6} {failures:>5} {due:>8} "
                f"{shown:>13} {lost:>10} {server.rss_mib()[1]:>12.0f} MiB"
                + (f"  (liveness failed {liveness.failures}x)" if liveness.failures else "")
                + _failures_named(statuses, due)
            )
    finally:
        server.stop()
        proxy.close()


if __name__ == "__main__":
    main()
