"""Writes to a collection, as PostgREST's: POST (one row, an array, or an
upsert), PUT by the whole key, and PATCH and DELETE by filters, each answering
per ``Prefer: return``."""

from __future__ import annotations

from typing import Any, NamedTuple

from pyramid.request import Request
from pyramid.response import Response

from api import formats
from api.db.engines import engines_of
from api.db.sessions import join_group, may_join_group
from api.errors import BadRequest, TooManyAffected
from api.etags import etag
from api.querystring import Filter, check_names, parse_returned
from api.resources import Collection
from api.sql import filter_writes, grouped, writes
from api.validation import (
    validate_row,
    writable_defaults,
)
from api.views.bodies import (
    MERGED_ROW_TYPES,
    ROW_TYPES,
    check_batch,
    conflict_target,
    missing_as_null,
    only_columns,
    posted_body,
    row_body,
    upsert_resolution,
    validate_each,
)
from api.views.responses import (
    Row,
    list_query,
    preferences,
    query_params,
    refuse_half_done,
    refuse_read_only,
    requested_count,
    rows_response,
)

RETURNS = ("minimal", "headers-only", "representation")


def _return_preference(request: Request) -> str:
    """``Prefer: return=...`` of a write to a collection; PostgREST's default is minimal."""
    prefer = preferences(request)
    return next((r for r in RETURNS if f"return={r}" in prefer), "minimal")


class _Answer(NamedTuple):
    """What a collection write's answer is made of, settled by the request
    alone: its media type, whether it shows the rows, its headers."""

    media_type: str
    shows_rows: bool
    headers: list[tuple[str, str]]
    counted: bool  # Prefer: count=...: the rows written, in Content-Range


def _answer_of(request: Request) -> _Answer:
    """A collection write's answer, as ``Accept`` and ``Prefer: return`` ask
    for it. ``Accept`` is obeyed before ``Prefer``, as PostgREST does: a 406
    even without a body, before anything is written. ``Prefer: tx=rollback``
    dooms the transaction."""
    media_type = formats.negotiate_among(request, formats.WRITTEN_OFFERS)
    returned = _return_preference(request)
    applied = [f"return={returned}"]
    if "missing=default" in preferences(request) and request.method == "POST":
        applied.append("missing=default")
    if "tx=rollback" in preferences(request):
        # PostgREST's dry run: answered as if written, then rolled back.
        request.tm.doom()
        applied.append("tx=rollback")
    count = requested_count(request)
    if count is not None:
        applied.append(f"count={count}")
    headers = [("Preference-Applied", ", ".join(applied))]
    return _Answer(media_type, returned == "representation", headers, count is not None)


def _written(
    request: Request,
    rows: list[Row],
    status: int,
    answer: _Answer | None = None,
    count: int | None = None,
) -> Response:
    """A collection write's answer (``_answer_of``): the rows (one as an
    object, under PostgREST's singular media type; CSV), or no body; with a
    count asked for, how many rows were written (``count``, else as many as
    ``rows``), in ``Content-Range``."""
    media_type, shows_rows, headers, counted = answer or _answer_of(request)
    if counted:
        written = len(rows) if count is None else count
        headers = [*headers, ("Content-Range", _written_range(request.method, written))]
    if not shows_rows:  # with a headerlist, WebOb adds no Content-Type
        return Response(status=204 if status == 200 else status, headerlist=list(headers))
    if media_type == formats.CSV:
        response = formats.csv_response(rows, headers)
    else:
        response = rows_response(request, rows, headers)
    response.status = status
    return response


def _written_range(method: str, count: int) -> str:
    """PostgREST's ``Content-Range`` of a write: ``*/3`` for a POST or a
    DELETE, ``0-2/3`` for a PATCH, where clients read the count after "/"."""
    if method != "PATCH" or not count:
        return f"*/{count}"
    return f"0-{count - 1}/{count}"


async def _answered(context: Collection, request: Request, rows: list[Row]) -> list[Row]:
    """What the answer shows of the rows written, when it shows them: the
    columns and embeds of ``select`` (PostgREST's), in the same transaction."""
    returned = _returned(context, request)
    if returned is None:
        return [*map(context.description.visible, rows)]
    return await filter_writes.returned_rows(request.dbsession, context.table, rows, *returned)


