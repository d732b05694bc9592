"""An OpenAPI 3.1 document generated from the registered tables (served at /openapi.json)."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from api.collections import describe
from api.columns import mapping
from api.formats import SINGULAR
from api.querystring import COMPARISONS
from api.routines import Routine
from api.validation import ETAG_LIST, required_in_new_rows, server_owned
from api.version import DISTRIBUTION, package_version

Schema = dict[str, Any]  # a JSON object of the OpenAPI document


PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
ERROR_TITLES = {
    300: "An embed more than one relation could mean: name one (PGRST201)",
    400: "Bad request: a malformed parameter or body",
    401: "No or a bad bearer token",
    403: "The token lacks the permission",
    404: "No such resource",
    406: "None of the formats in Accept can be produced",
    409: "A unique or foreign key conflict, or a concurrent change",
    412: "If-Match did not match the row's ETag",
    413: "The body or the batch is too large",
    415: "The body is not JSON",
    416: "The page starts past the last row (with a count)",
    422: "Fields that do not fit the table",
    428: "If-Match is required",
    500: "An unexpected server error",
    503: "The database is unavailable",
}


def _errors(*codes: int) -> Schema:
    responses = {
        str(code): {"description": ERROR_TITLES[code], "content": PROBLEM} for code in codes
    }
    responses["default"] = {"description": "Any other error", "content": PROBLEM}
    return responses


def column_schema(column: sa.Column[Any]) -> Schema:
    """A column's JSON Schema, as ``api.columns`` maps its type."""
    schema = mapping(column).schema(column)
    if column.nullable and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    if server_owned(column):
        schema["readOnly"] = True
    return schema


def _key_parameter(column: sa.Column[Any]) -> Schema:
    schema = {k: v for k, v in mapping(column).schema(column).items() if k != "readOnly"}
    if schema.get("type") == "string":
        schema["minLength"] = 1
    return {"name": str(column.name), "in": "path", "required": True, "schema": schema}


