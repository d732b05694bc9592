"""Thin views: validate input, call a loader, return plain data.

``async def`` views are awaited by ``api.bridge.await_coroutine_views``; the
``json`` renderer is orjson.
"""

import os
import secrets
from urllib.parse import quote, unquote_plus

from pyramid.httpexceptions import (
    HTTPConflict,
    HTTPMethodNotAllowed,
    HTTPNoContent,
    HTTPPreconditionFailed,
    HTTPPreconditionRequired,
    HTTPRequestEntityTooLarge,
)
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.settings import asbool
from pyramid.view import view_config
from webob.compat import parse_qsl_text
from webob.multidict import MultiDict

from api import formats, queries
from api.db import get_engine, get_reader, ping
from api.errors import DatabaseUnavailable
from api.openapi import build_document, column_schema
from api.querystring import encode_cursor, parse_list_query
from api.resources import Collection, Item, Root
from api.validation import (
    MERGE_PATCH_TYPES,
    Unprocessable,
    check_if_match,
    json_body,
    merge_patch_row,
    validate_row,
    writable_defaults,
)


class JSONResponse(Response):
    """``request.response``: JSON unless a view says otherwise, so the renderer sets nothing."""

    default_content_type = "application/json"
    default_charset = None


def json_response_factory(request):
    return JSONResponse()


def json_renderer_factory(info):
    def render(value, system):
        return formats.dump_json(value)

    return render


@view_config(context=Root, request_method="GET", renderer="json")
def list_collections(context, request):
    return {
        "collections": [
            {
                "name": name,
                "href": request.resource_url(context[name]),
                "columns": {str(c.name): column_schema(c) for c in table.columns},
            }
            for name, table in request.registry.api_collections.items()
        ],
        "openapi": request.resource_url(context, "openapi.json"),
    }


def _preferences(request):
    """The tokens of the Prefer header (RFC 7240), e.g. {"count=exact"}."""
    return {p.strip() for p in request.headers.get("Prefer", "").split(",") if p.strip()}


def _query_params(request):
    """``request.GET``, parsed alike, without WebOb's cache in the environ: that
    cache and the environ refer to each other, a reference cycle per request
    left for the cyclic GC."""
    return MultiDict(parse_qsl_text(request.query_string))


async def list_rows(context, request):
    """A page of rows; or, for NDJSON and CSV, the whole result streamed."""
    media_type = formats.negotiate(request)
    params = _query_params(request)
    registry = request.registry
    query = parse_list_query(
        context.table, params, registry.api_paging, registry.api_cursor_secret
    )
    if media_type != "application/json":
        engine = get_engine(request)
        rows = queries.stream_list(engine, context.table, query, registry.api_export_batch)
        return formats.streaming_response(media_type, query.columns, rows)

    preferences = _preferences(request)
    count = next((how for how in ("estimated", "exact") if f"count={how}" in preferences), None)
    rows, more, counted = await queries.read_page(get_reader(request), context.table, query, count)
    headers = []
    if counted is not None:
        total, how = counted
        headers += [("Total-Count", str(total)), ("Preference-Applied", f"count={how}")]
    next_url = None
    if more:
        cursor = encode_cursor(query, rows[-1], request.registry.api_cursor_secret)
        # resource_url() spelled out: collection names need no quoting
        # (api.resources), and it was a tenth of a page's CPU.
        next_url = f"{request.application_url}/{context.__name__}/?{_next_query(request, cursor)}"
        headers.append(("Link", f'<{next_url}>; rel="next"'))
    keys = [str(column.name) for column in query.columns]
    if rows and len(rows[0]) != len(keys):  # order columns were fetched for the cursor
        rows = [{key: row[key] for key in keys} for row in rows]
    return json_response({"items": rows, "next": next_url}, headers)


def _next_query(request, cursor):
    """The request's query string as it came, with ``cursor`` in place of its own.

    Not parsed and encoded again (a quarter of the time); what is not plain
    ASCII in it is percent-encoded, and escapes already there are kept.
    """
    kept = [
        part
        for part in request.query_string.split("&")
        if part and unquote_plus(part.partition("=")[0]) != "cursor"
    ]
    return quote("&".join([*kept, f"cursor={cursor}"]), safe=URL_SAFE)


# What the query of a URL may hold as it is (RFC 3986), "%" for escapes already made.
URL_SAFE = "!$&'()*+,;=:@/?-._~%"


def etag(row):
    return f'"{row["version"]}"'


# The request headers WebOb's conditional responses answer.
CONDITIONAL_HEADERS = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_RANGE")


def json_response(value, headers=(), conditional=False):
    """``value`` as a whole JSON response, with ``headers`` added.

    Built at once rather than through the renderer and ``request.response``,
    for the hot paths: point reads and pages. ``conditional``: WebOb answers
    If-None-Match, If-Modified-Since and Range (304, 206).
    """
    body = formats.dump_json(value)
    headerlist = [("Content-Type", formats.JSON), ("Content-Length", str(len(body))), *headers]
    return JSONResponse(app_iter=[body], headerlist=headerlist, conditional_response=conditional)


def with_etag(request, row):
    """``row`` as a JSON response with its ETag; GET and HEAD answer If-None-Match with 304."""
    # WebOb's conditional handling only where there is a condition to check.
    conditional = any(header in request.environ for header in CONDITIONAL_HEADERS)
    return json_response(row, [("ETag", etag(row))], conditional)


def show_row(context, request):
    return with_etag(request, context.row)


