"""What the API tells of itself: a request id and an access log line per
request, and Prometheus metrics (prometheus-client), across gunicorn's
workers in its multi-process mode.

``Observed`` wraps the ASGI front door: it takes ``X-Request-ID`` from the
client (or makes one) and returns it, times the request, counts what it
sends, logs one line (``api.access_log``: ``json``, ``human`` or ``off``;
credential-like query parameters redacted) and counts it by route and
status. Other modules report through ``metrics()``, which is None when
metrics are off.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from api.logs import loggable_query

log = logging.getLogger("api.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

# A client's request id is kept if it is short and plain; else one is made.
REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}\Z")
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client gone before its answer
# The key in a request's ``scope["state"]`` of the status that the HTTP
# protocol answered it with, past the app (a body that stopped coming: 408).
ANSWERED_BY_PROTOCOL = "api.answered_by_protocol"


# This process's id, kept up to date across forks. prometheus-client asks
# for it on every change of a value in multi-process mode, to notice a fork,
# and os.getpid() is a system call each time.
_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


def _process_id() -> int:
    return _pid[0]


class Metrics:
    """The API's metrics, made once per process (``metrics()``)."""

    def __init__(self) -> None:
        # Imported here, not at the top: prometheus-client picks its value
        # store (one file per worker in multi-process mode) when imported,
        # which must come after the server runner named the directory.
        from prometheus_client import Counter, Gauge, Histogram, values

        values.ValueClass = (
            values.MultiProcessValue(process_identifier=_process_id)
            if MULTIPROCESS_DIR in os.environ
            else values.MutexValue
        )
        self.requests = Counter("api_requests", "Requests answered", ["route", "method", "status"])
        self.latency = Histogram(
            "api_request_duration_seconds",
            "Time to answer a request",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.errors = Counter("api_errors", "Failures answered, by kind", ["kind"])
        self.pool_in_use = Gauge(
            "api_db_connections_in_use",
            "Connections checked out of a pool",
            ["pool"],
            multiprocess_mode="livesum",
        )
        self.pool_waits = Counter("api_db_pool_waits", "Reads that waited for a read connection")
        self.batch_size = Histogram(
            "api_coalesced_batch_size",
            "Point reads served by one statement",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.exports = Gauge(
            "api_exports_in_flight", "Exports streaming", multiprocess_mode="livesum"
        )

    def exposition(self) -> tuple[bytes, str]:
        """The metrics of every worker (multi-process mode), else this process's."""
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            REGISTRY,
            CollectorRegistry,
            generate_latest,
            multiprocess,
        )

        registry = REGISTRY
        if os.environ.get(MULTIPROCESS_DIR):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST


_metrics: Metrics | None = None
_enabled = False


def enable_metrics() -> None:
    global _enabled
    _enabled = True


def metrics() -> Metrics | None:
    """This process's metrics, made on first use; None when they are off."""
    global _metrics
    if _metrics is None and _enabled:
        _metrics = Metrics()
    return _metrics


def count_error(kind: str) -> None:
    found = metrics()
    if found is not None:
        found.errors.labels(kind).inc()


def route_of(path: str) -> str:
    """The route template of a path, for metrics: names of collections and
    values of keys are left out, so that what a client sends cannot make
    new series."""
    parts = path.strip("/").split("/")
    if not parts[0]:
        return "/"
    if len(parts) == 1 and parts[0] in SERVICE:
        return f"/{parts[0]}"
    if parts[0] == "rpc":
        return "/rpc/{name}"
    template = ["{collection}", "{key}", "{child}", "{key}"][: len(parts)]
    return "/" + "/".join(template) + ("/" if path.endswith("/") else "")


# The API's own paths at the root (its views named on Root): their own
# series. Any other name, a collection's or one a scanner tries, is
# "{collection}": a series for each name sent would grow without end.
SERVICE = frozenset(
    {"metrics", "docs", "openapi.json", "__version__", "__heartbeat__", "__lbheartbeat__"}
)


class Observed:
    """The ASGI app ``app``, each request given an id, logged and counted."""

    def __init__(self, app: Callable[..., Awaitable[None]], access_log: str) -> None:
        self.app = app
        self.access_log = access_log
        self.logged = access_log != "off"
        self.counted = _enabled
        # Each (route, method, status)'s counter and each route's histogram,
        # found once: prometheus-client's labels() costs a lock and a lookup.
        self.counters: dict[tuple[str, str, int], Any] = {}
        self.histograms: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id" and REQUEST_ID.match(value):
                request_id = value
        if request_id is None:
            request_id = os.urandom(16).hex().encode()  # what uuid4().hex gives, for less
            scope["headers"].append((b"x-request-id", request_id))  # the request's own list
        # The status and bytes sent. A request answered nothing was one whose
        # client went away first (mid-body, or before its answer): nginx's 499,
        # not a server error to count. One that raised is uvicorn's 500.
        answered = [CLIENT_CLOSED_REQUEST, 0]

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            else:
                answered[1] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except BaseException:
            if answered[0] == CLIENT_CLOSED_REQUEST:
                answered[0] = 500
            raise
        finally:
            if answered[0] == CLIENT_CLOSED_REQUEST:
                answered[0] = scope.get("state", {}).get(ANSWERED_BY_PROTOCOL, answered[0])
            if self.counted or self.logged:
                elapsed = time.perf_counter() - started
                self._record(scope, answered[0], answered[1], elapsed, request_id)

    def _record(
        self, scope: Scope, status: int, sent: int, elapsed: float, request_id: bytes
    ) -> None:
        found = metrics() if self.counted else None
        if found is not None:
            path, prefix = scope["path"], scope.get("root_path", "")
            route = route_of(path[len(prefix) :] if prefix and path.startswith(prefix) else path)
            key = (route, scope["method"], status)
            counter = self.counters.get(key)
            if counter is None:
                counter = self.counters[key] = found.requests.labels(route, key[1], str(status))
            counter.inc()
            histogram = self.histograms.get(route)
            if histogram is None:
                histogram = self.histograms[route] = found.latency.labels(route)
            histogram.observe(elapsed)
        if self.logged and log.isEnabledFor(logging.INFO):
            log.info(self._line(scope, status, sent, elapsed, request_id.decode()))

    def _line(self, scope: Scope, status: int, sent: int, elapsed: float, request_id: str) -> str:
        query = loggable_query(scope["query_string"].decode("latin-1"))
        path = scope["path"]  # as the client asked for it
        target = f"{path}?{query}" if query else path
        client = (scope.get("client") or ("-",))[0]
        if self.access_log == "json":
            return orjson.dumps(
                {
                    "time": datetime.datetime.now(datetime.UTC).isoformat(),
                    "client": client,
                    "method": scope["method"],
                    "path": target,
                    "status": status,
                    "bytes": sent,
                    "duration_ms": round(elapsed * 1000, 3),
                    "request_id": request_id,
                }
            ).decode()
        return (
            f'{client} "{scope["method"]} {target}" {status} {sent}B '
            f"{elapsed * 1000:.1f}ms id={request_id}"
        )
