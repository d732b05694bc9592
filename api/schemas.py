"""PostgREST's schemas, on MySQL: the database of the URL (SQLite's
``main``), the default, and the other databases of the same server that
``api.schemas`` names. A request picks one as PostgREST's clients do:
``Accept-Profile`` for GET and HEAD, ``Content-Profile`` for the other
methods; ``public``, which they send unless told otherwise, is the default.
Each schema's tables are collections of their own (``/film/`` in one is not
``/film/`` in another), and embed only each other."""

from __future__ import annotations

import sqlalchemy as sa
from pyramid.registry import Registry
from pyramid.request import Request

from api.errors import SchemaNotServed
from api.routines import Routine

READS = frozenset({"GET", "HEAD"})


def default_schema(url: sa.URL) -> str:
    """The schema a PostgREST client may name for the URL's database: MySQL's
    database, SQLite's ``main``."""
    return "main" if url.get_backend_name() == "sqlite" else str(url.database)


def schema_of(request: Request) -> str | None:
    """The other schema the request's profile header names, or None for the
    default; 406 (``PGRST106``) for a schema not served. Where several are
    served, the answer names its own in ``Content-Profile``, as PostgREST's do."""
    environ = request.environ
    registry = request.registry
    schema = None
    if "HTTP_ACCEPT_PROFILE" in environ or "HTTP_CONTENT_PROFILE" in environ:
        schema = _picked(request)
    if registry.api_other_schemas:
        said = schema or default_schema(registry.api_settings.database_url)
        request.add_response_callback(
            lambda _, response: response.headers.update({"Content-Profile": said})
        )
    return schema


def _picked(request: Request) -> str | None:
    # The environ, not request.headers: WebOb's get raises and catches a
    # KeyError for a header that is not there, as these mostly are not.
    header = "HTTP_ACCEPT_PROFILE" if request.method in READS else "HTTP_CONTENT_PROFILE"
    named = request.environ.get(header)
    if named is None:
        return None
    registry = request.registry
    default = default_schema(registry.api_settings.database_url)
    if named in (default, "public"):
        return None
    if named not in registry.api_other_schemas:
        raise SchemaNotServed(", ".join((default, *registry.api_other_schemas)))
    return str(named)


def collections_of(registry: Registry, schema: str | None) -> dict[str, sa.Table]:
    """The collections of ``schema`` (``schema_of``; None: the default)."""
    if schema is None:
        return registry.api_collections
    return registry.api_other_schemas[schema]


def routines_of(registry: Registry, schema: str | None) -> dict[str, Routine]:
    """The stored routines of ``schema`` (``schema_of``; None: the default)."""
    if schema is None:
        return registry.api_routines
    return registry.api_other_routines.get(schema, {})
