"""The API's own endpoints: the root listing, OpenAPI, health, and 405s."""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import quote

from pyramid.httpexceptions import (
    HTTPMethodNotAllowed,
    HTTPNotFound,
    HTTPUnauthorized,
)
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from api import formats
from api.database_errors import DatabaseUnavailable, SchemaNotCurrent
from api.db import get_reader, migrations_head, ping, schema_revision
from api.logs import misconfigured
from api.observe import metrics
from api.openapi import column_schema
from api.openapi.served import served_document
from api.resources import Root, RoutineCall
from api.schemas import collections_of, schema_of
from api.version import DISTRIBUTION, commit, package_version


@view_config(context=Root, request_method="GET", renderer="json")
def list_collections(context: Root, request: Request) -> dict[str, Any]:
    """The collections, each with its URL and its columns' schemas, worked
    out once: for a large schema they made the listing a cheap way to busy
    a worker."""
    formats.negotiate_among(request, (formats.JSON,))
    schema = schema_of(request)
    listed = request.registry.__dict__.setdefault("api_listed_columns", {})  # by schema
    if schema not in listed:
        listed[schema] = {
            name: {str(c.name): column_schema(c) for c in table.columns}
            for name, table in collections_of(request.registry, schema).items()
        }
    root = request.resource_url(context)  # a collection's URL is its name under it
    return {
        "collections": [
            {"name": name, "href": f"{root}{quote(name)}/", "columns": columns}
            for name, columns in listed[schema].items()
        ],
        "openapi": f"{root}openapi.json",
    }


@view_config(context=Root)
@view_config(context=Root, name="__lbheartbeat__")
@view_config(context=Root, name="__heartbeat__")
@view_config(context=Root, name="openapi.json")
@view_config(context=RoutineCall)
def method_not_allowed(context: Any, request: Request) -> Response:
    """405 with ``Allow``; but ``OPTIONS`` answers 200 with it, as PostgREST
    does (a CORS preflight is answered before, by ``api.security``). Of
    collections and items, ``api.views.by_method`` calls it."""
    allow = ", ".join(context.allowed_methods)
    if request.method == "OPTIONS":
        return Response(status=200, headerlist=[("Allow", allow), ("Content-Length", "0")])
    raise HTTPMethodNotAllowed(headers={"Allow": allow})


def public_endpoint(name: str) -> Any:
    """``GET /{name}``, open to all: health and the API's own description.

    Names start with "_" or hold a dot, which no collection name may (api.resources).
    """
    return view_config(
        context=Root,
        name=name,
        request_method="GET",
        renderer="json",
        permission=NO_PERMISSION_REQUIRED,
    )


@public_endpoint("openapi.json")
def openapi_document(context: Root, request: Request) -> Response:
    media_type = formats.negotiate_among(request, formats.DESCRIBED_OFFERS)
    served = served_document(request.registry, schema_of(request))
    # Where this client reaches the API: its scheme and host (through a
    # trusted proxy), and the prefix it is served under.
    url = request.application_url
    content_type = f"{media_type}; charset=utf-8" if media_type == formats.JSON else media_type
    headers = [("Content-Type", content_type), ("Vary", "Accept-Encoding")]
    if "gzip" not in request.environ.get("HTTP_ACCEPT_ENCODING", ""):
        return Response(body=served.plain(url), headerlist=headers)
    headers.append(("Content-Encoding", "gzip"))
    return Response(body=served.gzipped(url), headerlist=headers)


@public_endpoint("__version__")
def version(context: Root, request: Request) -> dict[str, str]:
    """Dockerflow's companion of the health endpoints: what is running."""
    return {"name": DISTRIBUTION, "version": package_version(), "commit": commit()}


@view_config(context=Root, name="metrics", request_method="GET", permission=NO_PERMISSION_REQUIRED)
def prometheus_metrics(context: Root, request: Request) -> Response:
    """Prometheus's text format, of every worker; 404 when off, 401 without
    the token ``api.metrics_token`` asks for."""
    settings = request.registry.api_settings
    observed = metrics()
    if not settings.metrics or observed is None:
        raise HTTPNotFound()
    expected = settings.metrics_token
    if expected:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise HTTPUnauthorized(headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body, content_type = observed.exposition()
    return Response(body=body, headerlist=[("Content-Type", content_type)])


@public_endpoint("__lbheartbeat__")
def liveness(context: Root, request: Request) -> dict[str, str]:
    """The process answers; the database is not touched."""
    return {"status": "ok"}


@public_endpoint("__heartbeat__")
async def readiness(context: Root, request: Request) -> dict[str, str]:
    """The database answers a round trip within ``db.ping_timeout`` seconds,
    and its schema is at the head of the migrations this code ships (when it
    serves the tables they make: ``api.declared_tables``)."""
    timeout = request.registry.api_settings.db_ping_timeout
    reader = get_reader(request)
    try:
        await ping(reader, timeout)
        if not request.registry.api_settings.declared_tables:
            return {"status": "ok", "database": "ok"}
        revision = await schema_revision(reader, timeout)
    except Exception as exc:
        if misconfigured(exc) is not None:
            raise  # said as it is (api.database_errors): waiting will not mend it
        raise DatabaseUnavailable(str(exc)) from exc
    head = migrations_head()
    if revision != head:
        found = "was never migrated" if revision is None else f"is at revision {revision}"
        raise SchemaNotCurrent(
            f"The database {found}; this code needs {head}: "
            "run alembic -c production.ini upgrade head."
        )
    return {"status": "ok", "database": "ok", "schema": head or ""}
