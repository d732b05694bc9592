"""One error shape for every failure: RFC 9457 problem+json.

Every error, the 500 included, leaves as ``application/problem+json``, never as
HTML or a traceback.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPException
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import exception_view_config
from sqlalchemy import exc as sa_exc

from api.logs import Throttled, database_error, loggable_query

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# Headers of an HTTPException that still mean something on the problem response.
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After", "ETag", "Location")


def problem_body(
    status: int, title: str | None = None, detail: str | None = None, **extra: Any
) -> bytes:
    problem = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        problem["detail"] = detail
    problem.update(extra)
    return orjson.dumps(problem)


def problem_response(
    status: int,
    detail: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    response = Response(
        body=problem_body(status, title, detail, **extra),
        status=status,
        content_type=PROBLEM_JSON,
        charset=None,
    )
    if headers:
        response.headers.update(headers)
    return response


class BadRequest(HTTPException):
    """A 400 with the offending parameter named; raise it from views and loaders."""

    code = 400
    title = "Bad Request"

    def __init__(self, detail: str, parameter: str | None = None) -> None:
        super().__init__(detail)
        self.parameter = parameter


class ServerBusy(Exception):
    """The worker runs as many of these as it may (exports); try again shortly."""


@exception_view_config(ServerBusy)
def server_busy(exc: ServerBusy, request: Request) -> Response:
    return problem_response(503, str(exc), headers={"Retry-After": "1"})


class DatabaseUnavailable(Exception):
    """The database could not be reached, or did not answer in time."""


# Driver and pool failures that mean "the database is not there right now":
# refused or lost connections, pool checkout timeouts, asyncio timeouts.
UNAVAILABLE = (
    DatabaseUnavailable,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    TimeoutError,
    ConnectionError,
)


@exception_view_config(HTTPException)
def http_exception(exc: HTTPException, request: Request) -> Response:
    if exc.code < 400:  # redirects and 304 pass through as they are
        return exc
    headers = {k: v for k, v in exc.headers.items() if k in _KEPT_HEADERS}
    extra = {}
    if getattr(exc, "parameter", None):
        extra["parameter"] = exc.parameter
    errors = getattr(exc, "errors", None)
    if errors:
        extra["errors"] = errors
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.code == 404:  # Pyramid's own detail is the bare path
        detail = f"There is no resource at {request.path}"
    return problem_response(exc.code, detail or exc.explanation, exc.title, headers, **extra)


def database_unavailable(exc: Exception, request: Request) -> Response:
    kind = database_error(exc)
    # An outage fails every request alike: one line per kind and interval.
    request.registry.api_throttled_log.log(logging.WARNING, kind, "database unavailable: %s", kind)
    return problem_response(
        503,
        "The database is unavailable; try again shortly.",
        headers={"Retry-After": "1"},
    )


@exception_view_config(sa_exc.IntegrityError)
def integrity_error(exc: sa_exc.IntegrityError, request: Request) -> Response:
    log.info("integrity error: %s", database_error(exc))
    return problem_response(
        409, "The write conflicts with existing data (a unique or foreign key)."
    )


@exception_view_config(sa_exc.DataError)
def data_error(exc: sa_exc.DataError, request: Request) -> Response:
    log.info("data error: %s", database_error(exc))
    return problem_response(422, "A value does not fit its column.")


@exception_view_config(Exception)
def server_error(exc: Exception, request: Request) -> Response:
    query = loggable_query(request.query_string)
    where = f"{request.path}?{query}" if query else request.path
    log.error("unhandled error on %s %s", request.method, where, exc_info=exc)
    return problem_response(500, "The server failed to answer this request.")


def includeme(config: Configurator) -> None:
    config.registry.api_throttled_log = Throttled(log)
    config.scan(__name__)
    for exc_type in UNAVAILABLE:
        config.add_exception_view(database_unavailable, context=exc_type)
