"""An OpenAPI 3.1 document generated from the registered tables and
routines (served at /openapi.json): the paths and schemas of each table
(``tables``), of each routine (``routines``), and what they share
(``schema``)."""

from __future__ import annotations

import sqlalchemy as sa

from api.openapi.routines import routine_path
from api.openapi.schema import HEADERS, Schema, errors, problem_responses, shared_parameters
from api.openapi.tables import (
    column_schema,
    table_parameters,
    table_paths,
    table_responses,
    table_schemas,
)
from api.routines import Routine
from api.version import DISTRIBUTION, package_version

__all__ = ["build_document", "column_schema"]

PROBLEM_SCHEMA = {
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
                **errors(*codes),
            },
        }
    }


def build_document(
    collections: dict[str, sa.Table], routines: dict[str, Routine], max_limit: int
) -> Schema:
    schemas = {"Problem": PROBLEM_SCHEMA}
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
                    **errors(401, 406),
                },
            }
        },
        "/__lbheartbeat__": _health("Liveness: the database is not touched", "liveness", ()),
        "/__heartbeat__": _health("Readiness: the database answers", "readiness", (503,)),
    }
    parameters, responses = shared_parameters(max_limit), problem_responses()
    for name, table in collections.items():
        responses.update(table_responses(name, table))
        schemas.update(table_schemas(name, table))
        parameters.update(table_parameters(name, table))
        paths.update(table_paths(name, table))
    for name, routine in routines.items():
        paths[f"/rpc/{name}"] = routine_path(routine)
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
            "parameters": parameters,
            "responses": responses,
            "headers": HEADERS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        # Reads are open unless api.read_requires_token; writes say their own.
        "security": [{}, {"bearer": []}],
    }