def _table_schemas(name: str, table: sa.Table) -> Schema:
    writable = [c for c in table.columns if not server_owned(c)]
    required = [str(c.name) for c in writable if required_in_new_rows(c)]
    row = {
        "type": "object",
        "properties": {str(c.name): column_schema(c) for c in table.columns},
        "required": [str(c.name) for c in table.columns],
    }
    create = {
        "type": "object",
        "properties": {str(c.name): column_schema(c) for c in writable},
        "required": required,
        "additionalProperties": False,
    }
    patch = {**create, "required": []}
    # select= returns some of the columns
    partial_row = {**row, "required": []}
    return {
        f"{name}Row": row,
        f"{name}Create": create,
        f"{name}Patch": patch,
        f"{name}Partial": partial_row,
        f"{name}Page": {"type": "array", "items": _ref(f"{name}Partial")},
    }


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _collection_paths(name: str, table: sa.Table, max_limit: int) -> Schema:
    operators = sorted(COMPARISONS | {"in", "is"})
    filter_ops = ", ".join(operators)
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
    order_item = rf"({names}|[a-z0-9_]+(![a-z0-9_]+)?\([^()]+\)|[a-z0-9_]+->>?[^,.]+)"
    order_item += r"(\.(asc|desc|nullsfirst|nullslast))*"
    list_parameters = [
        {
            "name": "select",
            "in": "query",
            "schema": select_schema,
            "description": select_doc,
        },
        {
            "name": "order",
            "in": "query",
            "schema": {"type": "string", "pattern": rf"^{order_item}(,{order_item})*$"},
            "description": "e.g. name.desc.nullslast,id; also a JSON path (data->>k) and "
            "a column of the row a foreign key points at (country(name)); the primary key "
            "breaks ties.",
        },
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 0},
            "description": f"Rows at most; a page never holds more than {max_limit}.",
        },
        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        {
            "name": "Range",
            "in": "header",
            "schema": {"type": "string"},
            "description": "FIRST-LAST, in items: the rows from FIRST to LAST (from 0); "
            "anything else is ignored, as PostgREST does.",
        },
        {
            "name": "cursor",
            "in": "query",
            "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"},
            "description": "The opaque cursor of the next page, from its Link header.",
        },
        {
            "name": "Prefer",
            "in": "header",
            "schema": {"type": "string"},
            "description": "count=exact, count=planned or count=estimated: the count "
            "is in Content-Range; timezone=ZONE: instants in that IANA zone; "
            "handling=strict: an unknown preference is a 400.",
        },
    ]
    filters = [
        {
            "name": str(column.name),
            "in": "query",
            "schema": {"type": "string", "pattern": rf"^(not\.)?({'|'.join(operators)})\..*"},
            "description": f"Filter: [not.]OP.VALUE with OP one of {filter_ops}.",
        }
        for column in table.columns
    ]
    list_parameters += filters
    row_ref = _ref(f"{name}Row")
    etag = {"ETag": {"schema": {"type": "string"}, "description": "The row's entity tag"}}
    if_match = {
        "name": "If-Match",
        "in": "header",
        "schema": {"type": "string", "pattern": ETAG_LIST},
    }
    write_security: list[dict[str, list[str]]] = [{"bearer": []}]
    prefer_return = {
        "name": "Prefer",
        "in": "header",
        "schema": {"type": "string"},
        "description": "return=minimal (the default), headers-only or representation; "
        "max-affected=N with handling=strict; missing=default; tx=rollback; "
        "resolution=merge-duplicates or ignore-duplicates (POST: an upsert); timezone=ZONE",
    }
    written = {
        "200": {
            "description": "The rows written (Prefer: return=representation)",
            "content": {"application/json": {"schema": {"type": "array", "items": row_ref}}},
        },
        "204": {"description": "Written (Prefer: return=minimal)"},
    }

    def write_where(summary: str, operation_id: str, body: str) -> Schema:
        """A write to the rows the filters name, with a body."""
        return {
            "summary": summary,
            "operationId": operation_id,
            "security": write_security,
            "parameters": [*filters, prefer_return],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(body)}},
            },
            "responses": {**written, **_errors(400, 401, 403, 409, 413, 415, 422, 503)},
        }

    page_headers = {
        "Content-Range": {"schema": {"type": "string"}, "description": "FIRST-LAST/TOTAL"},
        "Link": {"schema": {"type": "string"}, "description": 'The next page: rel="next"'},
    }
    operations = {
        "collection": {
            "get": {
                "summary": f"A page of {name}, or the whole result as NDJSON or CSV",
                "operationId": f"list_{name}",
                "parameters": list_parameters,
                "responses": {
                    "200": {
                        "description": "A page (JSON), one row (singular), or every row "
                        "(NDJSON, CSV)",
                        "headers": page_headers,
                        "content": {
                            "application/json": {"schema": _ref(f"{name}Page")},
                            SINGULAR: {"schema": _ref(f"{name}Partial")},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                            "text/csv": {"schema": {"type": "string"}},
                            "application/vnd.pgrst.array+json": {"schema": _ref(f"{name}Page")},
                            "application/vnd.pgrst.plan+json": {"schema": {}},
                        },
                    },
                    "206": {
                        "description": "A page, of fewer rows than the count asked for",
                        "headers": page_headers,
                        "content": {"application/json": {"schema": _ref(f"{name}Page")}},
                    },
                    **_errors(300, 400, 401, 403, 406, 416, 503),
                },
            },
            "post": {
                "summary": f"Create one row of {name}, or several in one transaction",
                "operationId": f"create_{name}",
                "security": write_security,
                "parameters": [prefer_return],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    _ref(f"{name}Create"),
                                    {
                                        "type": "array",
                                        "items": _ref(f"{name}Create"),
                                        "minItems": 1,
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "201": {
                        "description": "Created. With Prefer: return=representation, the "
                        "body is the row (a JSON object), or the rows of an array; else "
                        "there is none",
                        "headers": {"Location": {"schema": {"type": "string"}}, **etag},
                    },
                    **_errors(400, 401, 403, 409, 413, 415, 422, 503),
                },
            },
            "put": write_where(
                f"Create or replace the row of {name} that eq filters on its whole key name",
                f"put_{name}",
                f"{name}Create",
            ),
            "patch": write_where(
                f"Set the body's fields on every row of {name} the filters match",
                f"update_{name}",
                f"{name}Patch",
            ),
            "delete": {
                "summary": f"Delete every row of {name} the filters match",
                "operationId": f"delete_{name}_where",
                "security": write_security,
                "parameters": [*filters, prefer_return],
                "responses": {**written, **_errors(400, 401, 403, 409, 503)},
            },
        },
        "item": {
            "get": {
                "summary": f"One row of {name}",
                "operationId": f"get_{name}",
                "parameters": [
                    {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "The row",
                        "headers": etag,
                        "content": {"application/json": {"schema": row_ref}},
                    },
                    "304": {"description": "Not modified since that ETag"},
                    **_errors(401, 403, 404, 503),
                },
            },
            "put": {
                "summary": f"Replace the writable fields of a row of {name}",
                "operationId": f"replace_{name}",
                "security": write_security,
                "parameters": [if_match],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(f"{name}Create")}},
                },
                "responses": {
                    "200": {
                        "description": "The row as stored",
                        "headers": etag,
                        "content": {"application/json": {"schema": row_ref}},
                    },
                    **_errors(400, 401, 403, 404, 409, 412, 413, 415, 422, 428, 503),
                },
            },
            "patch": {
                "summary": f"Apply a JSON merge patch (RFC 7396) to a row of {name}",
                "operationId": f"patch_{name}",
                "security": write_security,
                "parameters": [if_match],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/merge-patch+json": {"schema": _ref(f"{name}Patch")},
                        "application/json": {"schema": _ref(f"{name}Patch")},
                    },
                },
                "responses": {
                    "200": {
                        "description": "The row as stored",
                        "headers": etag,
                        "content": {"application/json": {"schema": row_ref}},
                    },
                    **_errors(400, 401, 403, 404, 409, 412, 413, 415, 422, 428, 503),
                },
            },
            "delete": {
                "summary": f"Delete a row of {name}",
                "operationId": f"delete_{name}",
                "security": write_security,
                "parameters": [if_match],
                "responses": {
                    "204": {"description": "Deleted"},
                    **_errors(401, 403, 404, 409, 412, 428, 503),
                },
            },
        },
    }
    description = describe(table)
    if description.read_only:
        for method in ("post", "put", "patch", "delete"):
            del operations["collection"][method]
        operations["item"] = {"get": operations["item"]["get"]}
    return operations