def _returned(context: Collection, request: Request) -> tuple[Any, Any] | None:
    """The columns and embeds of ``select`` a write's answer shows, when it
    shows rows and the request has a select; else None: the rows as they are."""
    params = query_params(request)
    if "select" not in params or _return_preference(request) != "representation":
        return None
    settings = request.registry.api_settings
    columns, embeds = parse_returned(
        context.table, params, settings.page_limit_max, settings.aggregates_enabled
    )
    check_names(columns, [], embeds)  # a name twice (id,id::text): a 400, as for a read
    return columns, embeds


async def create_rows(context: Collection, request: Request) -> Response:
    """One object creates one row; an array creates all of its rows or none.
    Under a parent item, the foreign key is the parent's. With ``Prefer:
    resolution=merge-duplicates`` (or ``ignore-duplicates``), an upsert."""
    refuse_read_only(context)
    body = only_columns(context, request, posted_body(context, request))
    if isinstance(body, list) and "missing=default" not in preferences(request):
        body = missing_as_null(context, request, body)
    table = context.table
    shown = _return_preference(request) == "representation"  # else no rows are read back
    refuse_half_done(context, request, len(body) if isinstance(body, list) else 1)
    resolution = upsert_resolution(request)
    if resolution is not None:
        bodies = body if isinstance(body, list) else [body]
        check_batch(request, bodies)
        target = conflict_target(context, request)
        values = validate_each(context, bodies)
        merge = resolution == "merge-duplicates"
        # Ignoring duplicates, the rows inserted are counted: they are read.
        counted = not merge and requested_count(request) is not None
        rows = await writes.upsert_rows(
            request.dbsession, table, values, target, merge, shown or counted
        )
        count = len(values) if merge else len(rows)
        return _written(request, await _answered(context, request, rows), 201, count=count)
    if isinstance(body, list):
        check_batch(request, body)
        values = validate_each(context, body)
        rows = await writes.insert_rows(request.dbsession, table, values, shown)
        return _written(request, await _answered(context, request, rows), 201, count=len(values))
    (row,) = validate_each(context, [body], prefix=False)
    returned = _returned(context, request)
    if _goes_with_group(context, request, returned):
        return _insert_with_group(context, request, row, returned)
    (row,) = await writes.insert_rows(request.dbsession, table, [row])
    response = _written(request, await _answered(context, request, [row]), 201)
    _locate(context, request, response, row)
    return response


def _locate(context: Collection, request: Request, response: Response, row: Row) -> None:
    """Where a new row went, on the answer to its POST: its URL and ETag."""
    if context.description.key:  # onto the list itself: WebOb's setters cost more
        location = request.application_url + context.item_path(row)
        response.headerlist.extend([("Location", location), ("ETag", etag(context.table, row))])


def _goes_with_group(context: Collection, request: Request, returned: Any) -> bool:
    """Whether a single row's INSERT is committed with its group
    (``api.db.groups``): ``_may_go_with_group``, and the database answers
    the row as stored in the INSERT itself (RETURNING)."""
    return (
        _may_go_with_group(context, request, returned)
        and engines_of(request).on_loop().engine.dialect.insert_returning
    )


def _may_go_with_group(context: Collection, request: Request, returned: Any) -> bool:
    """Whether a write of one row may be committed with its group: its
    transaction may join one, it is not a dry run, and its answer shows no
    more than the row as stored (``returned``: no expressions or embeds to
    read in its transaction)."""
    return (
        may_join_group(request, context.table)
        and "tx=rollback" not in preferences(request)
        and requested_count(request) is None  # a grouped answer is made before it is written
        and (returned is None or filter_writes.shown_as_stored(context.table, *returned))
    )


def _shown(context: Collection, rows: list[Row], returned: Any) -> list[Row]:
    """What a grouped write's answer shows of ``rows``: the columns of its select."""
    if returned is None:
        return [*map(context.description.visible, rows)]
    return filter_writes.shown_of(rows, *returned)


