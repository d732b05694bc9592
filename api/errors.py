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
from pyramid_retry import is_last_attempt, mark_error_retryable
from sqlalchemy import exc as sa_exc

from api.logs import (
    Throttled,
    database_error,
    deadlocked,
    error_number,
    loggable_query,
    misconfigured,
)
from api.observe import count_error

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# Headers of an HTTPException that still mean something on the problem response.
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After", "ETag", "Location")


# PostgREST's error codes by status, where a failure has none of its own: a
# PostgREST client reports ``message`` and looks at ``code``.
POSTGREST_CODES = {
    400: "PGRST100",
    401: "PGRST301",
    403: "42501",
    404: "PGRST205",
    405: "PGRST117",
    406: "PGRST107",
    409: "23505",
    412: "PGRST412",
    413: "PGRST413",
    415: "PGRST107",
    416: "PGRST103",
    422: "PGRST204",
    428: "PGRST428",
    500: "PGRST500",
    503: "PGRST001",
}


def problem_body(
    status: int,
    title: str | None = None,
    detail: str | None = None,
    *,
    code: str | None = None,
    details: str | None = None,
    hint: str | None = None,
    **extra: Any,
) -> bytes:
    """RFC 9457 problem details, with PostgREST's ``code``, ``message``,
    ``details`` and ``hint`` as extension members."""
    title = title or HTTPStatus(status).phrase
    problem: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        problem["detail"] = detail
    problem.update(extra)
    problem.update(
        code=code or POSTGREST_CODES.get(status, f"PGRST{status}"),
        message=detail or title,
        details=details,
        hint=hint,
    )
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


class HeaderTooLarge(HTTPException):
    """431 for one request header longer than the API reads (RFC 6585)."""

    code = 431
    title = "Request Header Fields Too Large"


class NotOneRow(HTTPException):
    """406 for PostgREST's singular media type when the rows are not exactly one."""

    code = 406
    title = "Not Acceptable"

    def __init__(self, rows: int | None) -> None:
        found = "more than one row" if rows is None else f"{rows} rows"
        super().__init__(f"JSON object requested, {found} returned")
        self.postgrest_code = "PGRST116"
        self.details = f"The result contains {found}"


class AmbiguousEmbed(HTTPException):
    """300, as PostgREST answers an embed that more than one relation could
    mean (PGRST201), with the hints that tell them apart."""

    code = 300
    title = "Multiple Choices"

    def __init__(self, detail: str, hints: list[str]) -> None:
        super().__init__(detail)
        self.postgrest_code = "PGRST201"
        self.hint = f"Name one of them: {', '.join(hints)}"
        self.parameter = "select"


class RoutineNotFound(HTTPException):
    """404 for ``/rpc/{name}`` or arguments that name no served routine (PGRST202)."""

    code = 404
    title = "Not Found"

    def __init__(self, detail: str, hint: str | None = None) -> None:
        super().__init__(detail)
        self.postgrest_code = "PGRST202"
        self.hint = hint


class RoutineFailed(HTTPException):
    """400 for an error a routine raised itself (SIGNAL), with its SQLSTATE
    and message, as PostgREST passes on what a function RAISEs."""

    code = 400
    title = "Bad Request"

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.postgrest_code = sqlstate


class SchemaNotServed(HTTPException):
    """406 for ``Accept-Profile``/``Content-Profile`` naming another schema (PGRST106)."""

    code = 406
    title = "Not Acceptable"

    def __init__(self, served: str) -> None:
        super().__init__(f"The schema must be one of the following: {served}")
        self.postgrest_code = "PGRST106"


class AggregatesDisabled(HTTPException):
    """An aggregate in a select while ``api.aggregates_enabled`` is off (PGRST123)."""

    code = 400
    title = "Bad Request"

    def __init__(self) -> None:
        super().__init__("Use of aggregate functions is not allowed")
        self.postgrest_code = "PGRST123"
        self.hint = "The server's api.aggregates_enabled turns them on"
        self.parameter = "select"


class InvalidPreferences(HTTPException):
    """``Prefer: handling=strict`` with preferences this API does not know."""

    code = 400
    title = "Bad Request"

    def __init__(self, invalid: list[str]) -> None:
        super().__init__("Invalid preferences given with handling=strict")
        self.postgrest_code = "PGRST122"
        self.details = f"Invalid preferences: {', '.join(invalid)}"
        self.parameter = "Prefer"


