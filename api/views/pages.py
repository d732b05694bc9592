"""Reading a collection: a page as a JSON array with Content-Range, one row
as an object (PostgREST's singular media type), or every row as NDJSON or CSV."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pyramid.httpexceptions import HTTPNotAcceptable
from pyramid.request import Request
from pyramid.response import Response

from api import formats
from api.collections import is_spatial
from api.db import get_reader
from api.errors import BadRequest, NotOneRow, RangeNotSatisfiable, not_found
from api.formats import OBJECT_OFFERS, negotiate_among
from api.querystring import (
    ListQuery,
    encode_cursor,
    shown_names,
)
from api.querystring.ordering import may_tie
from api.querystring.params import parse_range, requested_limit
from api.reads.lists import Page, explain_page, read_page, stream_rows
from api.resources import Collection, Item
from api.sql.statements import joins_of, read_as
from api.views.responses import (
    json_response,
    list_query,
    media_typed,
    query_params,
    requested_count,
    rows_response,
    shaped,
)


async def list_rows(context: Collection, request: Request) -> Response:
    """A page of rows as a JSON array, with its place in Content-Range (and
    the whole count, when asked); one row as an object (PostgREST's singular
    media type); or, for NDJSON and CSV, the result streamed (``_export``)."""
    media_type = formats.negotiate(request, context.description.spatial)
    query = list_query(context, request)
    if media_type in formats.STREAMED:
        if query.group_by is not None:
            return await _groups_exported(context, request, query, media_type)
        if query.embeds:
            message = "embedded resources come in JSON pages, and in exports of aggregates"
            raise BadRequest(message, parameter="select")
        return _export(context, request, query, media_type)
    if media_type == formats.SINGULAR:
        return await _single_row(context, request, query)
    if media_type == formats.PLAN:
        return await _plan(request, query)
    geometry = _geometry_of(query) if media_type == formats.GEO_JSON else None
    count = requested_count(request)
    exact_up_to = request.registry.api_settings.page_limit_max
    page = await read_page(get_reader(request), context.table, query, count, exact_up_to)
    next_url = _next_url(context, query, page)
    rows = _without_order_keys(page.rows, query)
    status, headers = _page_status(query, page, next_url)
    rows, headers = shaped(request, rows, headers)
    if geometry is not None:
        response = json_response(_feature_collection(geometry, rows), headers)
        response.headers["Content-Type"] = f"{formats.GEO_JSON}; charset=utf-8"
    else:
        response = media_typed(json_response(rows, headers), request, formats.JSON)
    response.status = status
    return response


def _geometry_of(query: ListQuery) -> str:
    """The member of a row that is its GeoJSON feature's geometry: the first
    spatial column selected, as PostGIS's ``ST_AsGeoJSON(record)`` takes it."""
    for column in query.columns:
        if is_spatial(getattr(column, "element", column)):  # a column, or one renamed
            return str(column.name)
    raise BadRequest("application/geo+json takes a spatial column in select", parameter="select")


