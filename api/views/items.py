"""Item URLs, this API's extension: one row by its key, with its ETag, and
conditional writes to it (PUT, PATCH as a merge patch, DELETE)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from pyramid.httpexceptions import (
    HTTPConflict,
    HTTPNoContent,
    HTTPNotFound,
    HTTPPreconditionFailed,
    HTTPPreconditionRequired,
)
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from api.collections import describe
from api.db.sessions import join_group, may_join_group
from api.errors import BadRequest, not_found
from api.etags import etag
from api.formats import OBJECT_OFFERS, negotiate_among
from api.resources import Item, NoRow
from api.security import BY_METHOD
from api.sql import writes
from api.validation import (
    ANY_ETAG,
    if_match,
    if_none_match,
    merge_patch_row,
    server_owned,
    validate_row,
    writable_defaults,
)
from api.views.bodies import MERGED_ROW_TYPES, ROW_TYPES, row_body
from api.views.pages import keyed_row
from api.views.responses import (
    JSONResponse,
    Row,
    refuse_half_done,
    refuse_read_only,
    with_etag,
)

T = TypeVar("T")


@view_config(context=NoRow, permission=BY_METHOD)
def no_row(context: NoRow, request: Request) -> Response:
    """404 for a segment that names no row (under this parent), whatever the method."""
    return not_found(request)


def show_row(context: Item, request: Request) -> Any:
    """The row, with its ETag; with a query string (``select=...``), as the
    query shapes it (``keyed_row``)."""
    if request.query_string:
        return keyed_row(context, request)
    return with_etag(request, context.table, context.row, negotiate_among(request, OBJECT_OFFERS))


def expected_version(context: Item, request: Request) -> Any:
    """What a write must find to go ahead, once If-Match allows it: the row's
    version, which the write itself checks; None for a table without one,
    whose row this request read under its lock (``FOR UPDATE``)."""
    tags = if_match(request)
    current = etag(context.table, context.row)
    _refuse_if_none_match(request, current)
    if tags is None:
        if request.registry.api_settings.require_if_match:
            raise HTTPPreconditionRequired("Send If-Match with the row's ETag to write it.")
    elif tags != ANY_ETAG and current.strip('"') not in tags:
        raise HTTPPreconditionFailed(
            "The row has changed since that ETag; fetch it again.", headers={"ETag": current}
        )
    return _version_of(context, context.row)


def _refuse_if_none_match(request: Request, current: str) -> None:
    """412 when If-None-Match names the row's ETag, or is "*" (the row
    exists): the client asked to write only where neither holds (RFC 9110
    13.1.2), as in ``PUT`` with ``If-None-Match: *`` to create, never replace."""
    tags = if_none_match(request)
    if tags is not None and (tags == ANY_ETAG or current.strip('"') in tags):
        raise HTTPPreconditionFailed(
            "If-None-Match matched the row as it is; nothing was written.",
            headers={"ETag": current},
        )


async def _write(
    context: Item, request: Request, values_for: Callable[[Row], Row]
) -> JSONResponse:
    """Write ``values_for(row)`` to the row; an answer the client cannot
    take (406) is refused before anything is written."""
    refuse_read_only(context)
    refuse_half_done(context, request)
    media_type = negotiate_among(request, OBJECT_OFFERS)
    if _goes_with_group(context, request):
        written = _write_with_group(context, request, values_for)
        return with_etag(request, context.table, written, media_type)
    session, table, pk = request.dbsession, context.table, context.pk

    async def update(row: Row, version: Any) -> Row | None:
        return await writes.update_row(session, table, pk, values_for(row), version, row)

    written = await _once_more_if_raced(context, request, update)
    return with_etag(request, table, written, media_type)


def _goes_with_group(context: Item, request: Request) -> bool:
    """Whether the write is committed with its group (``api.db.groups``):
    it has If-Match, so a lost race is said and not tried again; it is the
    only write of a transaction pyramid_tm commits; and the row it leaves is
    known without a read."""
    return (
        "HTTP_IF_MATCH" in request.environ
        and may_join_group(request, context.table)
        and writes.known_when_written(context.table)
    )


def _write_with_group(context: Item, request: Request, values_for: Callable[[Row], Row]) -> Row:
    """The row as the write will leave it; the write itself is run when the
    request's transaction commits, with the writes of its group."""
    version = expected_version(context, request)
    written, update = writes.update_for_group(
        context.table, context.pk, values_for(context.row), version, context.row
    )

    join_group(request, update, _settled(context, request))
    return written


