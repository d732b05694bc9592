"""What the body of a write holds, as PostgREST reads it: JSON, CSV or
form rows, the members ``columns=`` names, missing ones as null or
their default, an array's size, an upsert's resolution and conflict target,
and each row validated, with the foreign key of the parent item it is
created under."""

from __future__ import annotations

import csv
import io
from typing import Any

import sqlalchemy as sa
from pyramid.httpexceptions import HTTPRequestEntityTooLarge
from pyramid.request import Request

from api import columns, formats
from api.bridge import give_way
from api.collections import unique_keys
from api.errors import BadRequest
from api.resources import Collection
from api.validation import (
    JSON_TYPES,
    MERGE_PATCH_TYPES,
    Unprocessable,
    form_fields,
    json_body,
    parse_json,
    validate_row,
)
from api.views.responses import Row, preferences, query_params

# What a body of one row may be: JSON (or a merge patch), or a form.
ROW_TYPES = frozenset({*JSON_TYPES, formats.FORM})
MERGED_ROW_TYPES = frozenset({*MERGE_PATCH_TYPES, formats.FORM})
POSTED_TYPES = frozenset({*ROW_TYPES, formats.CSV})


def row_body(table: sa.Table, request: Request, allowed_types: frozenset[str]) -> Any:
    """A body that holds one row, of ``allowed_types``: JSON, or a form's
    fields (PostgREST's ``application/x-www-form-urlencoded``), each read
    from its text by its column's type, as a CSV cell is; a form has no null."""
    if request.content_type != formats.FORM:
        return json_body(request, allowed_types)
    return {
        name: _text_reader(table, name, null=None, max_depth=None)(text)
        for name, text in form_fields(request).items()
    }


def posted_body(context: Collection, request: Request) -> Any:
    """A POST's body: JSON (a row, or an array of rows), or CSV, PostgREST's
    bulk insert: a header row of column names, then a record for each row,
    read as an array. A cell ``NULL`` is null; an empty one is an empty string.
    Or a form's fields, one row."""
    if request.content_type != formats.CSV:
        return row_body(context.table, request, POSTED_TYPES)
    try:  # a byte order mark, as Excel's "CSV UTF-8" starts with, is dropped
        text = request.body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("The CSV body is not UTF-8.", "body") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        names = next(reader, None)
        if not names or len(set(names)) != len(names):
            raise BadRequest("A CSV body starts with a row of distinct column names.", "body")
        unknown = [name for name in names if name not in context.table.columns]
        if unknown:  # said even when no record follows
            message = "is not a column of this table"
            raise Unprocessable([{"field": name, "message": message} for name in unknown])
        settings = request.registry.api_settings
        depth = settings.max_json_depth - 2
        cells = [_text_reader(context.table, name, "NULL", depth) for name in names]
        rows: list[dict[str, Any]] = []
        for count, record in enumerate(reader):
            if count % ROWS_A_CHECK == 0:
                give_way()
            if record:  # a blank line
                rows.append(_csv_row(names, cells, record, reader.line_num))
                if len(rows) > settings.max_batch_rows:  # refused before the rest is read
                    check_batch(request, rows)
    except csv.Error as exc:
        message = f"The CSV body is not valid CSV, line {reader.line_num}: {exc}."
        raise BadRequest(message, "body") from None
    return rows


def _csv_row(names: list[str], cells: list[Any], record: list[str], line: int) -> dict[str, Any]:
    if len(record) != len(names):
        message = (
            f"Line {line} of the CSV body has {len(record)} of the header's {len(names)} fields."
        )
        raise BadRequest(message, "body")
    try:
        return {name: read(text) for name, read, text in zip(names, cells, record, strict=True)}
    except BadRequest as exc:  # a JSON cell that does not parse
        raise BadRequest(f"Line {line}: {exc.detail}", "body") from None


def _text_reader(table: sa.Table, name: str, null: str | None, max_depth: int | None) -> Any:
    """How a CSV cell or a form field of column ``name`` reads as the JSON
    value a body would hold: a number's or a boolean's from its text, or
    left as text for validation to refuse; a SET's as MySQL writes it
    (``a,b``); a JSON or spatial column's as JSON text when ``max_depth``
    is given, and a SET's as a JSON array too, as this API's CSV writes
    them, else as the text it is; any other as the text it is. The text
    ``null`` is null."""
    column = table.columns.get(name)
    kind = None if column is None else columns.mapping(column)
    what = f"A CSV cell of '{name}'"
    if max_depth is not None and (kind is columns.JSON or kind is columns.GEOJSON):
        return lambda text: None if text == null else parse_json(text, max_depth, what)
    if kind is columns.SET:

        def members(text: str) -> Any:
            if text == null:
                return None
            if max_depth is not None and text.startswith("["):
                return parse_json(text, 1, what)
            return text.split(",") if text else []

        return members
    if column is None or kind not in columns.READ_FROM_TEXT:
        return lambda text: None if text == null else text
    from_text = kind.from_text

    def number(text: str) -> Any:
        if text == null:
            return None
        try:
            return from_text(column, text)
        except (ValueError, OverflowError):
            return text

    return number


