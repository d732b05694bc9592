"""The schemas and paths of each table: its collection, its items, and the
collections of its children under an item."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from api.collections import Relation, describe
from api.columns import mapping
from api.formats import GEO_JSON, SINGULAR
from api.openapi.schema import (
    ETAG,
    IF_MATCH,
    IF_NONE_MATCH,
    PAGE_HEADERS,
    PREFER_RETURN,
    SHARED_LIST_PARAMETERS,
    Schema,
    errors,
    or_null,
    parameter,
    ref,
    response,
)
from api.querystring import COMPARISONS, RESERVED
from api.querystring.filters import LOGIC_PARAMETERS
from api.validation import given_in_new_rows, required_in_new_rows, server_owned

OPERATORS = sorted(COMPARISONS | {"in", "is"})
WRITE_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]


def column_schema(column: sa.Column[Any]) -> Schema:
    """A column's JSON Schema, as ``api.columns`` maps its type."""
    schema = mapping(column).schema(column)
    if column.nullable:
        schema = or_null(schema)
    if server_owned(column):
        schema["readOnly"] = True
    return schema


def _given_schema(column: sa.Column[Any]) -> Schema:
    """A column's schema where a new row gives it (an auto-increment key
    too): null asks an auto-increment column for its next value."""
    schema = {k: v for k, v in column_schema(column).items() if k != "readOnly"}
    return or_null(schema) if column.autoincrement is True and not column.nullable else schema


def _key_parameter(column: sa.Column[Any]) -> Schema:
    schema = {k: v for k, v in mapping(column).schema(column).items() if k != "readOnly"}
    if schema.get("type") == "string":
        schema["minLength"] = 1
    return {"name": str(column.name), "in": "path", "required": True, "schema": schema}


def component_name(name: str) -> str:
    """What a collection is called in component names and operation ids,
    which take ``[A-Za-z0-9._-]``: its name, or for a name with anything
    else ("Order Details"), that spelled so, with the name in hex after it,
    so that two names never meet in one."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", name):
        return name
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', name)}_{name.encode().hex()}"


def _path(name: str) -> str:
    """A collection's segment in a path, as a client sends it."""
    return quote(name, safe="")


def table_schemas(name: str, table: sa.Table) -> Schema:
    name = component_name(name)
    row = {
        "type": "object",
        "properties": {str(c.name): column_schema(c) for c in table.columns},
        "required": [str(c.name) for c in describe(table).star],
    }
    create = _create_schema(table)
    patch = {  # a PATCH changes no column the server sets, an auto-increment key too
        **create,
        "properties": {
            str(c.name): column_schema(c) for c in table.columns if not server_owned(c)
        },
        "required": [],
    }
    # select= returns some of the columns
    partial_row = {**row, "required": []}
    schemas = {
        f"{name}Row": row,
        f"{name}Create": create,
        f"{name}Patch": patch,
        f"{name}Partial": partial_row,
        f"{name}Page": {"type": "array", "items": ref(f"{name}Partial")},
    }
    for child_name, relation in describe(table).children.items():
        if not relation.child.read_only:
            schemas[_created_under_name(name, child_name)] = _created_under(relation)
    return schemas


def _create_schema(table: sa.Table) -> Schema:
    """A new row of ``table``: its writable columns, those without a value of
    their own required."""
    writable = [c for c in table.columns if given_in_new_rows(c)]
    return {
        "type": "object",
        "properties": {str(c.name): _given_schema(c) for c in writable},
        "required": [str(c.name) for c in writable if required_in_new_rows(c)],
        "additionalProperties": False,
    }


def table_paths(name: str, table: sa.Table) -> Schema:
    """The collection and its items; under each item, its child collections."""
    operations = _operations(name, table)
    description = describe(table)
    paths: Schema = {f"/{_path(name)}/": operations["collection"]}
    if not description.key:
        return paths
    item = f"/{_path(name)}/{','.join(f'{{{c.name}}}' for c in description.key)}"
    key = component_name(name)
    key_parameters = [_key_parameter(column) for column in description.key]
    paths[item] = {"parameters": key_parameters, **operations["item"]}
    for child_name, relation in description.children.items():
        child = _operations(relation.child.name, relation.child.table)
        if "post" in child["collection"]:
            under = ref(_created_under_name(key, child_name))
            child["collection"]["post"] = {
                **child["collection"]["post"],
                "requestBody": _created(under),
            }
        operation_id = f"{component_name(child_name)}_of_{key}"
        paths[f"{item}/{_path(child_name)}/"] = {
            "parameters": key_parameters,
            **{
                method: {**operation, "operationId": f"{method}_{operation_id}"}
                for method, operation in child["collection"].items()
            },
        }
    return paths


