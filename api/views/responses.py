"""What the views share: JSON responses, the orjson renderer, Prefer, the
query string parsed strictly, and the refusal of writes to a view."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from pyramid.httpexceptions import (
    HTTPMethodNotAllowed,
)
from pyramid.request import Request
from pyramid.response import Response
from webob.multidict import MultiDict

from api import formats
from api.errors import NotOneRow
from api.etags import etag
from api.querystring import (
    Filter,
    ListQuery,
    parse_list_query,
    parse_query_string,
    parse_range,
)
from api.resources import Collection, Item

Row = dict[str, Any]


class JSONResponse(Response):
    """``request.response``: JSON unless a view says otherwise, so the renderer sets nothing."""

    default_content_type = "application/json"
    default_charset = None


def json_response_factory(request: Request) -> JSONResponse:
    return JSONResponse()


def json_renderer_factory(info: Any) -> Callable[[Any, Any], bytes]:
    def render(value: Any, system: Any) -> bytes:
        return formats.dump_json(value)

    return render


def preferences(request: Request) -> set[str]:
    """The tokens of the Prefer header (RFC 7240), e.g. {"count=exact"}."""
    return {p.strip() for p in request.headers.get("Prefer", "").split(",") if p.strip()}


def query_params(request: Request) -> MultiDict:
    """The query's parameters, parsed strictly (not ``request.GET``: WebOb's
    cache of it and the environ refer to each other, a reference cycle per
    request left for the cyclic GC)."""
    return parse_query_string(request.query_string)


def list_query(context: Collection, request: Request) -> ListQuery:
    settings = request.registry.api_settings
    fixed = tuple(Filter(context.table.columns[n], "eq", v) for n, v in context.fixed.items())
    return parse_list_query(
        context.table,
        query_params(request),
        default_limit=settings.page_limit_default,
        max_limit=settings.page_limit_max,
        cursor_secret=settings.cursor_secret,
        fixed=fixed,
        range_=parse_range(request.headers.get("Range")),
    )


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
    headerlist = [("Content-Type", formats.JSON), ("Content-Length", str(len(body))), *headers]
    return JSONResponse(app_iter=[body], headerlist=headerlist, conditional_response=conditional)


def rows_response(
    request: Request, rows: list[Row], headers: Iterable[tuple[str, str]] = ()
) -> JSONResponse:
    """``rows`` as a JSON array; under PostgREST's singular media type, the one
    row as an object, and 406 (PGRST116) unless there is exactly one."""
    if formats.SINGULAR in request.headers.get("Accept", ""):
        if len(rows) != 1:
            raise NotOneRow(len(rows))
        response = json_response(rows[0], headers)
        response.content_type = formats.SINGULAR
        return response
    return json_response(rows, headers)


def with_etag(request: Request, table: sa.Table, row: Row) -> JSONResponse:
    """``row`` as a JSON response with its ETag; GET and HEAD answer If-None-Match with 304."""
    # WebOb's conditional handling only where there is a condition to check.
    conditional = any(header in request.environ for header in CONDITIONAL_HEADERS)
    return json_response(row, [("ETag", etag(table, row))], conditional)


def refuse_read_only(context: Collection | Item) -> None:
    """405 for a write to a view (or a table served read-only)."""
    collection = context if isinstance(context, Collection) else context.__parent__
    if collection.description.read_only:
        raise HTTPMethodNotAllowed(headers={"Allow": ", ".join(context.allowed_methods)})