@view_config(context=Collection, request_method="POST", permission="write", renderer="json")
async def create_rows(context, request):
    """One object creates one row; an array creates all of its rows or none."""
    body = json_body(request)
    table = context.table
    if isinstance(body, list):
        limit = request.registry.api_body_limits["batch"]
        if not body:
            raise Unprocessable([{"field": "", "message": "the array holds no rows"}])
        if len(body) > limit:
            raise HTTPRequestEntityTooLarge(f"An array may create at most {limit} rows.")
        values = _validate_each(table, body)
        rows = await queries.insert_rows(request.dbsession, table, values)
        request.response.status = 201
        return {"items": rows}
    (row,) = await queries.insert_rows(request.dbsession, table, [validate_row(table, body)])
    request.response.status = 201
    pk = row[queries.primary_key(table).name]
    request.response.location = request.resource_url(context, str(pk))
    request.response.headers["ETag"] = etag(row)
    return row


def _validate_each(table, bodies):
    values, errors = [], []
    for index, body in enumerate(bodies):
        try:
            values.append(validate_row(table, body))
        except Unprocessable as exc:
            errors += [{**e, "field": f"[{index}].{e['field']}".rstrip(".")} for e in exc.errors]
    if errors:
        raise Unprocessable(errors)
    return values


def expected_version(context, request):
    """The version a write may replace: the current one, if If-Match allows it."""
    check_if_match(request)
    current = context.row["version"]
    if "If-Match" not in request.headers:
        if request.registry.api_require_if_match:
            raise HTTPPreconditionRequired("Send If-Match with the row's ETag to write it.")
        return current
    if str(current) not in request.if_match:
        raise HTTPPreconditionFailed(
            "The row has changed since that ETag; fetch it again.",
            headers={"ETag": etag(context.row)},
        )
    return current


async def _write(context, request, values):
    version = expected_version(context, request)
    pk = int(context.__name__)
    row = await queries.update_row(request.dbsession, context.table, pk, values, version)
    if row is None:
        _lost_race(context, request)
    return with_etag(request, row)


def _lost_race(context, request):
    """The row changed (or went) between the read and the write: say which."""
    if "If-Match" in request.headers:
        raise HTTPPreconditionFailed("The row has changed since that ETag; fetch it again.")
    raise HTTPConflict("The row changed while this request ran; try again.")


@view_config(context=Item, request_method="PUT", permission="write", renderer="json")
async def replace_row(context, request):
    values = validate_row(context.table, json_body(request))
    return await _write(context, request, {**writable_defaults(context.table), **values})


@view_config(context=Item, request_method="PATCH", permission="write", renderer="json")
async def patch_row(context, request):
    """RFC 7396 JSON merge patch; JSON columns are merged, not replaced."""
    patch = json_body(request, MERGE_PATCH_TYPES)
    validate_row(context.table, patch, partial=True)
    merged = merge_patch_row(context.table, context.row, patch)
    return await _write(context, request, validate_row(context.table, merged, partial=True))


@view_config(context=Item, request_method="DELETE", permission="write")
async def delete_row(context, request):
    version = expected_version(context, request)
    deleted = await queries.delete_row(
        request.dbsession, context.table, int(context.__name__), version
    )
    if not deleted:
        _lost_race(context, request)
    return HTTPNoContent()


@view_config(context=Root)
@view_config(context=Root, name="__lbheartbeat__")
@view_config(context=Root, name="__heartbeat__")
@view_config(context=Root, name="openapi.json")
@view_config(context=Collection)
@view_config(context=Item)
def method_not_allowed(context, request):
    raise HTTPMethodNotAllowed(headers={"Allow": ", ".join(context.allowed_methods)})


def public_endpoint(name):
    """``GET /{name}``, open to all: health and the API's own description.

    Names start with "_" or hold a dot, which no collection name may (api.resources).
    """
    return view_config(
        context=Root,
        name=name,
        request_method="GET",
        renderer="json",
        permission=NO_PERMISSION_REQUIRED,
    )


@public_endpoint("openapi.json")
def openapi_document(context, request):
    registry = request.registry
    if getattr(registry, "api_openapi", None) is None:
        registry.api_openapi = build_document(registry.api_collections, registry.api_paging["max"])
    return registry.api_openapi


@public_endpoint("__lbheartbeat__")
def liveness(context, request):
    """The process answers; the database is not touched."""
    return {"status": "ok"}


@public_endpoint("__heartbeat__")
async def readiness(context, request):
    """The database answers a round trip within ``db.ping_timeout`` seconds."""
    try:
        await ping(get_reader(request), request.registry.api_ping_timeout)
    except Exception as exc:
        raise DatabaseUnavailable(str(exc)) from exc
    return {"status": "ok", "database": "ok"}


def includeme(config):
    settings = config.registry.settings
    config.add_renderer("json", json_renderer_factory)
    config.set_response_factory(json_response_factory)
    # Views of one context that differ only by method are tried in the order
    # they were added, and each one passed over raises an exception: the
    # reads, the hot path, go first.
    config.add_view(show_row, context=Item, request_method="GET", renderer="json")
    config.add_view(list_rows, context=Collection, request_method="GET")
    config.registry.api_paging = {
        "default": int(settings.get("api.page_limit_default", 50)),
        "max": int(settings.get("api.page_limit_max", 500)),
    }
    # Rows an export reads at a time (queries.stream_list)
    config.registry.api_export_batch = int(settings.get("api.export_batch_rows", 5000))
    config.registry.api_require_if_match = asbool(settings.get("api.require_if_match", False))
    # Signs page cursors. Without a configured secret, cursors last as long as
    # the process (every gunicorn worker shares it: it is made before the fork).
    secret = os.environ.get("API_CURSOR_SECRET") or settings.get("api.cursor_secret")
    config.registry.api_cursor_secret = secret.encode() if secret else secrets.token_bytes(32)
    config.scan(__name__)