class TooManyAffected(HTTPException):
    """``Prefer: max-affected=N`` with ``handling=strict``, and more rows matched."""

    code = 400
    title = "Bad Request"

    def __init__(self, rows: int, limit: int) -> None:
        super().__init__("Query result exceeds max-affected preference constraint")
        self.postgrest_code = "PGRST124"
        self.details = f"The query affects {rows} rows"
        self.parameter = "Prefer"


class ServerBusy(Exception):
    """The worker runs as many of these as it may (exports); try again shortly."""


@exception_view_config(ServerBusy)
def server_busy(exc: ServerBusy, request: Request) -> Response:
    count_error("busy")
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
    if exc.code < 400 and not isinstance(exc, AmbiguousEmbed):
        return exc  # redirects and 304 pass through as they are
    headers = {k: v for k, v in exc.headers.items() if k in _KEPT_HEADERS}
    extra = {}
    if getattr(exc, "parameter", None):
        extra["parameter"] = exc.parameter
    errors = getattr(exc, "errors", None)
    if errors:
        extra["errors"] = errors
    for name in ("code", "details", "hint"):
        value = getattr(exc, f"postgrest_{name}" if name == "code" else name, None)
        if isinstance(value, str):
            extra[name] = value
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.code == 404 and not hasattr(exc, "postgrest_code"):  # Pyramid's: the bare path
        return not_found(request, headers)
    return problem_response(exc.code, detail or exc.explanation, exc.title, headers, **extra)


def not_found(request: Request, headers: dict[str, str] | None = None) -> Response:
    """404 for a path that names nothing."""
    return problem_response(404, f"There is no resource at {request.path}", "Not Found", headers)


def database_unavailable(exc: Exception, request: Request) -> Response:
    if deadlocked(exc):
        return deadlock_victim(exc, request)
    refused = refused_value(exc)
    if refused is not None:
        return refused
    kind = database_error(exc)
    reason = misconfigured(exc)
    throttled = request.registry.api_throttled_log
    count_error("database_misconfigured" if reason else "database_unavailable")
    if reason is not None:  # waiting mends nothing: say what is wrong, to all
        throttled.log(logging.ERROR, kind, "database misconfigured: %s", kind)
        return problem_response(503, f"The API cannot serve this: {reason}.")
    # An outage fails every request alike: one line per kind and interval.
    throttled.log(logging.WARNING, kind, "database unavailable: %s", kind)
    return problem_response(
        503,
        "The database is unavailable; try again shortly.",
        headers={"Retry-After": "1"},
    )


def deadlock_victim(exc: Exception, request: Request) -> Response:
    """The request's transaction lost a deadlock and was rolled back whole,
    which MySQL's manual says to run again: the request runs again from
    the start (pyramid_retry, ``api.write_attempts`` in all), and this
    answer is the last attempt's."""
    mark_error_retryable(exc)
    if is_last_attempt(request):
        count_error("deadlock")
        tries = request.environ.get("retry.attempts", 1)
        log.info("deadlock: %s, after %s attempts", database_error(exc), tries)
    return problem_response(
        503,
        "The write lost a deadlock with other writes, each time it was tried; try again.",
        headers={"Retry-After": "1"},
        code="40001",
    )


# InnoDB's full-text parser reports a search it cannot parse in boolean mode
# ("((((", a lone "+") as 1064, the number of a statement MySQL cannot parse;
# only the message tells them apart: the SQL parser's begins "You have an
# error in your SQL syntax".
FULLTEXT_SYNTAX = (1064, "syntax error")


@exception_view_config(sa_exc.ProgrammingError)
def programming_error(exc: sa_exc.ProgrammingError, request: Request) -> Response:
    """A table that is not there (a database never migrated) is a 503 that
    says so; a full-text search MySQL cannot parse is the client's (400);
    any other is the server's fault."""
    if misconfigured(exc) is not None:
        return database_unavailable(exc, request)
    says = _server_says(exc)
    if error_number(exc) == FULLTEXT_SYNTAX[0] and (says or "").startswith(FULLTEXT_SYNTAX[1]):
        count_error("data")
        return problem_response(
            400,
            "A full-text search (fts, phfts, wfts) is not valid in MySQL's boolean mode;"
            " plfts searches its words as plain text.",
            code="42601",
            details=says,
        )
    return server_error(exc, request)


class SchemaNotCurrent(Exception):
    """Readiness: the database's schema is not at the migrations' head."""