def _insert_with_group(context: Collection, request: Request, row: Row, returned: Any) -> Response:
    """The row's INSERT, run with its group when the request's transaction
    commits. What the answer will be is settled now, so that one the client
    cannot take (406) is refused before anything is written; it is made
    from the row as stored once it is committed."""
    answer = _answer_of(request)
    response = _written(request, [], 201, answer) if not answer.shows_rows else Response()

    def settle(stored: Row) -> None:
        if answer.shows_rows:
            _fill_answer(request, response, _shown(context, [stored], returned), 201, answer)
        _locate(context, request, response, stored)

    join_group(request, grouped.GroupedInsert(context.table, row), settle)
    return response


async def put_where(context: Collection, request: Request) -> Response:
    """PostgREST's PUT: the row the filters name by its whole primary key
    (``?id=eq.5``), created or replaced by the body, which holds the same key."""
    refuse_read_only(context)
    query = list_query(context, request)
    named = _key_named(context, query)
    if named is None:
        raise BadRequest("PUT names one row by filters on its whole primary key: id=eq.1")
    refuse_half_done(context, request)
    body = row_body(context.table, request, ROW_TYPES)
    (values,) = validate_each(context, [body], prefix=False)
    if any(values.get(column.name) != value for column, value in named.items()):
        raise BadRequest("The body's primary key differs from the URL's", "body", "PGRST115")
    values = {**writable_defaults(context.table), **values}
    key = context.description.key
    rows = await writes.upsert_rows(request.dbsession, context.table, [values], key, True)
    return _written(request, await _answered(context, request, rows), 200)


def _key_named(context: Collection, query: Any) -> dict[Any, Any] | None:
    """The key the query's filters name one row by (``id=eq.1``, on each of
    its columns, and nothing else), or None."""
    key = context.description.key
    named = {
        f.column: f.value
        for f in query.filters[len(context.fixed) :]
        if isinstance(f, Filter) and f.operator == "eq" and not f.negated
    }
    if not key or set(named) != set(key) or len(query.filters) != len(context.fixed) + len(key):
        return None
    return named


async def update_where(context: Collection, request: Request) -> Response:
    """PostgREST's PATCH of a collection: the body's values on every row its
    filters match, in one transaction."""
    refuse_read_only(context)
    values = validate_row(
        context.table, row_body(context.table, request, MERGED_ROW_TYPES), partial=True
    )
    query = _write_query(context, request)
    named = _key_named(context, query)
    returned = _returned(context, request)
    if values and named is not None and _update_goes_with_group(context, request, returned):
        return _update_with_group(context, request, query, values, named, returned)
    answer = _answer_of(request)  # a 406 refused before anything is written
    if not values:  # PostgREST's empty PATCH matches no row (WHERE false): nothing read
        return _written(request, [], 200, answer, 0)
    if _in_one_statement(context, request, answer):
        table = context.table
        count = await filter_writes.update_matching(request.dbsession, table, query, values)
        _refuse_beyond_max_affected(request, count)
        return _written(request, [], 200, answer, count)
    rows = await _locked_matches(context, request, query)
    rows = await filter_writes.update_rows(request.dbsession, context.table, rows, values)
    return _written(request, await _answered(context, request, rows), 200, answer)


def _update_goes_with_group(context: Collection, request: Request, returned: Any) -> bool:
    """Whether a PATCH by filters that name one row by its key is one
    UPDATE committed with its group (``api.db.groups``), as supabase-js's
    ``update().eq("id", 1)`` and postgrest-py's ``update().eq()`` send it:
    ``_may_go_with_group``, and nothing bounds the rows it may write. Only
    one row: a group's transaction holds the locks of all its writes, and
    groups that lock ranges of rows in different orders can deadlock."""
    return (
        _may_go_with_group(context, request, returned)
        and _max_affected(request) is None
        and "limit" not in query_params(request)
    )