def _operations(name: str, table: sa.Table) -> Schema:
    """The operations of the collection and of an item; a read-only table's reads only."""
    key = component_name(name)
    filters = [parameter(_filter_key(key, column)) for column in table.columns]
    list_parameters = [
        parameter(f"{key}.select"),
        parameter(f"{key}.order"),
        *map(parameter, SHARED_LIST_PARAMETERS),
    ]
    operations = {
        "collection": _collection_operations(name, key, list_parameters, filters),
        "item": _item_operations(name, key),
    }
    if describe(table).read_only:
        for method in ("post", "put", "patch", "delete"):
            del operations["collection"][method]
        operations["item"] = {"get": operations["item"]["get"]}
    return operations


def table_parameters(name: str, table: sa.Table) -> Schema:
    """A table's own query parameters, as components: a filter of each
    column, and its select and order."""
    name = component_name(name)
    filters = {
        _filter_key(name, column): {
            "name": _filter_name(str(column.name)),
            "in": "query",
            "schema": {"type": "string", "pattern": rf"^(not\.)?({'|'.join(OPERATORS)})\..*"},
            "description": f"Filter: [not.]OP.VALUE with OP one of {', '.join(OPERATORS)}.",
        }
        for column in table.columns
    }
    return {**filters, **_select_and_order(name, table)}


def _filter_key(table: str, column: sa.Column[Any]) -> str:
    """The component name of a column's filter: its name where a component's
    name may hold it, else its name in hex (a column may be named "a b")."""
    name = str(column.name)
    if re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        return f"{table}.filter.{name}"
    return f"{table}.filter-hex.{name.encode().hex()}"


def _filter_name(column: str) -> str:
    return f'"{column}"' if column in RESERVED or column in LOGIC_PARAMETERS else column


def _select_and_order(name: str, table: sa.Table) -> Schema:
    """A table's select (the collections it embeds) and order (its columns)."""
    names = "|".join(re.escape(str(c.name)) for c in table.columns)
    embeddable = sorted(describe(table).links)
    # PostgREST's select grammar (README): no pattern spells it.
    select_schema: Schema = {"type": "string", "minLength": 1}
    select_doc = (
        "Comma-separated columns to return, `*` for all; ALIAS:COLUMN, COLUMN->KEY->>KEY, "
        "COLUMN::CAST, and aggregates COLUMN.sum() (avg, count, max, min, sum; count()) "
        "where the server enables them."
    )
    if embeddable:
        select_doc += (
            " Embeds rows of related collections as NAME(COLUMNS), with ALIAS:, "
            f"!HINT, !inner and ...NAME(COLUMNS) (a spread): {', '.join(embeddable)}."
        )
    order_item = rf"({names}|\w+(!\w+)?\([^()]+\)|\w+->>?[^,.]+)"
    order_item += r"(\.(asc|desc|nullsfirst|nullslast))*"
    return {
        f"{name}.select": {
            "name": "select",
            "in": "query",
            "schema": select_schema,
            "description": select_doc,
        },
        f"{name}.order": {
            "name": "order",
            "in": "query",
            "schema": {"type": "string", "pattern": rf"^{order_item}(,{order_item})*$"},
            "description": "e.g. name.desc.nullslast,id; also a JSON path (data->>k) and "
            "a column of the row a foreign key points at (country(name)); the primary key "
            "breaks ties.",
        },
    }


