"""Media types of a collection: a JSON page, or the result as NDJSON or CSV.

The streamed formats are written in chunks as rows are read, batch by batch
(``reads.lists.stream_rows``), so the memory a response needs stays flat
however many rows there are.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from pyramid.httpexceptions import HTTPNotAcceptable
from pyramid.request import Request
from pyramid.response import Response
from webob.acceptparse import create_accept_header

from api.columns import json_default
from api.errors import HeaderTooLarge

Columns = Sequence[sa.Column[Any]]
Rows = Iterable[Sequence[Any]]


JSON = "application/json"
JSON_UTF8 = "application/json; charset=utf-8"
NDJSON = "application/x-ndjson"
CSV = "text/csv"
# An HTML form's body, or curl -d's: PostgREST takes it as one row of text.
FORM = "application/x-www-form-urlencoded"
# PostgREST's: one row as an object, 406 unless there is exactly one.
SINGULAR = "application/vnd.pgrst.object+json"
# PostgREST's name for a JSON array of rows, and the parameter that strips
# the members that are null.
ARRAY = "application/vnd.pgrst.array+json"
STRIPPED = "nulls=stripped"
# PostgREST's GeoJSON: a page as a FeatureCollection, offered where a table
# has a spatial column.
GEO_JSON = "application/geo+json"
# PostgREST's execution plan of a read (off unless api.plan_enabled).
PLAN = "application/vnd.pgrst.plan+json"
PLAN_PREFIX = "application/vnd.pgrst.plan"
OFFERS = (
    JSON,
    NDJSON,
    CSV,
    SINGULAR,
    ARRAY,
    f"{ARRAY};{STRIPPED}",
    f"{SINGULAR};{STRIPPED}",
    PLAN,
)
SPATIAL_OFFERS = (*OFFERS, GEO_JSON)
# What other answers offer (``negotiate_among``). One row as an object, an
# item's: no array, no stream.
OBJECT_OFFERS = (JSON, SINGULAR)
# A write's answer, and a routine's: JSON as a page's, or CSV (PostgREST's);
# no stream, no plan.
WRITTEN_OFFERS = tuple(offer for offer in OFFERS if offer not in (NDJSON, PLAN))
# The OpenAPI description: as PostgREST's root, JSON under either name.
DESCRIBED_OFFERS = (JSON, "application/openapi+json")
MAX_ACCEPT_CHARS = 4096  # browsers send under 200
STREAMED = frozenset({NDJSON, CSV})
CSV_PARAMETERS = {"charset": "utf-8", "header": "present"}  # RFC 4180's
CHUNK_BYTES = 64 * 1024
# How every JSON body is written: datetimes as RFC 3339 UTC ("...Z").
ORJSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def dump_json(value: Any, sort_keys: bool = False, indent: bool = False) -> bytes:
    """``value`` as JSON bytes, the way every body of this API is written
    (each column type as ``api.columns`` maps it)."""
    if indent:
        return orjson.dumps(
            value, default=json_default, option=ORJSON_OPTIONS | orjson.OPT_INDENT_2
        )
    if sort_keys:
        return orjson.dumps(
            value, default=json_default, option=ORJSON_OPTIONS | orjson.OPT_SORT_KEYS
        )
    return orjson.dumps(value, default=json_default, option=ORJSON_OPTIONS)


def negotiate(request: Request, spatial: bool = False) -> str:
    """A collection's read: the best of OFFERS (``negotiate_among``), and
    GeoJSON too for a ``spatial`` table's."""
    accept = request.environ.get("HTTP_ACCEPT")
    if accept is not None and PLAN_PREFIX in accept:  # its for= and options= name no other offer
        return PLAN
    return negotiate_among(request, SPATIAL_OFFERS if spatial else OFFERS)


