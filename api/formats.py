"""Media types of a collection: a JSON page, or the whole result as NDJSON or CSV.

The streamed formats are written in chunks as rows are read, batch by batch
(``reads.lists.stream_rows``), so the memory a response needs stays flat
however many rows there are.
"""

import csv
import io
from datetime import datetime

import orjson
from pyramid.httpexceptions import HTTPNotAcceptable
from pyramid.response import Response

JSON = "application/json"
NDJSON = "application/x-ndjson"
CSV = "text/csv"
OFFERS = (JSON, NDJSON, CSV)
CHUNK_BYTES = 64 * 1024
# How every JSON body is written: datetimes as RFC 3339 UTC ("...Z").
ORJSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def dump_json(value):
    """``value`` as JSON bytes, the way every body of this API is written."""
    return orjson.dumps(value, option=ORJSON_OPTIONS)


def negotiate(request):
    """The best of OFFERS for the Accept header; 406 when none is acceptable."""
    if "Accept" not in request.headers:
        return JSON
    offers = request.accept.acceptable_offers(OFFERS)
    if not offers:
        raise HTTPNotAcceptable(f"This resource can be had as {', '.join(OFFERS)}.")
    return offers[0][0]


def _chunked(lines):
    buffer, size = [], 0
    for line in lines:
        buffer.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield b"".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)


def ndjson_lines(columns, rows):
    keys = [str(column.name) for column in columns]
    for row in rows:
        yield dump_json(dict(zip(keys, row, strict=True))) + b"\n"


def _csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, datetime):
        return dump_json(value).decode().strip('"')
    return value


def csv_lines(columns, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180

    def take():
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text.encode()

    writer.writerow([column.name for column in columns])
    yield take()
    for row in rows:
        writer.writerow([_csv_cell(value) for value in row])
        yield take()


def streaming_response(media_type, columns, rows):
    lines = ndjson_lines(columns, rows) if media_type == NDJSON else csv_lines(columns, rows)
    response = Response(app_iter=_chunked(lines), content_type=media_type, charset=None)
    if media_type == CSV:
        response.content_type_params = {"charset": "utf-8", "header": "present"}
    return response