def only_columns(context: Collection, request: Request, body: Any) -> Any:
    """PostgREST's ``columns=a,b``: only those members of each row are read;
    the others are ignored (and a listed one left out takes its default)."""
    text = query_params(request).get("columns")
    if text is None:
        return body
    names = [name.strip().strip('"') for name in text.split(",")]  # clients quote them
    unknown = [name for name in names if name not in context.table.columns]
    if unknown or not all(names):
        unknown_names = ", ".join(unknown) or "an empty name"
        message = f"'columns' names what is not a column of {context.table.name}: {unknown_names}"
        raise BadRequest(message, "columns", "PGRST204")
    rows = body if isinstance(body, list) else [body]
    kept = [
        {name: row[name] for name in names if name in row} if isinstance(row, dict) else row
        for row in rows
    ]
    return kept if isinstance(body, list) else kept[0]


def missing_as_null(context: Collection, request: Request, rows: list[Any]) -> list[Any]:
    """PostgREST's bulk insert: each row of an array gives every column that
    ``columns=`` names, else that any of its rows gives; one it leaves out is
    null. ``Prefer: missing=default`` gives it its default instead. A row
    that gives them all, in that order, is kept as it is."""
    named = query_params(request).get("columns")
    shapes = dict.fromkeys(tuple(row) for row in rows if isinstance(row, dict))
    names = (
        [name.strip().strip('"') for name in named.split(",")]
        if named is not None
        else list(dict.fromkeys(key for shape in shapes for key in shape))
    )
    every = tuple(names)
    if len(shapes) == 1 and every in shapes:  # the usual array: nothing to add
        return rows
    return [
        {**dict.fromkeys(names), **row} if isinstance(row, dict) and tuple(row) != every else row
        for row in rows
    ]


def check_batch(request: Request, bodies: list[Any]) -> None:
    """An array of rows: at most ``api.max_batch_rows`` (413). An empty one
    writes nothing and answers ``[]``, as PostgREST's."""
    limit = request.registry.api_settings.max_batch_rows
    if len(bodies) > limit:
        raise HTTPRequestEntityTooLarge(f"An array may create at most {limit} rows.")


def upsert_resolution(request: Request) -> str | None:
    """``Prefer: resolution=merge-duplicates|ignore-duplicates``: an upsert."""
    prefer = preferences(request)
    return next((r for r in RESOLUTIONS if f"resolution={r}" in prefer), None)


RESOLUTIONS = ("merge-duplicates", "ignore-duplicates")


def conflict_target(context: Collection, request: Request) -> tuple[sa.Column[Any], ...]:
    """``on_conflict=a,b``: the unique key an upsert matches rows by; the
    primary key by default."""
    table = context.table
    text = query_params(request).get("on_conflict")
    if text is None:
        if not context.description.key:
            raise BadRequest("an upsert needs on_conflict: this table has no key", "on_conflict")
        return context.description.key
    names = [name.strip() for name in text.split(",")]
    columns = tuple(table.columns[n] for n in names if n in table.columns)
    unique = [set(context.description.key), *(set(key) for _, key in unique_keys(table))]
    if len(columns) != len(names) or set(columns) not in unique:
        raise BadRequest("on_conflict names the columns of a unique key", "on_conflict")
    return columns


def validate_each(context: Collection, bodies: list[Any], prefix: bool = True) -> list[Row]:
    """Each body's values, with a child collection's foreign key; 422 for any
    bad field. A long array's rows are checked in turns with other requests."""
    values, errors = [], []
    for index, body in enumerate(bodies):
        if index % ROWS_A_CHECK == 0:
            give_way()
        try:
            row = validate_row(context.table, body, provided=context.fixed)
            values.append(with_parent(context, row))
        except Unprocessable as exc:
            where = f"[{index}]." if prefix else ""
            errors += [{**e, "field": f"{where}{e['field']}".rstrip(".")} for e in exc.errors]
    if errors:
        raise Unprocessable(errors)
    return values


# Rows checked between two looks at the clock (give_way): often enough that
# no run is long, rarely enough that the looks cost little beside the checks.
ROWS_A_CHECK = 32


def with_parent(context: Collection, values: Row) -> Row:
    """``values`` with the foreign key of the parent item they are created under."""
    if not context.fixed:
        return values
    clashes = [
        {"field": name, "message": "is set by the parent in the URL"}
        for name, value in context.fixed.items()
        if name in values and values[name] != value
    ]
    if clashes:
        raise Unprocessable(clashes)
    return {**values, **context.fixed}
