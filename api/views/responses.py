"""What the views share: JSON responses, the orjson renderer, Prefer, the
query string parsed strictly, and the refusal of writes to a view."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from pyramid.httpexceptions import HTTPMethodNotAllowed, HTTPNotModified
from pyramid.request import Request
from pyramid.response import Response
from webob.multidict import MultiDict

from api import formats
from api.collections import describe
from api.errors import BadRequest, InvalidPreferences, NotOneRow
from api.etags import etag
from api.querystring import (
    Filter,
    ListQuery,
    parse_list_query,
    parse_query_string,
    parse_range,
)
from api.reads.lists import CountMethod
from api.resources import Collection, Item

Row = dict[str, Any]


class JSONResponse(Response):
    """``request.response``: JSON unless a view says otherwise, so the renderer sets nothing."""

    # The charset said, as PostgREST says it: prequest prints text, not bytes.
    default_content_type = formats.JSON_UTF8
    default_charset = "utf-8"


def json_response_factory(request: Request) -> JSONResponse:
    return JSONResponse()


def json_renderer_factory(info: Any) -> Callable[[Any, Any], bytes]:
    def render(value: Any, system: Any) -> bytes:
        return formats.dump_json(value)

    return render


def preferences(request: Request) -> frozenset[str]:
    """The tokens of the Prefer header (RFC 7240), e.g. {"count=exact"};
    with ``handling=strict``, one this API does not know is a 400 (PGRST122).
    Parsed once a request: a write asks seven times."""
    environ = request.environ
    tokens: frozenset[str] | None = environ.get(_PREFERENCES)
    if tokens is None:
        header = environ.get("HTTP_PREFER", "")  # several Prefer headers, joined by ","
        tokens = frozenset(p.strip() for p in header.split(",") if p.strip())
        if "handling=strict" in tokens:
            invalid = sorted(token for token in tokens if not _known_preference(token))
            if invalid:
                raise InvalidPreferences(invalid)
        environ[_PREFERENCES] = tokens
    return tokens


_PREFERENCES = "api.preferences"  # the environ's key of a request's parsed preferences


# PostgREST's preferences and the values each takes (None: checked by _known_preference).
PREFERENCES: dict[str, frozenset[str] | None] = {
    "return": frozenset({"minimal", "headers-only", "representation"}),
    "count": frozenset({"exact", "planned", "estimated"}),
    "resolution": frozenset({"merge-duplicates", "ignore-duplicates"}),
    "missing": frozenset({"default", "null"}),
    "handling": frozenset({"strict", "lenient"}),
    "tx": frozenset({"commit", "rollback"}),
    "params": frozenset({"single-object"}),
    "max-affected": None,
    "timezone": None,
}


def _known_preference(token: str) -> bool:
    name, _, value = token.partition("=")
    if name not in PREFERENCES:
        return False
    values = PREFERENCES[name]
    if values is not None:
        return value in values
    if name == "max-affected":
        return value.isascii() and value.isdigit()
    return _zone(value) is not None


def _zone(name: str) -> ZoneInfo | None:
    """The time zone ``name`` (IANA's: America/Los_Angeles), or None."""
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, ZoneInfoNotFoundError):  # no such zone, or not a zone's name
        return None


@dataclasses.dataclass(frozen=True)
class Representation:
    """How rows are written for this request, beyond the plain JSON: nulls
    stripped (``Accept: ...;nulls=stripped``) and instants in the time zone
    of ``Prefer: timezone``, embedded rows included, as PostgREST does."""

    strip_nulls: bool = False
    zone: ZoneInfo | None = None

    @property
    def plain(self) -> bool:
        return not self.strip_nulls and self.zone is None

    def headers(self) -> list[tuple[str, str]]:
        return [] if self.zone is None else [("Preference-Applied", f"timezone={self.zone.key}")]

    def apply(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: self.apply(item)
                for key, item in value.items()
                if item is not None or not self.strip_nulls
            }
        if isinstance(value, list):
            return [self.apply(item) for item in value]
        if self.zone is not None and isinstance(value, datetime):
            instant = value if value.tzinfo else value.replace(tzinfo=UTC)
            return instant.astimezone(self.zone)
        return value


PLAIN = Representation()


def representation(request: Request) -> Representation:
    """What ``Accept`` and ``Prefer`` ask of this request's JSON rows."""
    environ = request.environ  # not request.headers, whose get() raises for a header not sent
    strip = formats.STRIPPED in environ.get("HTTP_ACCEPT", "")
    if "HTTP_PREFER" not in environ and not strip:
        return PLAIN
    zone = next(
        (_zone(t[len("timezone=") :]) for t in preferences(request) if t.startswith("timezone=")),
        None,
    )
    return PLAIN if not strip and zone is None else Representation(strip, zone)


def query_params(request: Request) -> MultiDict:
    """The query's parameters, parsed strictly (not ``request.GET``: WebOb's
    cache of it and the environ refer to each other, a reference cycle per
    request left for the cyclic GC). Parsed once a request, and kept in the
    environ: a POST asks three times."""
    environ = request.environ
    params: MultiDict | None = environ.get(_QUERY_PARAMS)
    if params is None:
        params = environ[_QUERY_PARAMS] = parse_query_string(request.query_string)
    return params


_QUERY_PARAMS = "api.query_params"  # the environ's key of a request's parsed parameters