@exception_view_config(SchemaNotCurrent)
def schema_not_current(exc: SchemaNotCurrent, request: Request) -> Response:
    return problem_response(503, str(exc))


# MySQL/MariaDB's error numbers, as PostgreSQL's SQLSTATEs (which PostgREST passes on).
SQLSTATES = {1062: "23505", 1451: "23503", 1452: "23503", 1048: "23502"}

CHECK_FAILED = "A value breaks a check constraint of the table."

REGEXP_FAILED = "A regular expression in the filters is not valid, or took too long on a value."

# Errors about a value the request sent, which the driver raises as an
# OperationalError, as it does a lost connection: the client's to mend, so a
# 4xx that says which (PostgREST's status and SQLSTATE), never a 503 that
# invites the same request again.
REFUSED_VALUES: dict[int, tuple[int, str, str]] = {
    1139: (400, "2201B", REGEXP_FAILED),
    1267: (400, "22021", "A value holds characters its column's character set has not."),
    1270: (400, "22021", "A value holds characters its column's character set has not."),
    1271: (400, "22021", "A value holds characters its column's character set has not."),
    1292: (422, "22007", "A value does not fit its column."),
    1690: (422, "22003", "A value is out of its column's range."),
    3819: (400, "23514", CHECK_FAILED),  # MySQL's check constraint
    4025: (400, "23514", CHECK_FAILED),  # MariaDB's
}
# SQLite's words for a REGEXP whose pattern does not compile, or whose match
# ran out of time (``operators.regexp``).
SQLITE_REGEXP_FAILED = "user-defined function raised exception"


def refused_value(exc: Exception) -> Response | None:
    """The answer to a database error about a value the request sent, else None."""
    orig = getattr(exc, "orig", None)
    errno = error_number(exc)
    if errno in REFUSED_VALUES:
        status, code, detail = REFUSED_VALUES[errno]
        server_says = _server_says(exc)
    elif orig is not None and str(orig) == SQLITE_REGEXP_FAILED:
        (status, code, detail), server_says = REFUSED_VALUES[1139], None
    else:
        return None
    count_error("data")
    log.info("value refused: %s", database_error(exc))
    return problem_response(status, detail, code=code, details=server_says)


def _server_says(exc: Exception) -> str | None:
    """The database's message for an error about the request's own values,
    which names the column or the constraint."""
    orig = getattr(exc, "orig", None)
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if len(args) > 1 and isinstance(args[0], int):  # MySQL's (errno, message)
        return str(args[1])
    return str(orig) if type(orig).__module__ == "sqlite3" else None


def _sqlstate(exc: sa_exc.DBAPIError) -> str | None:
    errno = error_number(exc)
    if errno is not None:
        return SQLSTATES.get(errno)
    text = str(exc.orig)  # SQLite says it in words
    if "UNIQUE" in text:
        return "23505"
    if "CHECK" in text:
        return "23514"
    return "23503" if "FOREIGN KEY" in text else None


@exception_view_config(sa_exc.IntegrityError)
def integrity_error(exc: sa_exc.IntegrityError, request: Request) -> Response:
    count_error("integrity")
    log.info("integrity error: %s", database_error(exc))
    sqlstate = _sqlstate(exc)
    says = _server_says(exc)
    if sqlstate == "23514":  # as MySQL's check constraint, which is no conflict
        return problem_response(400, CHECK_FAILED, code=sqlstate, details=says)
    return problem_response(
        409,
        "The write conflicts with existing data (a unique or foreign key).",
        code=sqlstate or "23000",
        details=says,
    )


@exception_view_config(sa_exc.DataError)
def data_error(exc: sa_exc.DataError, request: Request) -> Response:
    count_error("data")
    log.info("data error: %s", database_error(exc))
    return problem_response(422, "A value does not fit its column.", details=_server_says(exc))


@exception_view_config(Exception)
def server_error(exc: Exception, request: Request) -> Response:
    query = loggable_query(request.query_string)
    where = f"{request.path}?{query}" if query else request.path
    count_error("unhandled")
    log.error("unhandled error on %s %s", request.method, where, exc_info=exc)
    return problem_response(500, "The server failed to answer this request.")


def includeme(config: Configurator) -> None:
    config.registry.api_throttled_log = Throttled(log)
    config.scan(__name__)
    for exc_type in UNAVAILABLE:
        config.add_exception_view(database_unavailable, context=exc_type)