def _paths(name: str, table: sa.Table, max_limit: int) -> Schema:
    """The collection and its items; under each item, its child collections."""
    operations = _collection_paths(name, table, max_limit)
    description = describe(table)
    paths: Schema = {f"/{name}/": operations["collection"]}
    if not description.key:
        return paths
    item = f"/{name}/{','.join(f'{{{c.name}}}' for c in description.key)}"
    key_parameters = [_key_parameter(column) for column in description.key]
    paths[item] = {"parameters": key_parameters, **operations["item"]}
    for child_name, relation in description.children.items():
        child = _collection_paths(relation.child.name, relation.child.table, max_limit)
        paths[f"{item}/{child_name}/"] = {
            "parameters": key_parameters,
            **{
                method: {**operation, "operationId": f"{method}_{child_name}_of_{name}"}
                for method, operation in child["collection"].items()
            },
        }
    return paths


def _health(summary: str, operation_id: str, codes: tuple[int, ...]) -> Schema:
    return {
        "get": {
            "summary": summary,
            "operationId": operation_id,
            "security": [],
            "responses": {
                "200": {
                    "description": "Healthy",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **_errors(*codes),
            },
        }
    }


def _value_schema(column: sa.Column[Any]) -> Schema:
    """A routine parameter's or value's JSON Schema: its type's, or null."""
    schema = mapping(column).schema(column)
    if "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema


def _routine_path(routine: Routine) -> Schema:
    """``/rpc/{name}``: POST with the arguments as an object; GET with them in
    the query, unless the routine modifies data."""
    arguments = {
        "type": "object",
        "properties": {str(c.name): _value_schema(c) for c in routine.parameters},
        "required": [str(c.name) for c in routine.parameters],
        "additionalProperties": False,
    }
    if routine.returns is not None:
        answer: Schema = _value_schema(routine.returns)
        described = "The function's value"
    else:
        answer = {"oneOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]}
        described = "The procedure's first result set, else its OUT parameters"
    answered = {
        "200": {"description": described, "content": {"application/json": {"schema": answer}}}
    }
    if routine.kind == "PROCEDURE":
        answered["204"] = {"description": "The procedure gave nothing back"}
    operations: Schema = {
        "post": {
            "summary": f"Call {routine.kind.lower()} {routine.name}",
            "operationId": f"call_{routine.name}",
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": arguments}},
            },
            "responses": {**answered, **_errors(400, 401, 403, 404, 409, 415, 422, 503)},
        }
    }
    if not routine.modifies_data:
        operations["get"] = {
            "summary": f"Call {routine.kind.lower()} {routine.name}, reading only",
            "operationId": f"call_{routine.name}_to_read",
            "parameters": [
                {"name": str(c.name), "in": "query", "required": True, "schema": _value_schema(c)}
                for c in routine.parameters
            ],
            "responses": {**answered, **_errors(400, 401, 404, 503)},
        }
    return operations


def build_document(
    collections: dict[str, sa.Table], routines: dict[str, Routine], max_limit: int
) -> Schema:
    schemas = {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details",
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "parameter": {"type": "string"},
                "code": {"type": "string", "description": "PostgREST's error code"},
                "message": {"type": "string", "description": "PostgREST's message"},
                "details": {"type": ["string", "null"]},
                "hint": {"type": ["string", "null"]},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                        "required": ["field", "message"],
                    },
                },
            },
            "required": ["type", "title", "status", "code", "message"],
        }
    }
    paths = {
        "/": {
            "get": {
                "summary": "The collections, with links and columns",
                "operationId": "list_collections",
                "responses": {
                    "200": {
                        "description": "The collections",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_errors(401),
                },
            }
        },
        "/__lbheartbeat__": _health("Liveness: the database is not touched", "liveness", ()),
        "/__heartbeat__": _health("Readiness: the database answers", "readiness", (503,)),
    }
    for name, table in collections.items():
        schemas.update(_table_schemas(name, table))
        paths.update(_paths(name, table, max_limit))
    for name, routine in routines.items():
        paths[f"/rpc/{name}"] = _routine_path(routine)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": DISTRIBUTION,
            "version": package_version(),
            "description": "Rows of database tables, in PostgREST's protocol",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        # Reads are open unless api.read_requires_token; writes say their own.
        "security": [{}, {"bearer": []}],
    }