def _delete_with_group(context: Item, request: Request) -> None:
    """The row's DELETE, run with its group when the request's transaction
    commits: while the row has the version If-Match named; without
    If-Match, whatever version it has by then, as a DELETE that lost a race
    would go again on the row read anew."""
    checked = "HTTP_IF_MATCH" in request.environ
    version = expected_version(context, request)
    delete = writes.delete_for_group(context.table, context.pk, version, checked)
    join_group(request, delete, _settled(context, request))


def _settled(context: Item, request: Request) -> Callable[[int], None]:
    """What settles a grouped write of the row, once committed: nothing
    when it matched the row, else the lost race said."""

    def settle(matched: int) -> None:
        if matched != 1:  # the version changed, or the row went, since it was read
            _say_lost_race(context, request, request.fetch_row(context.table, context.pk))

    return settle


async def _once_more_if_raced(
    context: Item, request: Request, attempt: Callable[[Row, Any], Awaitable[T | None]]
) -> T:
    """``attempt(row, version)`` on the row as this request read it. The row
    was read without a lock where its version settles it: the write checks
    that version. A request without If-Match whose row changed meanwhile
    goes again, once, on the row read under its lock, as a locked write
    would have; else the lost race is said (404, 412 or 409)."""
    done = await attempt(context.row, expected_version(context, request))
    if not done and "HTTP_IF_MATCH" not in request.environ:
        session = request.dbsession
        current = await writes.load_row(session, context.table, context.pk, for_update=True)
        if current is not None:
            done = await attempt(current, _version_of(context, current))
    if not done:
        await _lost_race(context, request)
    return done


def _version_of(context: Item, row: Row) -> Any:
    version = context.__parent__.description.version
    return None if version is None else row[version.name]


async def _lost_race(context: Item, request: Request) -> NoReturn:
    """The row changed (or went) between the read and the write: say which."""
    current = await writes.load_row(request.dbsession, context.table, context.pk)
    _say_lost_race(context, request, current)


def _say_lost_race(context: Item, request: Request, current: Row | None) -> NoReturn:
    """404 when the row went, else 412 with its ETag (If-Match) or 409."""
    if current is None:
        raise HTTPNotFound()
    if "HTTP_IF_MATCH" in request.environ:
        raise HTTPPreconditionFailed(
            "The row has changed since that ETag; fetch it again.",
            headers={"ETag": etag(context.table, current)},
        )
    raise HTTPConflict("The row changed while this request ran; try again.")


async def replace_row(context: Item, request: Request) -> JSONResponse:
    """The row, replaced by the body. A key the server sets may come in the
    body as the item's own, never another: clients PUT back the row they
    read (react-admin's simple REST), as PostgREST's PUT asks for the key."""
    body = validate_row(context.table, row_body(context.table, request, ROW_TYPES))
    _drop_own_key(context, body)
    values = {**writable_defaults(context.table), **body}
    return await _write(context, request, lambda row: values)


def _drop_own_key(context: Item, values: Row) -> None:
    """Take the server-set key columns out of ``values``; 400 if the body's
    key is not the item's (PostgREST's PGRST115): as the URL spells it, or
    as the row holds it (``USA`` at ``/country/usa``, under a case-blind
    collation). A PUT replaces the row at its URL: one that gave another
    key moved the row away from it."""
    key = describe(context.table).key
    parts = context.pk if len(key) > 1 else (context.pk,)
    for column, part in zip(key, parts, strict=True):
        name = str(column.name)
        given = values.pop(name, part) if server_owned(column) else values.get(name, part)
        if given != part and given != context.row[name]:
            raise BadRequest("The body's primary key differs from the URL's", "body", "PGRST115")


async def patch_row(context: Item, request: Request) -> JSONResponse:
    """RFC 7396 JSON merge patch; JSON columns are merged, not replaced."""
    patch = row_body(context.table, request, MERGED_ROW_TYPES)
    validate_row(context.table, patch, partial=True)

    def merged(row: Row) -> Row:  # on the row as read, or as read again
        return validate_row(
            context.table, merge_patch_row(context.table, row, patch), partial=True
        )

    return await _write(context, request, merged)


async def delete_row(context: Item, request: Request) -> HTTPNoContent:
    refuse_read_only(context)
    refuse_half_done(context, request)
    if may_join_group(request, context.table):
        _delete_with_group(context, request)
        return HTTPNoContent()
    session, table, pk = request.dbsession, context.table, context.pk

    async def delete(row: Row, version: Any) -> bool:
        return await writes.delete_row(session, table, pk, version)

    await _once_more_if_raced(context, request, delete)
    return HTTPNoContent()


ITEM_WRITES = {"PUT": replace_row, "PATCH": patch_row, "DELETE": delete_row}
