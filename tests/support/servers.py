"""Test servers: uvicorn in a thread, a free port, and a TCP proxy that plays outages."""

import asyncio
import contextlib
import pathlib
import socket
import subprocess
import threading
import time

import httpx
import uvicorn

from api.bridge.asgi import ASGIApp
from api.protocol import HTTPProtocol


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(command, folder, env, port=None):
    """``command`` (pserve) running until the block ends, once it answers."""
    port = port or int(str(command[-1]).partition("=")[2])
    with subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as server:
        try:
            for _ in range(150):
                if server.poll() is not None:
                    raise AssertionError(server.stdout.read())
                try:
                    httpx.get(f"http://127.0.0.1:{port}/__lbheartbeat__", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            yield server
        finally:
            server.terminate()
            server.wait(timeout=30)


@contextlib.contextmanager
def fresh_sqlite_server(folder, tokens, rows, **settings):
    """A server over a database of its own in ``folder``, migrated and
    seeded with ``rows`` demo rows, for tests that write freely; ``settings``
    beside its tokens."""
    from api.seed import seed
    from tests.support import alembic, make_app

    url = f"sqlite+aiosqlite:///{folder}/api.sqlite"
    alembic(url, "upgrade", "head")
    app = make_app(url, **{"api.tokens": tokens, **settings})
    app.run(seed, app.registry, rows)
    try:
        with ThreadedServer(ASGIApp(app)) as server:
            yield server
    finally:
        app.close()


class ThreadedServer:
    """Uvicorn serving an ASGI app from a thread of the test process."""

    def __init__(self, app, http=HTTPProtocol):
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", http=http
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            threading.Event().wait(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


class TcpProxy:
    """A TCP forwarder that tests can take down and bring back, to play a database outage."""

    def __init__(self, target_host, target_port, listen_port):
        self.target = (target_host, target_port)
        self.port = listen_port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.listener = None
        self.writers = set()
        self.flowing = asyncio.Event()  # cleared: bytes are held, as by a hung server
        self.loop.call_soon_threadsafe(self.flowing.set)

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def up(self):
        async def start():
            self.listener = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

        self._call(start())

    def down(self):
        """Stop listening and cut every open connection, as a crashed server would."""

        async def stop():
            if self.listener is not None:
                self.listener.close()
                self.listener = None
            for writer in list(self.writers):
                writer.transport.abort()
            self.writers.clear()

        self._call(stop())

    def stall(self):
        """Hold every byte from now on: the database neither answers nor hangs up."""
        self.loop.call_soon_threadsafe(self.flowing.clear)

    def resume(self):
        self.loop.call_soon_threadsafe(self.flowing.set)

    def close(self):
        self.down()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    async def _handle(self, client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self.writers |= {client_writer, server_writer}
        await asyncio.gather(
            self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer)
        )

    async def _pipe(self, reader, writer):
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self.writers.discard(writer)


def serve_while(app, scenario):
    """Serve ``app`` (a WSGIApp) over HTTP while the coroutine function
    ``scenario(base_url)`` runs; its result. The app is closed after."""
    try:
        with ThreadedServer(ASGIApp(app)) as server:
            return asyncio.run(scenario(server.url))
    finally:
        app.close()


@contextlib.contextmanager
def tls_only_mariadb(folder):
    """A MariaDB server of its own, on a free port, that takes only TLS
    connections (require_secure_transport), as managed cloud databases do;
    its URL (root, no password) and the CA file that signs its certificate."""
    folder = pathlib.Path(folder)
    cert, key = folder / "cert.pem", folder / "key.pem"
    data, port = folder / "data", free_port()
    make_certificate = (
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
        f" -addext subjectAltName=IP:127.0.0.1 -keyout {key} -out {cert}"
    )
    make_database = (
        f"mariadb-install-db --no-defaults --datadir={data} --user=root"
        " --auth-root-authentication-method=normal --skip-test-db"
    )
    for command in (make_certificate, make_database):
        subprocess.run(command.split(), check=True, capture_output=True)
    serve = (
        f"/usr/sbin/mariadbd --no-defaults --datadir={data} --user=root --port={port}"
        f" --bind-address=127.0.0.1 --socket={folder / 'sock'} --pid-file={folder / 'pid'}"
        f" --ssl-cert={cert} --ssl-key={key} --require-secure-transport=ON"
        " --skip-log-bin --skip-name-resolve"
    )
    server = subprocess.Popen(serve.split(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "mariadbd failed"
                time.sleep(0.1)
        yield f"mysql+asyncmy://root@127.0.0.1:{port}/mysql", cert
    finally:
        server.terminate()
        server.wait(30)
