"""PasteDeploy server runners that serve the app over its ASGI front door, and worker policy.

``[app:main]`` stays the plain Pyramid app (a WSGI callable); these runners
wrap its router in ``api.bridge.asgi.ASGIApp`` and hand it to an async server.
What a worker process does when it starts serving is decided here
(``worker_started``), not in the ASGI adapter.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import multiprocessing
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import uvicorn
from gunicorn.app.base import BaseApplication
from pyramid.paster import get_app
from starlette.middleware.gzip import GZipMiddleware
from uvicorn_worker import UvicornWorker

from api.bridge.asgi import ASGIApp
from api.observe import MULTIPROCESS_DIR, Observed, enable_metrics
from api.openapi.served import served_document
from api.protocol import ForwardedHeaders, HTTPProtocol

log = logging.getLogger(__name__)


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
    # No caller lookup (a walk up the stack) for each log record: the access
    # log writes one a request, and no format of the API's names the caller.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False


def asgi_app(wsgi_app: Any, root_path: str = "") -> Any:
    """The app as a worker serves it: the ASGI front door, with the worker
    policy (``root_path``: the prefix a proxy serves it under, ``/api``),
    its responses compressed for clients that take gzip (Starlette's
    GZipMiddleware, which says ``Vary: Accept-Encoding``), each request
    given an id, logged and counted (``api.observe``); its OpenAPI document
    built now, before gunicorn forks (``served_document``)."""
    settings = wsgi_app.registry.api_settings
    if settings.metrics:
        enable_metrics()
    for schema in (None, *wsgi_app.registry.api_other_schemas):
        served_document(wsgi_app.registry, schema)
    app = ASGIApp(wsgi_app, on_startup=worker_started, root_path=root_path)
    return Observed(Compressed(app), settings.access_log)


class Compressed:
    """Starlette's GZipMiddleware, for the requests that accept gzip only: for
    the others it would still wrap the response's messages, at a cost of a
    third of a point read."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=GZIP_MINIMUM_BYTES, compresslevel=GZIP_LEVEL)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"accept-encoding" and b"gzip" in value and takes_gzip(value):
                    await self.gzip(scope, receive, send)
                    return
        await self.app(scope, receive, send)


@functools.lru_cache(maxsize=256)
def takes_gzip(accept_encoding: bytes) -> bool:
    """Whether an ``Accept-Encoding`` value takes gzip (or its alias x-gzip):
    named with a weight above 0 (RFC 9110 12.5.3). Starlette looks for the
    word only, so a client that said ``gzip;q=0`` got gzip. Clients send
    the same few values: each one's answer is worked out once."""
    for item in accept_encoding.split(b","):
        coding, _, parameters = item.partition(b";")
        if coding.strip().lower() in (b"gzip", b"x-gzip"):
            name, _, weight = parameters.partition(b"=")
            if name.strip().lower() != b"q":
                return True
            try:
                return float(weight) > 0
            except ValueError:
                return False
    return False


# Smaller bodies are sent as they are: gzip would save little, at a cost in CPU.
GZIP_MINIMUM_BYTES = 1024
# nginx's default level: Starlette's (9) took the worker's CPU from serving,
# for bodies a quarter smaller.
GZIP_LEVEL = 1