def _update_with_group(
    context: Collection,
    request: Request,
    query: Any,
    values: Row,
    named: dict[Any, Any],
    returned: Any,
) -> Response:
    """The UPDATE of the row the filters name, run with its group when the
    request's transaction commits. What the answer will be is settled now,
    so that one the client cannot take (406) is refused before anything is
    written; one that shows the row is made from the row as the UPDATE left
    it once committed (none if it matched none)."""
    parts = tuple(named[column] for column in context.description.key)
    pk = parts[0] if len(parts) == 1 else parts
    table = context.table
    answer = _answer_of(request)  # a 406 refused before anything is written
    if not answer.shows_rows:
        update = filter_writes.update_where_for_group(table, query, values, pk)
        join_group(request, update, lambda matched: None)  # one row or none: either is an answer
        return _written(request, [], 200, answer)
    response = Response()

    def settle(stored: Row | None) -> None:
        shown = _shown(context, [] if stored is None else [stored], returned)
        _fill_answer(request, response, shown, 200, answer)

    update = filter_writes.update_where_for_group(table, query, values, pk, shown=True)
    join_group(request, update, settle)
    return response


def _fill_answer(
    request: Request, response: Response, rows: list[Row], status: int, answer: _Answer
) -> None:
    """``response`` made, in place, to show ``rows``: a grouped write's
    answer once its group committed."""
    final = _written(request, rows, status, answer)
    response.status = final.status
    response.headerlist[:] = final.headerlist
    response.body = final.body


async def delete_where(context: Collection, request: Request) -> Response:
    """PostgREST's DELETE of a collection: every row its filters match."""
    refuse_read_only(context)
    query = _write_query(context, request)
    answer = _answer_of(request)  # a 406 refused before anything is written
    if _in_one_statement(context, request, answer):
        count = await filter_writes.delete_matching(request.dbsession, context.table, query)
        _refuse_beyond_max_affected(request, count)
        return _written(request, [], 200, answer, count)
    rows = await _locked_matches(context, request, query)
    answered = await _answered(context, request, rows)  # as they were, as PostgREST's
    await filter_writes.delete_rows(request.dbsession, context.table, rows)
    return _written(request, answered, 200, answer)


COLLECTION_WRITES = {
    "POST": create_rows,
    "PUT": put_where,
    "PATCH": update_where,
    "DELETE": delete_where,
}


def _in_one_statement(context: Collection, request: Request, answer: _Answer) -> bool:
    """Whether a PATCH or DELETE by filters is one statement where they
    match, as PostgREST's: unless its answer shows the rows, or it writes
    the first N of them (``limit``), or to a table that cannot undo a write
    (``refuse_half_done`` counts the rows first). The rows are otherwise
    read first, locked, and all held: a PATCH of 500,000 rows took a worker
    from 87 MB to 533 MB."""
    return (
        not answer.shows_rows
        and "limit" not in query_params(request)
        and context.description.engine_without_transactions is None
    )


async def _locked_matches(context: Collection, request: Request, query: Any) -> list[Row]:
    """The rows ``query`` (``_write_query``) is about, locked; refused beyond
    ``Prefer: max-affected=N`` with ``handling=strict``."""
    # PostgREST's limited update and delete: the first `limit` rows in `order`
    # (the key breaking ties, so that the same rows are meant each time).
    limited = "limit" in query_params(request)
    rows = await filter_writes.locked_rows_where(request.dbsession, context.table, query, limited)
    refuse_half_done(context, request, len(rows))
    _refuse_beyond_max_affected(request, len(rows))
    return rows


def _refuse_beyond_max_affected(request: Request, rows: int) -> None:
    """A 400 for a write of more rows than ``Prefer: max-affected=N`` (with
    ``handling=strict``) allows; raised after the write, it is undone."""
    limit = _max_affected(request)
    if limit is not None and rows > limit:
        raise TooManyAffected(rows, limit)


def _write_query(context: Collection, request: Request) -> Any:
    """The query of a write by filters; refused without a filter, or with an offset."""
    query = list_query(context, request)
    if len(query.filters) == len(context.fixed):
        raise BadRequest(
            "A write to a collection needs a filter; name the rows, e.g. id=eq.1",
            parameter="filter",
        )
    if query.offset:
        raise BadRequest("A write by filters takes a limit, not an offset", parameter="offset")
    return query


def _max_affected(request: Request) -> int | None:
    """``Prefer: max-affected=N``, honoured with ``handling=strict`` (PostgREST's rule)."""
    prefer = preferences(request)
    if "handling=strict" not in prefer:
        return None
    for preference in prefer:
        name, _, value = preference.partition("=")
        if name == "max-affected" and value.isdigit():
            return int(value)
    return None