def _feature_collection(geometry: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A page as PostgREST's GeoJSON (RFC 7946): a feature a row, the rest
    of the row (embeds too) its properties."""
    features = []
    for row in rows:
        properties = dict(row)
        shape = properties.pop(geometry, None)
        features.append({"type": "Feature", "geometry": shape, "properties": properties})
    return {"type": "FeatureCollection", "features": features}


async def keyed_row(context: Item, request: Request) -> Response:
    """An item URL with a query string: the row as the query shapes it
    (``select``, embeds, renames), read as its collection reads rows, by its
    key; 404 where the query's filters leave it out."""
    key = {str(column.name): context.row[column.name] for column in context.table.primary_key}
    query = list_query(context.__parent__, request, key)
    media_type = negotiate_among(request, OBJECT_OFFERS)
    page = await read_page(get_reader(request), context.table, replace(query, limit=1))
    if not page.rows:
        return not_found(request)
    row, headers = shaped(request, _without_order_keys(page.rows, query)[0])
    return media_typed(json_response(row, headers), request, media_type)


async def _single_row(context: Collection, request: Request, query: ListQuery) -> Response:
    """The one row the query finds, as an object; 406 unless there is exactly
    one. Two rows tell that there is more than one; the client's own limit
    stays when it is below (``.limit(1).single()``, as supabase's docs say)."""
    limit = min(query.limit, 2)
    page = await read_page(get_reader(request), context.table, replace(query, limit=limit))
    if len(page.rows) != 1:
        raise NotOneRow(len(page.rows) if not page.more else None)
    return rows_response(request, _without_order_keys(page.rows, query))


async def _plan(request: Request, query: ListQuery) -> Response:
    """PostgREST's ``application/vnd.pgrst.plan+json``: how the database
    would read this page, where the setting allows telling it."""
    if not request.registry.api_settings.plan_enabled:
        raise HTTPNotAcceptable("Plans are off on this server (api.plan_enabled).")
    plan = await explain_page(get_reader(request), query)
    if "plan+json" in request.environ.get("HTTP_ACCEPT", ""):
        response = json_response(plan)
        response.headers["Content-Type"] = f'{formats.PLAN}; for="{formats.JSON}"'
        return response
    # PostgREST's default is text: the same plan, indented
    text = formats.dump_json(plan, indent=True)
    media_type = f'{formats.PLAN_PREFIX}+text; for="{formats.JSON}"; charset=utf-8'
    return Response(body=text, headerlist=[("Content-Type", media_type)])


def _export(context: Collection, request: Request, query: ListQuery, media_type: str) -> Response:
    """The rows of the query after its ``offset``: the first ``limit`` when
    the client names one (``_export_limit``), else every one."""
    settings = request.registry.api_settings
    batch, timeout = settings.export_batch_rows, settings.db_statement_timeout
    limit = _export_limit(request)
    keyed = bool(context.description.key)
    rows = stream_rows(get_reader(request), query, batch, timeout, limit, keyed)
    return formats.streaming_response(media_type, query.columns, rows)


async def _groups_exported(
    context: Collection, request: Request, query: ListQuery, media_type: str
) -> Response:
    """Groups of aggregates as CSV or NDJSON, which PostgREST answers too:
    read as a page of them (``offset``, ``Range``, counts, Content-Range),
    every group up to ``api.page_limit_max`` without a limit, as PostgREST's
    max-rows bounds its CSV. Groups have no cursor to stream by; an
    embed's object is a JSON cell."""
    settings = request.registry.api_settings
    if _export_limit(request) is None:
        query = replace(query, limit=settings.page_limit_max)
    count = requested_count(request)
    exact_up_to = settings.page_limit_max
    page = await read_page(get_reader(request), context.table, query, count, exact_up_to)
    status, headers = _page_status(query, page, None)
    response = formats.rows_in(media_type, _without_order_keys(page.rows, query), headers)
    response.status = status
    return response


def _export_limit(request: Request) -> int | None:
    """The rows an export stops after, as PostgREST's CSV does: ``limit``,
    else a ``Range`` header's count (which ``list_query`` reads only without
    ``limit`` and ``offset``); None for every row. Not capped by
    ``api.page_limit_max``: an export is not a page."""
    params = query_params(request)
    limit = requested_limit(params, "")
    if limit is not None or "offset" in params:
        return limit
    range_ = parse_range(request.environ.get("HTTP_RANGE"))
    return None if range_ is None else range_[1]


def _next_url(context: Collection, query: ListQuery, page: Page) -> str | None:
    if not page.more or query.group_by is not None:  # groups are paged by offset
        return None
    if not context.description.key and _ends_in_a_tie(query, page):
        # Rows alike in every column of the order are told apart by their
        # place only: the next page is this one's, past its rows.
        cursor = query_params(context.request).get("cursor")
        offset = f"offset={query.offset + len(page.rows)}"
        return context.next_url(f"cursor={cursor}&{offset}" if cursor else offset)
    secret = context.request.registry.api_settings.cursor_secret
    return context.next_url(f"cursor={encode_cursor(query, page.rows[-1], secret)}")


def _ends_in_a_tie(query: ListQuery, page: Page) -> bool:
    """Whether the page's last row may be alike, in every column of its
    order, to the first row of the next (``may_tie``): a table without a
    key has no column that tells them apart."""
    if page.following is None:
        return False
    names = [str(item.column.name) for item in query.order]
    return may_tie(tuple(page.rows[-1][n] for n in names), tuple(page.following[n] for n in names))


def _page_status(
    query: ListQuery, page: Page, next_url: str | None
) -> tuple[int, list[tuple[str, str]]]:
    """The status and headers of a page, as PostgREST gives them: where the
    page lies in ``Content-Range`` (``0-24/*``, or ``0-24/1000`` when
    counted), 206 when a count shows rows left out, 416 (raised) when the
    page starts past the last row; and this API's ``Link: rel="next"`` to
    the next page."""
    first, total = query.offset, None if page.counted is None else page.counted.total
    last = first + len(page.rows) - 1
    shown = f"{first}-{last}" if page.rows and total != 0 else "*"
    headers = [("Content-Range", f"{shown}/{'*' if total is None else total}")]
    status = 200
    if page.counted is not None:
        headers.append(("Preference-Applied", f"count={page.counted.how}"))
        if total is not None and first > total:
            details = f"An offset of {first} was requested, but there are only {total} rows."
            raise RangeNotSatisfiable(details, headers)
        if total is not None and len(page.rows) < total:
            status = 206
    if next_url is not None:
        headers.append(("Link", f'<{next_url}>; rel="next"'))
    return status, headers


def _without_order_keys(rows: list[dict[str, Any]], query: ListQuery) -> list[dict[str, Any]]:
    """The rows with only the selected columns and embeds: order columns were
    read for the cursor, and key columns for the embeds to join on; an
    expression named as one of them was read under a name of its own."""
    keys = shown_names(query.columns, query.embeds)
    renamed = read_as(query.columns, (*(item.column for item in query.order), *joins_of(query)))
    if renamed:
        return [{key: row[renamed.get(key, key)] for key in keys} for row in rows]
    if rows and len(rows[0]) != len(keys):
        return [{key: row[key] for key in keys} for row in rows]
    return rows