def list_query(
    context: Collection, request: Request, key: dict[str, Any] | None = None
) -> ListQuery:
    """The read the query string asks of ``context``'s rows; of the one row
    whose primary key holds ``key``, for an item URL."""
    settings = request.registry.api_settings
    values = context.fixed if key is None else {**context.fixed, **key}
    fixed = tuple(Filter(context.table.columns[n], "eq", v) for n, v in values.items())
    return parse_list_query(
        context.table,
        query_params(request),
        default_limit=settings.page_limit_default,
        max_limit=settings.page_limit_max,
        cursor_secret=settings.cursor_secret,
        fixed=fixed,
        range_=_range_header(request),
        aggregates=settings.aggregates_enabled,
    )


def requested_count(request: Request) -> CountMethod | None:
    """``Prefer: count=exact|planned|estimated``: how to count the rows."""
    prefer = preferences(request)
    for method in COUNT_METHODS:
        if f"count={method}" in prefer:
            return method
    return None


COUNT_METHODS: tuple[CountMethod, ...] = ("exact", "planned", "estimated")


def _range_header(request: Request) -> tuple[int, int | None] | None:
    """The Range header's rows on a read; a write ignores it, as RFC 9110
    and PostgREST do (a write is bounded by ``limit`` alone)."""
    if request.method not in ("GET", "HEAD"):
        return None
    return parse_range(request.environ.get("HTTP_RANGE"))


# The request headers WebOb's conditional responses answer.
CONDITIONAL_HEADERS = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_RANGE")


def json_response(
    value: Any, headers: Iterable[tuple[str, str]] = (), conditional: bool = False
) -> JSONResponse:
    """``value`` as a whole JSON response, with ``headers`` added.

    Built at once rather than through the renderer and ``request.response``,
    for the hot paths: point reads and pages. ``conditional``: WebOb answers
    If-None-Match, If-Modified-Since and Range (304, 206).
    """
    body = formats.dump_json(value)
    headerlist = [
        ("Content-Type", formats.JSON_UTF8),
        ("Content-Length", str(len(body))),
        *headers,
    ]
    return JSONResponse(app_iter=[body], headerlist=headerlist, conditional_response=conditional)


def rows_response(
    request: Request, rows: list[Row], headers: Iterable[tuple[str, str]] = ()
) -> JSONResponse:
    """``rows`` as a JSON array; under PostgREST's singular media type, the one
    row as an object, and 406 (PGRST116) unless there is exactly one."""
    rows, headers = shaped(request, rows, headers)
    if formats.SINGULAR in request.environ.get("HTTP_ACCEPT", ""):
        if len(rows) != 1:
            raise NotOneRow(len(rows))
        return media_typed(json_response(rows[0], headers), request, formats.SINGULAR)
    return media_typed(json_response(rows, headers), request, formats.JSON)


def shaped(
    request: Request, value: Any, headers: Iterable[tuple[str, str]] = ()
) -> tuple[Any, list[tuple[str, str]]]:
    """``value`` (rows, or a routine's value) and ``headers`` as the
    request's ``representation`` asks."""
    wanted = representation(request)
    if wanted.plain:
        return value, list(headers)
    return wanted.apply(value), [*headers, *wanted.headers()]


def media_typed(response: JSONResponse, request: Request, media_type: str) -> JSONResponse:
    """``response`` as ``media_type``, or its PostgREST form with nulls stripped."""
    if formats.STRIPPED in request.environ.get("HTTP_ACCEPT", ""):
        media_type = formats.nulls_stripped(media_type)
    if media_type != formats.JSON:
        response.headers["Content-Type"] = media_type
    return response


def with_etag(
    request: Request, table: sa.Table, row: Row, media_type: str = formats.JSON
) -> Response:
    """``row`` as a JSON response of ``media_type`` (``formats.OBJECT_OFFERS``)
    with its ETag; GET and HEAD answer If-None-Match with 304."""
    tag = etag(table, row)
    if _matches_any(request):
        return HTTPNotModified(headers=[("ETag", tag)])
    # WebOb's conditional handling only where there is a condition to check.
    conditional = any(header in request.environ for header in CONDITIONAL_HEADERS)
    response = json_response(describe(table).visible(row), [("ETag", tag)], conditional)
    if media_type != formats.JSON:
        response.headers["Content-Type"] = media_type
    return response


def _matches_any(request: Request) -> bool:
    """``If-None-Match: *`` on a read, which any row matches (RFC 9110): WebOb
    reads ``*`` as a false value and never answers it with a 304."""
    asked = request.environ.get("HTTP_IF_NONE_MATCH")
    return asked is not None and asked.strip() == "*" and request.method in ("GET", "HEAD")


def refuse_read_only(context: Collection | Item) -> None:
    """405 for a write to a view (or a table served read-only)."""
    collection = context if isinstance(context, Collection) else context.__parent__
    if collection.description.read_only:
        raise HTTPMethodNotAllowed(headers={"Allow": ", ".join(context.allowed_methods)})


def refuse_half_done(context: Collection | Item, request: Request, rows: int = 1) -> None:
    """A 400, before anything is written, for a write that a table whose
    engine cannot undo one (MyISAM) would leave half done: a dry run
    (``Prefer: tx=rollback``), which would be kept, or one of more than one
    row, of which a failure part way would keep the rows before it.
    PostgreSQL's feature_not_supported."""
    collection = context if isinstance(context, Collection) else context.__parent__
    engine = collection.description.engine_without_transactions
    if engine is None:
        return
    table = collection.description.table
    stored = f"writes to a {engine} table" if table.info.get("view") else f"is a {engine} table"
    said = f"'{collection.__name__}' {stored}, which cannot undo a write"
    if "tx=rollback" in preferences(request):
        raise BadRequest(f"{said}: Prefer: tx=rollback would keep it.", "Prefer", "0A000")
    if rows > 1:
        message = f"{said}: a write of {rows} rows could be left half done; write one at a time."
        raise BadRequest(message, code="0A000")