class Worker(UvicornWorker):
    """The gunicorn worker: uvicorn's, with ``HTTPProtocol``, whose connection
    cap is gunicorn's ``worker_connections``."""

    CONFIG_KWARGS: ClassVar[dict] = {
        **UvicornWorker.CONFIG_KWARGS,
        "http": HTTPProtocol,
        "proxy_headers": False,  # ForwardedHeaders, below, in its place
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        capped = {"max_connections": self.cfg.worker_connections}
        self.config.http = type("HTTPProtocol", (HTTPProtocol,), capped)

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app: Any = getattr(self, "wsgi")  # noqa: B009  # gunicorn sets it, untyped: the ASGI app
        self.wsgi = ForwardedHeaders(app, self.cfg.forwarded_allow_ips)


class _Gunicorn(BaseApplication):
    def __init__(
        self, app: ASGIApp, options: dict[str, Any], rebuild: Callable[[], Any] | None = None
    ) -> None:
        self.application = app
        self.options = options
        self.rebuild = rebuild
        super().__init__()

    def reload(self) -> None:
        """gunicorn's SIGHUP: its settings read again, and the app built
        again from the ini file, so that the workers it starts next serve
        the database's schema as it is now, after a migration (PostgREST's
        schema cache reload); the workers before finish their requests. An
        app that cannot be built (the database away) leaves the one before."""
        super().reload()
        if self.rebuild is None:
            return
        _forget_the_schema()
        try:
            with _not_waiting_for_the_database():
                self.application = self.rebuild()
        except Exception:
            log.exception("reload: the app could not be built again; it serves as before")
            return
        log.warning("reload: the app was built again; new workers serve the schema as it is now")

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


@contextlib.contextmanager
def _not_waiting_for_the_database() -> Iterator[None]:
    """A reload builds the app again without waiting for a database that is
    away (``db.startup_timeout``): gunicorn's master would manage no worker
    meanwhile, and the app it has serves on. The environment wins over the
    ini file, as for any setting."""
    before = os.environ.get("DB_STARTUP_TIMEOUT")
    os.environ["DB_STARTUP_TIMEOUT"] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["DB_STARTUP_TIMEOUT"]
        else:
            os.environ["DB_STARTUP_TIMEOUT"] = before


def _failing_loudly(serve: Callable[[], None]) -> None:
    """Run ``serve``; if it stops with a non-zero SystemExit (a port taken,
    a worker that cannot boot), leave the process with that status.

    pserve catches SystemExit and exits 0 ("Exiting 3"), which a supervisor
    takes for a clean stop: hand-written because no pserve option says
    otherwise.
    """
    try:
        serve()
    except SystemExit as exc:
        if exc.code in (None, 0):
            raise
        status = exc.code if isinstance(exc.code, int) else 1
        print(f"api: the server stopped with status {status}", file=sys.stderr)
        logging.shutdown()
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(status)


def _worker_gone(server: Any, worker: Any) -> None:
    """gunicorn's child_exit: the worker's live gauges no longer count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def gunicorn_runner(wsgi_app: Any, global_conf: dict[str, Any], **settings: Any) -> None:
    """Multi-process serving: gunicorn with uvicorn workers, one per core by default.

    Every setting is a gunicorn setting (``bind``, ``workers``, ``backlog``,
    ``forwarded_allow_ips``, ...) but ``root_path``, the prefix a proxy serves
    the API under; ``pserve production.ini http_port=9000`` binds that port.
    """
    if wsgi_app.registry.api_settings.metrics:
        # Each worker keeps its metrics in files of this folder, summed when
        # scraped (prometheus-client's multi-process mode); before any fork.
        os.environ.setdefault(MULTIPROCESS_DIR, tempfile.mkdtemp(prefix="api-metrics-"))
        settings.setdefault("child_exit", _worker_gone)
    root_path = settings.pop("root_path", "")
    app = asgi_app(wsgi_app, root_path)
    # Set before the fork, so that every worker's connections have it.
    HTTPProtocol.send_timeout = wsgi_app.registry.api_settings.send_timeout
    if "http_port" in global_conf:
        host = str(settings.get("bind", "0.0.0.0:8080")).rpartition(":")[0]
        settings["bind"] = f"{host}:{global_conf['http_port']}"
    settings.setdefault("workers", multiprocessing.cpu_count())
    settings.setdefault("worker_class", "api.serve.Worker")
    # pserve built the app before gunicorn forks, so it must not hold
    # connections: engines are made per event loop, inside each worker (api.db).
    _failing_loudly(_Gunicorn(app, settings, _rebuilder(global_conf, root_path)).run)


def _forget_the_schema() -> None:
    """Empty the API's caches of functions, whose keys (tables, columns,
    shapes of statements) would keep every schema read before alive in the
    master, and in each worker it forks."""
    for name, module in list(sys.modules.items()):
        if name == "api" or name.startswith("api."):
            for value in list(vars(module).values()):
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()


def _rebuilder(global_conf: dict[str, Any], root_path: str) -> Callable[[], Any] | None:
    """What builds the app again as pserve built it: from its ini file,
    with the variables given on pserve's command line."""
    if "__file__" not in global_conf:
        return None
    path = global_conf["__file__"]
    variables = {k: v for k, v in global_conf.items() if k not in ("__file__", "here")}
    return lambda: asgi_app(get_app(path, options=variables), root_path)


def uvicorn_runner(
    wsgi_app: Any,
    global_conf: dict[str, Any],
    host: str = "127.0.0.1",
    port: str = "6543",
    **settings: Any,
) -> None:
    """One process, one event loop: for development. ``pserve development.ini
    http_port=7000`` (PasteDeploy's variables, as the Pyramid starter's
    ``%(http_port)s``) serves on that port instead."""
    port = global_conf.get("http_port", port)
    app = asgi_app(wsgi_app, settings.pop("root_path", ""))
    trusted = settings.pop("forwarded_allow_ips", "127.0.0.1")
    settings["proxy_headers"] = False  # ForwardedHeaders in its place
    settings.setdefault("access_log", False)  # api.observe logs each request instead
    settings.setdefault("http", HTTPProtocol)
    HTTPProtocol.send_timeout = wsgi_app.registry.api_settings.send_timeout
    served = ForwardedHeaders(app, trusted)
    _failing_loudly(lambda: uvicorn.run(served, host=host, port=int(port), **settings))