def negotiate_among(request: Request, offers: tuple[str, ...]) -> str:
    """The best of ``offers`` for the Accept header, without its parameters
    (PostgREST's array is JSON); 406 when none is acceptable, 431 for an
    Accept too long to read."""
    accept = request.environ.get("HTTP_ACCEPT")
    if accept is None or accept in ("*/*", JSON):  # most clients: no negotiation to do
        return JSON
    if len(accept) > MAX_ACCEPT_CHARS:
        # WebOb's parse grows with the header: a long one would be a cheap way to busy a worker.
        raise HeaderTooLarge(f"The Accept header may hold at most {MAX_ACCEPT_CHARS} characters.")
    best = _best_offer(accept, offers)
    if best is None:
        raise HTTPNotAcceptable(f"This resource can be had as {', '.join(offers)}.")
    media_type = best.partition(";")[0]
    return JSON if media_type == ARRAY else media_type


@functools.lru_cache(maxsize=256)
def _best_offer(accept: str, offers: tuple[str, ...]) -> str | None:
    """The best of ``offers`` for an Accept header's value, or None, worked
    out once a value: WebOb would parse the header anew on every request."""
    acceptable = create_accept_header(accept).acceptable_offers(offers)
    return str(acceptable[0][0]) if acceptable else None


def nulls_stripped(media_type: str) -> str:
    """The media type PostgREST answers rows with nulls stripped as."""
    return f"{ARRAY if media_type == JSON else media_type};{STRIPPED}"


def _chunked(lines: Iterable[bytes]) -> Iterator[bytes]:
    buffer, size = [], 0
    for line in lines:
        buffer.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield b"".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)


def ndjson_lines(columns: Columns, rows: Rows) -> Iterator[bytes]:
    keys = [str(column.name) for column in columns]
    for row in rows:
        yield dump_json(dict(zip(keys, row, strict=True))) + b"\n"


def _csv_cell(value: Any) -> Any:
    """A value as its JSON text (strings without their quotes), NULL as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    text = dump_json(value).decode()
    # Only the JSON strings of non-string values (times, base64) are left to unquote.
    return text[1:-1] if text.startswith('"') else text


def csv_lines(columns: Columns, rows: Rows) -> Iterator[bytes]:
    return _csv_lines([str(column.name) for column in columns], rows)


def csv_of_rows(rows: Sequence[dict[str, Any]]) -> bytes:
    """Rows as one CSV body, under the first row's keys, as PostgREST writes
    it: no rows, no header (an empty line)."""
    if not rows:
        return b"\r\n"
    names = list(rows[0])
    return b"".join(_csv_lines(names, ([row.get(name) for name in names] for row in rows)))


def rows_in(
    media_type: str, rows: Sequence[dict[str, Any]], headers: Iterable[tuple[str, str]]
) -> Response:
    """Rows read whole (not streamed) as CSV (``csv_response``) or NDJSON."""
    if media_type == CSV:
        return csv_response(rows, headers)
    body = b"".join(dump_json(row) + b"\n" for row in rows)
    response = Response(body=body, headerlist=list(headers))
    response.content_type = NDJSON
    return response


def csv_response(rows: Sequence[dict[str, Any]], headers: Iterable[tuple[str, str]]) -> Response:
    """Rows as a whole CSV response (``csv_of_rows``), with ``headers``."""
    response = Response(body=csv_of_rows(rows), headerlist=list(headers))
    response.content_type = CSV
    response.content_type_params = CSV_PARAMETERS
    return response


def _csv_lines(names: Sequence[str], rows: Rows) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180

    def take() -> bytes:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text.encode()

    writer.writerow(names)
    yield take()
    for row in rows:
        writer.writerow([_csv_cell(value) for value in row])
        yield take()


def streaming_response(media_type: str, columns: Columns, rows: Rows) -> Response:
    lines = ndjson_lines(columns, rows) if media_type == NDJSON else csv_lines(columns, rows)
    response = Response(app_iter=_chunked(lines), content_type=media_type, charset=None)
    if media_type == CSV:
        response.content_type_params = CSV_PARAMETERS
    return response
