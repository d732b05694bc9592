"""What every part of the OpenAPI document shares: the type of a JSON
object of it, references to its components, and the problem responses.

What many operations repeat is a component, referred to by each: the
problem responses, the headers, the query parameters. Written out in every
operation, they made a large schema's document too big for a browser's
/docs and for client generators (PostgREST's document refers to its
parameters so too)."""

from __future__ import annotations

from typing import Any

from api.validation import ETAG_LIST

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
    412: "If-Match did not match the row's ETag, or If-None-Match did",
    413: "The body or the batch is too large",
    415: "The body is not JSON",
    416: "The page starts past the last row (with a count), or the Range or limit asks for none",
    422: "Fields that do not fit the table",
    428: "If-Match is required",
    500: "An unexpected server error",
    503: "The database is unavailable",
}


def or_null(schema: Schema) -> Schema:
    """``schema``, which also takes null."""
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        schema["type"] = [*types, "null"]
    elif "anyOf" in schema:
        schema["anyOf"] = [*schema["anyOf"], {"type": "null"}]
    return schema


def errors(*codes: int) -> Schema:
    """The problem responses of an operation: ``codes``, and any other."""
    responses = {str(code): _component("responses", f"Problem{code}") for code in codes}
    responses["default"] = _component("responses", "Problem")
    return responses


def problem_responses() -> Schema:
    """The components ``errors`` refers to."""
    responses = {
        f"Problem{code}": {"description": title, "content": PROBLEM}
        for code, title in ERROR_TITLES.items()
    }
    responses["Problem"] = {"description": "Any other error", "content": PROBLEM}
    return responses


def ref(name: str) -> Schema:
    return _component("schemas", name)


def parameter(name: str) -> Schema:
    return _component("parameters", name)


def response(name: str) -> Schema:
    return _component("responses", name)


def header(name: str) -> Schema:
    return _component("headers", name)


def _component(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


# The headers of answers, as components.
HEADERS = {
    "ETag": {"schema": {"type": "string"}, "description": "The row's entity tag"},
    "Location": {"schema": {"type": "string"}, "description": "The new row's item URL"},
    "Content-Range": {"schema": {"type": "string"}, "description": "FIRST-LAST/TOTAL"},
    "Link": {"schema": {"type": "string"}, "description": 'The next page: rel="next"'},
}
ETAG = {"ETag": header("ETag")}
PAGE_HEADERS = {"Content-Range": header("Content-Range"), "Link": header("Link")}
IF_MATCH, IF_NONE_MATCH = parameter("If-Match"), parameter("If-None-Match")
PREFER_RETURN = parameter("PreferReturn")
# What every collection's read takes beside its own filters, select and order.
SHARED_LIST_PARAMETERS = ("limit", "offset", "Range", "cursor", "PreferRead")


def shared_parameters(max_limit: int) -> Schema:
    """The parameters that are alike in every table's operations, as components."""
    return {
        "If-Match": {
            "name": "If-Match",
            "in": "header",
            "schema": {"type": "string", "pattern": ETAG_LIST},
        },
        "If-None-Match": {
            "name": "If-None-Match",
            "in": "header",
            "schema": {"type": "string", "pattern": ETAG_LIST},
            "description": '412 where the row has one of these ETags, or for "*" where it exists',
        },
        "PreferReturn": {
            "name": "Prefer",
            "in": "header",
            "schema": {"type": "string"},
            "description": "return=minimal (the default), headers-only or representation; "
            "max-affected=N with handling=strict; missing=default; tx=rollback; "
            "resolution=merge-duplicates or ignore-duplicates (POST: an upsert); timezone=ZONE",
        },
        "limit": {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer"},
            "description": f"Rows at most; a page never holds more than {max_limit}. "
            "A negative limit is a 416, as PostgREST answers it.",
        },
        "offset": {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        "Range": {
            "name": "Range",
            "in": "header",
            "schema": {"type": "string"},
            "description": "FIRST-LAST, in items: the rows from FIRST to LAST (from 0); "
            "a LAST before FIRST is a 416, anything else is ignored, as PostgREST does.",
        },
        "cursor": {
            "name": "cursor",
            "in": "query",
            "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"},
            "description": "The opaque cursor of the next page, from its Link header.",
        },
        "PreferRead": {
            "name": "Prefer",
            "in": "header",
            "schema": {"type": "string"},
            "description": "count=exact, count=planned or count=estimated: the count "
            "is in Content-Range; timezone=ZONE: instants in that IANA zone; "
            "handling=strict: an unknown preference is a 400.",
        },
    }
