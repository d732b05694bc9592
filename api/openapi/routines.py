"""The paths of stored routines: ``/rpc/{name}``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from api.columns import mapping
from api.openapi.schema import Schema, errors, or_null
from api.routines import Routine


def _value_schema(column: sa.Column[Any]) -> Schema:
    """A routine parameter's or value's JSON Schema: its type's, or null."""
    return or_null(mapping(column).schema(column))


def routine_path(routine: Routine) -> Schema:
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
    content = {"application/json": {"schema": answer}, "text/csv": {"schema": {"type": "string"}}}
    answered = {"200": {"description": described, "content": content}}
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
            "responses": {**answered, **errors(400, 401, 403, 404, 406, 409, 415, 422, 503)},
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
            "responses": {**answered, **errors(400, 401, 404, 406, 503)},
        }
    return operations
