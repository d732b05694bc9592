"""Thin views: validate input, call a loader, return plain data.

``async def`` views are awaited by ``api.bridge.integration.await_coroutine_views``; the
``json`` renderer is orjson.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, NoReturn

import sqlalchemy as sa
from pyramid.config import Configurator
from pyramid.httpexceptions import (
    HTTPConflict,
    HTTPMethodNotAllowed,
    HTTPNoContent,
    HTTPPreconditionFailed,
    HTTPPreconditionRequired,
    HTTPRequestEntityTooLarge,
)
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config
from webob.multidict import MultiDict

from api import formats
from api.db import get_reader, ping
from api.errors import BadRequest, DatabaseUnavailable, NotOneRow, TooManyAffected
from api.etags import etag
from api.openapi import build_document, column_schema
from api.querystring import (
    Filter,
    ListQuery,
    encode_cursor,
    parse_list_query,
    parse_query_string,
    parse_range,
)
from api.reads.lists import CountMethod, Page, read_page, stream_rows
from api.resources import Collection, Item, Root
from api.sql import writes
from api.validation import (
    ANY_ETAG,
    MERGE_PATCH_TYPES,
    Unprocessable,
    if_match,
    json_body,
    merge_patch_row,
    validate_row,
    writable_defaults,
)

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


@view_config(context=Root, request_method="GET", renderer="json")
def list_collections(context: Root, request: Request) -> dict[str, Any]:
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


def _preferences(request: Request) -> set[str]:
    """The tokens of the Prefer header (RFC 7240), e.g. {"count=exact"}."""
    return {p.strip() for p in request.headers.get("Prefer", "").split(",") if p.strip()}


def _query_params(request: Request) -> MultiDict:
    """The query's parameters, parsed strictly (not ``request.GET``: WebOb's
    cache of it and the environ refer to each other, a reference cycle per
    request left for the cyclic GC)."""
    return parse_query_string(request.query_string)


async def list_rows(context: Collection, request: Request) -> Response:
    """A page of rows as a JSON array, with its place in Content-Range (and
    the whole count, when asked); one row as an object (PostgREST's singular
    media type); or, for NDJSON and CSV, the whole result streamed."""
    media_type = formats.negotiate(request)
    query = _list_query(context, request)
    if media_type in formats.STREAMED:
        if query.embeds:
            raise BadRequest("embedded resources come in JSON pages only", parameter="select")
        return _export(context, request, query, media_type)
    if media_type == formats.SINGULAR:
        return await _single_row(context, request, query)
    count = _requested_count(request)
    exact_up_to = request.registry.api_settings.page_limit_max
    page = await read_page(get_reader(request), context.table, query, count, exact_up_to)
    next_url = _next_url(context, query, page)
    rows = _without_order_keys(page.rows, query)
    status, headers = _page_status(query, page, next_url)
    response = json_response(rows, headers)
    response.status = status
    return response


async def _single_row(context: Collection, request: Request, query: ListQuery) -> Response:
    """The one row the query finds, as an object; 406 unless there is exactly one."""
    page = await read_page(get_reader(request), context.table, replace(query, limit=2))
    if len(page.rows) != 1:
        raise NotOneRow(len(page.rows) if not page.more else None)
    (row,) = _without_order_keys(page.rows, query)
    response = json_response(row)
    response.content_type = formats.SINGULAR
    return response


def _list_query(context: Collection, request: Request) -> ListQuery:
    settings = request.registry.api_settings
    fixed = tuple(Filter(context.table.columns[n], "eq", v) for n, v in context.fixed.items())
    return parse_list_query(
        context.table,
        _query_params(request),
        default_limit=settings.page_limit_default,
        max_limit=settings.page_limit_max,
        cursor_secret=settings.cursor_secret,
        fixed=fixed,
        range_=parse_range(request.headers.get("Range")),
    )


def _export(context: Collection, request: Request, query: ListQuery, media_type: str) -> Response:
    """Every row of the query: ``limit`` and ``offset`` do not apply."""
    settings = request.registry.api_settings
    batch, timeout = settings.export_batch_rows, settings.db_statement_timeout
    rows = stream_rows(get_reader(request), replace(query, offset=0), batch, timeout)
    return formats.streaming_response(media_type, query.columns, rows)


def _requested_count(request: Request) -> CountMethod | None:
    preferences = _preferences(request)
    for method in COUNT_METHODS:
        if f"count={method}" in preferences:
            return method
    return None


COUNT_METHODS: tuple[CountMethod, ...] = ("exact", "planned", "estimated")


def _next_url(context: Collection, query: ListQuery, page: Page) -> str | None:
    if not page.more:
        return None
    secret = context.request.registry.api_settings.cursor_secret
    return context.next_url(encode_cursor(query, page.rows[-1], secret))


def _page_status(
    query: ListQuery, page: Page, next_url: str | None
) -> tuple[int, list[tuple[str, str]]]:
    """The status and headers of a page, as PostgREST gives them: where the
    page lies in ``Content-Range`` (``0-24/*``, or ``0-24/1000`` when
    counted), 206 when a count shows rows left out, 416 when the page starts
    past the last row; and this API's ``Link: rel="next"`` to the next page."""
    first, total = query.offset, None if page.counted is None else page.counted.total
    last = first + len(page.rows) - 1
    shown = f"{first}-{last}" if page.rows and total != 0 else "*"
    headers = [("Content-Range", f"{shown}/{'*' if total is None else total}")]
    status = 200
    if page.counted is not None:
        headers.append(("Preference-Applied", f"count={page.counted.how}"))
        if total is not None and first > total:
            status = 416
        elif total is not None and len(page.rows) < total:
            status = 206
    if next_url is not None:
        headers.append(("Link", f'<{next_url}>; rel="next"'))
    return status, headers


def _without_order_keys(rows: list[dict[str, Any]], query: ListQuery) -> list[dict[str, Any]]:
    """The rows with only the selected columns and embeds: order columns were
    read for the cursor, and key columns for the embeds to join on."""
    keys = [str(column.name) for column in query.columns] + [e.key for e in query.embeds]
    if rows and len(rows[0]) != len(keys):
        return [{key: row[key] for key in keys} for row in rows]
    return rows


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


def with_etag(request: Request, table: sa.Table, row: Row) -> JSONResponse:
    """``row`` as a JSON response with its ETag; GET and HEAD answer If-None-Match with 304."""
    # WebOb's conditional handling only where there is a condition to check.
    conditional = any(header in request.environ for header in CONDITIONAL_HEADERS)
    return json_response(row, [("ETag", etag(table, row))], conditional)


def show_row(context: Item, request: Request) -> JSONResponse:
    return with_etag(request, context.table, context.row)


RETURNS = ("minimal", "headers-only", "representation")


def _return_preference(request: Request) -> str:
    """``Prefer: return=...`` of a write to a collection; PostgREST's default is minimal."""
    preferences = _preferences(request)
    return next((r for r in RETURNS if f"return={r}" in preferences), "minimal")


def _written(request: Request, rows: list[Row], status: int) -> Response:
    """A collection write's answer, as ``Prefer: return`` asks: the rows
    (one as an object, under PostgREST's singular media type), or no body."""
    returned = _return_preference(request)
    headers = [("Preference-Applied", f"return={returned}")]
    if returned != "representation":
        response = Response(status=204 if status == 200 else status, headerlist=headers)
        response.content_type = None
        return response
    if formats.SINGULAR in request.headers.get("Accept", ""):
        if len(rows) != 1:
            raise NotOneRow(len(rows))  # and the transaction is rolled back
        response = json_response(rows[0], headers)
        response.content_type = formats.SINGULAR
    else:
        response = json_response(rows, headers)
    response.status = status
    return response


@view_config(context=Collection, request_method="POST", permission="write")
async def create_rows(context: Collection, request: Request) -> Response:
    """One object creates one row; an array creates all of its rows or none.
    Under a parent item, the foreign key is the parent's. With ``Prefer:
    resolution=merge-duplicates`` (or ``ignore-duplicates``), an upsert."""
    refuse_read_only(context)
    body = _only_columns(context, request, json_body(request))
    table = context.table
    resolution = _resolution(request)
    if resolution is not None:
        bodies = body if isinstance(body, list) else [body]
        _check_batch(request, bodies)
        target = _conflict_target(context, request)
        values = _validate_each(context, bodies, keyed=True)
        merge = resolution == "merge-duplicates"
        rows = await writes.upsert_rows(request.dbsession, table, values, target, merge)
        return _written(request, rows, 201)
    if isinstance(body, list):
        _check_batch(request, body)
        values = _validate_each(context, body)
        return _written(request, await writes.insert_rows(request.dbsession, table, values), 201)
    (row,) = await writes.insert_rows(
        request.dbsession, table, _validate_each(context, [body], prefix=False)
    )
    response = _written(request, [row], 201)
    if context.description.key:
        response.location = request.application_url + context.item_path(row)
        response.headers["ETag"] = etag(table, row)
    return response


@view_config(context=Collection, request_method="PUT", permission="write")
async def put_where(context: Collection, request: Request) -> Response:
    """PostgREST's PUT: the row the filters name by its whole primary key
    (``?id=eq.5``), created or replaced by the body, which holds the same key."""
    refuse_read_only(context)
    query = _list_query(context, request)
    key = context.description.key
    named = {
        f.column: f.value
        for f in query.filters[len(context.fixed) :]
        if isinstance(f, Filter) and f.operator == "eq" and not f.negated
    }
    if not key or set(named) != set(key) or len(query.filters) != len(context.fixed) + len(key):
        raise BadRequest("PUT names one row by filters on its whole primary key: id=eq.1")
    body = json_body(request)
    (values,) = _validate_each(context, [body], prefix=False, keyed=True)
    if any(values.get(column.name) != value for column, value in named.items()):
        raise BadRequest("The body's primary key differs from the URL's", "body")
    values = {**writable_defaults(context.table), **values}
    rows = await writes.upsert_rows(request.dbsession, context.table, [values], key, True)
    return _written(request, rows, 200)


@view_config(context=Collection, request_method="PATCH", permission="write")
async def update_where(context: Collection, request: Request) -> Response:
    """PostgREST's PATCH of a collection: the body's values on every row its
    filters match, in one transaction."""
    refuse_read_only(context)
    values = validate_row(context.table, json_body(request, MERGE_PATCH_TYPES), partial=True)
    rows = await _locked_matches(context, request)
    return _written(
        request, await writes.update_rows(request.dbsession, context.table, rows, values), 200
    )


@view_config(context=Collection, request_method="DELETE", permission="write")
async def delete_where(context: Collection, request: Request) -> Response:
    """PostgREST's DELETE of a collection: every row its filters match."""
    refuse_read_only(context)
    rows = await _locked_matches(context, request)
    await writes.delete_rows(request.dbsession, context.table, rows)
    return _written(request, rows, 200)


async def _locked_matches(context: Collection, request: Request) -> list[Row]:
    """The rows a write by filters is about, locked; refused without a filter
    in the query, and beyond ``Prefer: max-affected=N`` with ``handling=strict``."""
    query = _list_query(context, request)
    if len(query.filters) == len(context.fixed):
        raise BadRequest(
            "A write to a collection needs a filter; name the rows, e.g. id=eq.1",
            parameter="filter",
        )
    rows = await writes.locked_rows_where(request.dbsession, context.table, query)
    limit = _max_affected(request)
    if limit is not None and len(rows) > limit:
        raise TooManyAffected(len(rows), limit)
    return rows


def _max_affected(request: Request) -> int | None:
    """``Prefer: max-affected=N``, honoured with ``handling=strict`` (PostgREST's rule)."""
    preferences = _preferences(request)
    if "handling=strict" not in preferences:
        return None
    for preference in preferences:
        name, _, value = preference.partition("=")
        if name == "max-affected" and value.isdigit():
            return int(value)
    return None


def _only_columns(context: Collection, request: Request, body: Any) -> Any:
    """PostgREST's ``columns=a,b``: only those members of each row are read;
    the others are ignored (and a listed one left out takes its default)."""
    text = _query_params(request).get("columns")
    if text is None:
        return body
    names = [name.strip().strip('"') for name in text.split(",")]  # clients quote them
    unknown = [name for name in names if name not in context.table.columns]
    if unknown or not all(names):
        raise BadRequest(f"'columns' names what is not a column: {unknown}", "columns")
    rows = body if isinstance(body, list) else [body]
    kept = [
        {name: row[name] for name in names if name in row} if isinstance(row, dict) else row
        for row in rows
    ]
    return kept if isinstance(body, list) else kept[0]


def _check_batch(request: Request, bodies: list[Any]) -> None:
    """An array of rows: not empty, and at most ``api.max_batch_rows`` (413)."""
    limit = request.registry.api_settings.max_batch_rows
    if not bodies:
        raise Unprocessable([{"field": "", "message": "the array holds no rows"}])
    if len(bodies) > limit:
        raise HTTPRequestEntityTooLarge(f"An array may create at most {limit} rows.")


def _resolution(request: Request) -> str | None:
    """``Prefer: resolution=merge-duplicates|ignore-duplicates``: an upsert."""
    preferences = _preferences(request)
    return next((r for r in RESOLUTIONS if f"resolution={r}" in preferences), None)


RESOLUTIONS = ("merge-duplicates", "ignore-duplicates")


def _conflict_target(context: Collection, request: Request) -> tuple[sa.Column[Any], ...]:
    """``on_conflict=a,b``: the unique key an upsert matches rows by; the
    primary key by default."""
    table = context.table
    text = _query_params(request).get("on_conflict")
    if text is None:
        if not context.description.key:
            raise BadRequest("an upsert needs on_conflict: this table has no key", "on_conflict")
        return context.description.key
    names = [name.strip() for name in text.split(",")]
    columns = tuple(table.columns[n] for n in names if n in table.columns)
    unique = [set(context.description.key)]
    unique += [set(c.columns) for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    unique += [set(index.columns) for index in table.indexes if index.unique]
    if len(columns) != len(names) or set(columns) not in unique:
        raise BadRequest("on_conflict names the columns of a unique key", "on_conflict")
    return columns


def _validate_each(
    context: Collection, bodies: list[Any], prefix: bool = True, keyed: bool = False
) -> list[Row]:
    """Each body's values, with a child collection's foreign key; 422 for any bad field."""
    values, errors = [], []
    for index, body in enumerate(bodies):
        try:
            row = validate_row(context.table, body, provided=context.fixed, keyed=keyed)
            values.append(_with_parent(context, row))
        except Unprocessable as exc:
            where = f"[{index}]." if prefix else ""
            errors += [{**e, "field": f"{where}{e['field']}".rstrip(".")} for e in exc.errors]
    if errors:
        raise Unprocessable(errors)
    return values


def _with_parent(context: Collection, values: Row) -> Row:
    """``values`` with the foreign key of the parent item they are created under."""
    clashes = [
        {"field": name, "message": "is set by the parent in the URL"}
        for name, value in context.fixed.items()
        if name in values and values[name] != value
    ]
    if clashes:
        raise Unprocessable(clashes)
    return {**values, **context.fixed}


def refuse_read_only(context: Collection | Item) -> None:
    """405 for a write to a view (or a table served read-only)."""
    collection = context if isinstance(context, Collection) else context.__parent__
    if collection.description.read_only:
        raise HTTPMethodNotAllowed(headers={"Allow": ", ".join(context.allowed_methods)})


def expected_version(context: Item, request: Request) -> Any:
    """What a write must find to go ahead, once If-Match allows it: the row's
    version, which the write itself checks; None for a table without one,
    whose row this request read under its lock (``FOR UPDATE``)."""
    tags = if_match(request)
    current = etag(context.table, context.row)
    if tags is None:
        if request.registry.api_settings.require_if_match:
            raise HTTPPreconditionRequired("Send If-Match with the row's ETag to write it.")
    elif tags != ANY_ETAG and current.strip('"') not in tags:
        raise HTTPPreconditionFailed(
            "The row has changed since that ETag; fetch it again.", headers={"ETag": current}
        )
    version = context.__parent__.description.version
    return None if version is None else context.row[version.name]


async def _write(context: Item, request: Request, values: Row) -> JSONResponse:
    refuse_read_only(context)
    version = expected_version(context, request)
    row = await writes.update_row(request.dbsession, context.table, context.pk, values, version)
    if row is None:
        _lost_race(context, request)
    return with_etag(request, context.table, row)


def _lost_race(context: Item, request: Request) -> NoReturn:
    """The row changed (or went) between the read and the write: say which."""
    if "If-Match" in request.headers:
        raise HTTPPreconditionFailed("The row has changed since that ETag; fetch it again.")
    raise HTTPConflict("The row changed while this request ran; try again.")


@view_config(context=Item, request_method="PUT", permission="write", renderer="json")
async def replace_row(context: Item, request: Request) -> JSONResponse:
    values = validate_row(context.table, json_body(request))
    return await _write(context, request, {**writable_defaults(context.table), **values})


@view_config(context=Item, request_method="PATCH", permission="write", renderer="json")
async def patch_row(context: Item, request: Request) -> JSONResponse:
    """RFC 7396 JSON merge patch; JSON columns are merged, not replaced."""
    patch = json_body(request, MERGE_PATCH_TYPES)
    validate_row(context.table, patch, partial=True)
    merged = merge_patch_row(context.table, context.row, patch)
    return await _write(context, request, validate_row(context.table, merged, partial=True))


@view_config(context=Item, request_method="DELETE", permission="write")
async def delete_row(context: Item, request: Request) -> HTTPNoContent:
    refuse_read_only(context)
    version = expected_version(context, request)
    deleted = await writes.delete_row(request.dbsession, context.table, context.pk, version)
    if not deleted:
        _lost_race(context, request)
    return HTTPNoContent()


@view_config(context=Root)
@view_config(context=Root, name="__lbheartbeat__")
@view_config(context=Root, name="__heartbeat__")
@view_config(context=Root, name="openapi.json")
@view_config(context=Collection)
@view_config(context=Item)
def method_not_allowed(context: Any, request: Request) -> NoReturn:
    raise HTTPMethodNotAllowed(headers={"Allow": ", ".join(context.allowed_methods)})


def public_endpoint(name: str) -> Any:
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
def openapi_document(context: Root, request: Request) -> Any:
    registry = request.registry
    if getattr(registry, "api_openapi", None) is None:
        limit = registry.api_settings.page_limit_max
        registry.api_openapi = build_document(registry.api_collections, limit)
    return registry.api_openapi


@public_endpoint("__lbheartbeat__")
def liveness(context: Root, request: Request) -> dict[str, str]:
    """The process answers; the database is not touched."""
    return {"status": "ok"}


@public_endpoint("__heartbeat__")
async def readiness(context: Root, request: Request) -> dict[str, str]:
    """The database answers a round trip within ``db.ping_timeout`` seconds."""
    try:
        await ping(get_reader(request), request.registry.api_settings.db_ping_timeout)
    except Exception as exc:
        raise DatabaseUnavailable(str(exc)) from exc
    return {"status": "ok", "database": "ok"}


def includeme(config: Configurator) -> None:
    config.add_renderer("json", json_renderer_factory)
    config.set_response_factory(json_response_factory)
    # Views of one context that differ only by method are tried in the order
    # they were added, and each one passed over raises an exception: the
    # reads, the hot path, go first.
    config.add_view(show_row, context=Item, request_method="GET", renderer="json")
    config.add_view(list_rows, context=Collection, request_method="GET")
    config.scan(__name__)
