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

from api.logs import loggable_query
from api.observe import count_error

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# Headers of an HTTPException that still mean something on the problem response.
_KEPT_HEADERS = (
    "Allow",
    "WWW-Authenticate",
    "Retry-After",
    "ETag",
    "Location",
    "Content-Range",
    "Preference-Applied",
)


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

    def __init__(self, detail: str, parameter: str | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.parameter = parameter
        # PostgREST's: PGRST102 for a body it cannot read, PGRST100 for a query string.
        self.postgrest_code = code or ("PGRST102" if parameter == "body" else "PGRST100")


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


class RangeNotSatisfiable(HTTPException):
    """416 for a page no row can fill, with PostgREST's words (PGRST103): a
    Range header whose end comes before its start, or an offset past the
    counted rows (then with ``Content-Range: */TOTAL``)."""

    code = 416
    title = "Range Not Satisfiable"

    def __init__(
        self,
        details: str,
        headers: list[tuple[str, str]] | None = None,
        parameter: str | None = None,
    ) -> None:
        super().__init__("Requested range not satisfiable", headers=headers)
        self.postgrest_code = "PGRST103"
        self.details = details
        self.parameter = parameter


class ServerBusy(Exception):
    """The worker runs as many of these as it may (exports); try again shortly."""


@exception_view_config(ServerBusy)
def server_busy(exc: ServerBusy, request: Request) -> Response:
    count_error("busy")
    return problem_response(503, str(exc), headers={"Retry-After": "1"})


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


@exception_view_config(Exception)
def server_error(exc: Exception, request: Request) -> Response:
    query = loggable_query(request.query_string)
    where = f"{request.path}?{query}" if query else request.path
    count_error("unhandled")
    log.error("unhandled error on %s %s", request.method, where, exc_info=exc)
    return problem_response(500, "The server failed to answer this request.")


def includeme(config: Configurator) -> None:
    config.scan(__name__)
    config.include("api.database_errors")