def table_responses(name: str, table: sa.Table) -> Schema:
    """A table's answers that several operations give (a collection's and a
    child collection's), as components: a page; the rows a write by filters
    wrote, but for a read-only one; one row, where it has item URLs."""
    name = component_name(name)
    description = describe(table)
    responses: Schema = {
        f"{name}.Page": {
            "description": "A page (JSON), one row (singular), or every row (NDJSON, CSV)",
            "headers": PAGE_HEADERS,
            "content": {
                "application/json": {"schema": ref(f"{name}Page")},
                SINGULAR: {"schema": ref(f"{name}Partial")},
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
                "application/vnd.pgrst.array+json": {"schema": ref(f"{name}Page")},
                "application/vnd.pgrst.plan+json": {"schema": {}},
            },
        },
        f"{name}.PartialPage": {
            "description": "A page, of fewer rows than the count asked for",
            "headers": PAGE_HEADERS,
            "content": {"application/json": {"schema": ref(f"{name}Page")}},
        },
    }
    if description.spatial:  # a FeatureCollection, its geometry the first spatial column
        geo = {"type": "object", "required": ["type", "features"]}
        responses[f"{name}.Page"]["content"][GEO_JSON] = {"schema": geo}
    if not description.read_only:
        responses[f"{name}.Written"] = {
            "description": "The rows written (Prefer: return=representation)",
            "content": {
                "application/json": {"schema": {"type": "array", "items": ref(f"{name}Row")}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    if description.key:
        responses[f"{name}.Row"] = {
            "description": "The row (after a write, as stored)",
            "headers": ETAG,
            "content": _as_object(ref(f"{name}Row")),
        }
    return responses


def _written(name: str) -> Schema:
    """The answers of a write to the rows the filters name."""
    return {
        "200": response(f"{name}.Written"),
        "204": {"description": "Written (Prefer: return=minimal)"},
    }


def _write_where(
    name: str, summary: str, operation_id: str, body: str, filters: list[Schema]
) -> Schema:
    """A write to the rows the filters name, with a body."""
    return {
        "summary": summary,
        "operationId": operation_id,
        "security": WRITE_SECURITY,
        "parameters": [*filters, PREFER_RETURN],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        },
        "responses": {**_written(name), **errors(400, 401, 403, 406, 409, 413, 415, 422, 503)},
    }


def _collection_operations(
    name: str, key: str, list_parameters: list[Schema], filters: list[Schema]
) -> Schema:
    """The operations of the collection ``name``, whose components are ``key``'s."""
    return {
        "get": {
            "summary": f"A page of {name}, or the result as NDJSON or CSV",
            "operationId": f"list_{key}",
            "parameters": [*list_parameters, *filters],
            "responses": {
                "200": response(f"{key}.Page"),
                "206": response(f"{key}.PartialPage"),
                **errors(300, 400, 401, 403, 406, 416, 503),
            },
        },
        "post": {
            "summary": f"Create one row of {name}, or several in one transaction",
            "operationId": f"create_{key}",
            "security": WRITE_SECURITY,
            "parameters": [PREFER_RETURN],
            "requestBody": _created(ref(f"{key}Create")),
            "responses": {
                "201": {
                    "description": "Created. With Prefer: return=representation, the "
                    "body is the row (a JSON object), or the rows of an array; else "
                    "there is none",
                    "headers": {"Location": {"schema": {"type": "string"}}, **ETAG},
                },
                **errors(400, 401, 403, 406, 409, 413, 415, 422, 503),
            },
        },
        "put": _write_where(
            key,
            f"Create or replace the row of {name} that eq filters on its whole key name",
            f"put_{key}",
            f"{key}Create",
            filters,
        ),
        "patch": _write_where(
            key,
            f"Set the body's fields on every row of {name} the filters match",
            f"update_{key}",
            f"{key}Patch",
            filters,
        ),
        "delete": {
            "summary": f"Delete every row of {name} the filters match",
            "operationId": f"delete_{key}_where",
            "security": WRITE_SECURITY,
            "parameters": [*filters, PREFER_RETURN],
            "responses": {**_written(key), **errors(400, 401, 403, 406, 409, 503)},
        },
    }


def _created(row: Schema) -> Schema:
    """A POST's body: one row, or an array of them; or CSV rows under a header row.
    Form bodies are taken but not listed: a client generated from a body of
    two types (openapi-python-client's) would send every row as a form."""
    rows = {"oneOf": [row, {"type": "array", "items": row}]}
    csv = {
        "type": "string",
        "description": "A header row of column names, then a row per line; NULL is null",
    }
    content = {"application/json": {"schema": rows}, "text/csv": {"schema": csv}}
    return {"required": True, "content": content}


def _created_under(relation: Relation) -> Schema:
    """A new row under a parent's item: the path gives its foreign key, so a
    body may leave it out (and may only repeat it)."""
    create = _create_schema(relation.child.table)
    given = {str(column.name) for column in relation.columns}
    create["required"] = [name for name in create["required"] if name not in given]
    return create


def _created_under_name(parent: str, child_name: str) -> str:
    return f"{parent}.{component_name(child_name)}Create"


def _as_object(schema: Schema) -> Schema:
    """An item's answer: the row as a JSON object, under either name."""
    return {"application/json": {"schema": schema}, SINGULAR: {"schema": schema}}


def _item_operations(name: str, key: str) -> Schema:
    """The operations of an item of ``name``, whose components are ``key``'s."""
    stored = {
        "200": response(f"{key}.Row"),
        **errors(400, 401, 403, 404, 406, 409, 412, 413, 415, 422, 428, 503),
    }
    return {
        "get": {
            "summary": f"One row of {name}",
            "operationId": f"get_{key}",
            "parameters": [
                {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}
            ],
            "responses": {
                "200": response(f"{key}.Row"),
                "304": {"description": "Not modified since that ETag"},
                **errors(401, 403, 404, 406, 503),
            },
        },
        "put": {
            "summary": f"Replace the writable fields of a row of {name}",
            "operationId": f"replace_{key}",
            "security": WRITE_SECURITY,
            "parameters": [IF_MATCH, IF_NONE_MATCH],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref(f"{key}Create")}},
            },
            "responses": stored,
        },
        "patch": {
            "summary": f"Apply a JSON merge patch (RFC 7396) to a row of {name}",
            "operationId": f"patch_{key}",
            "security": WRITE_SECURITY,
            "parameters": [IF_MATCH, IF_NONE_MATCH],
            "requestBody": {
                "required": True,
                "content": {
                    "application/merge-patch+json": {"schema": ref(f"{key}Patch")},
                    "application/json": {"schema": ref(f"{key}Patch")},
                },
            },
            "responses": stored,
        },
        "delete": {
            "summary": f"Delete a row of {name}",
            "operationId": f"delete_{key}",
            "security": WRITE_SECURITY,
            "parameters": [IF_MATCH, IF_NONE_MATCH],
            "responses": {
                "204": {"description": "Deleted"},
                **errors(400, 401, 403, 404, 409, 412, 428, 503),
            },
        },
    }
