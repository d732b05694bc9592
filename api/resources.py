"""The resource tree that traversal walks: ``/`` → ``/{collection}/`` → ``/{collection}/{id}``.

Resources are location-aware (``__name__``/``__parent__``). ``__getitem__``
raises ``KeyError`` for anything that is not there, which traversal turns into
a view lookup by name and, failing that, a 404.
"""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote_plus

import sqlalchemy as sa
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPForbidden
from pyramid.request import Request

from api.validation import int_range

# Collection names are plain identifiers; names starting with "_" belong to
# the API itself (/__heartbeat__), so a table can never shadow them.
COLLECTION_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
# An integer key in a URL: decimal, as the database would write it (no "+",
# no leading zero), and then within its column's range.
INTEGER_KEY = re.compile(r"(0|-?[1-9][0-9]{0,19})\Z")
# What the query of a URL may hold as it is (RFC 3986), "%" for escapes already made.
URL_SAFE = "!$&'()*+,;=:@/?-._~%"


class Root:
    __name__ = ""
    __parent__ = None
    allowed_methods = ("GET", "HEAD")

    def __init__(self, request: Request) -> None:
        # Weakly: the request holds its resources (request.root, request.context);
        # a strong reference back would make every request a reference cycle,
        # left for the cyclic GC to find, which pauses every request it meets.
        self._request = weakref.ref(request)
        self.__acl__ = request.registry.api_acl  # built from settings by api.security

    @property
    def request(self) -> Request:
        request = self._request()
        assert request is not None, "a resource outlived its request"
        return request

    def __getitem__(self, name: str) -> Collection:
        table = self.request.registry.api_collections.get(name)
        if table is None:
            raise KeyError(name)
        return Collection(self, name, table)


# Writes lock the row they load, so that a read-modify-write sees the latest version.
WRITE_METHODS = frozenset({"PUT", "PATCH", "DELETE"})


class Collection:
    allowed_methods = ("GET", "HEAD", "POST")

    def __init__(self, parent: Root, name: str, table: sa.Table) -> None:
        self.__parent__ = parent
        self.__name__ = name
        self.table = table

    @property
    def request(self) -> Request:
        return self.__parent__.request

    def __getitem__(self, key: str) -> Item:
        pk = key_parser(self.table)(key)
        if pk is None:
            raise KeyError(key)
        request = self.request
        for_update = request.method in WRITE_METHODS
        if for_update and not request.has_permission("write", self):
            # Refuse before the lookup: whether a row exists is not told to
            # (nor locked for) a client that may not write it.
            raise HTTPForbidden()
        row = request.fetch_row(self.table, pk, for_update=for_update)
        if row is None:
            raise KeyError(key)
        return Item(self, key, row, pk)

    def next_url(self, cursor: str) -> str:
        """The URL of the page after this request's, at ``cursor``.

        The request's query string as it came, with ``cursor`` in place of its
        own, rather than parsed and encoded again: what is not plain ASCII in
        it is percent-encoded, and escapes already there are kept. Spelled out
        rather than through ``resource_url()``: collection names need no
        quoting (``COLLECTION_NAME``).
        """
        request = self.request
        kept = [
            part
            for part in request.query_string.split("&")
            if part and unquote_plus(part.partition("=")[0]) != "cursor"
        ]
        query = quote("&".join([*kept, f"cursor={cursor}"]), safe=URL_SAFE)
        return f"{request.application_url}/{self.__name__}/?{query}"


class Item:
    allowed_methods = ("GET", "HEAD", "PUT", "PATCH", "DELETE")

    def __init__(self, parent: Collection, key: str, row: dict[str, Any], pk: Any) -> None:
        self.__parent__ = parent
        self.__name__ = key
        self.row = row
        self.table = parent.table
        self.pk = pk  # the primary key, as the database holds it

    def __getitem__(self, name: str) -> Any:
        raise KeyError(name)  # rows have no children


@functools.cache
def key_parser(table: sa.Table) -> Callable[[str], Any]:
    """How an item's URL segment (percent-decoded by traversal) becomes the
    value of ``table``'s primary key; None for a segment that cannot be one.

    An integer key takes its column's range, signed or unsigned; a string key
    any text its column can hold, percent-encoded, but for "/": servers
    decode %2F before the path is split, so such a row has no item URL.
    """
    (column,) = table.primary_key.columns
    python_type = column.type.python_type
    if python_type is int:
        low, high = int_range(column.type)

        def integer(segment: str) -> int | None:
            if not INTEGER_KEY.match(segment):
                return None
            value = int(segment)
            return value if low <= value <= high else None

        return integer
    if python_type is str:
        length = getattr(column.type, "length", None) or 65535

        def text(segment: str) -> str | None:
            return segment if 0 < len(segment) <= length else None

        return text
    return lambda segment: None  # no URL form for this key type yet


def add_collection(config: Configurator, table: sa.Table, name: str | None = None) -> None:
    """Directive: serve ``table`` as the collection ``/{name}/``."""
    name = name or table.name
    if not COLLECTION_NAME.match(name):
        raise ValueError(f"collection name {name!r} must match {COLLECTION_NAME.pattern}")
    if len(table.primary_key.columns) != 1:
        raise ValueError(f"table {table.name!r} needs a single-column primary key")
    config.registry.api_collections[name] = table


def includeme(config: Configurator) -> None:
    config.registry.api_collections = {}
    config.add_directive("add_collection", add_collection)
    config.set_root_factory(Root)
