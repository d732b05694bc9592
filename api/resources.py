"""The resource tree that traversal walks: ``/`` → ``/{collection}/`` →
``/{collection}/{key}`` → ``/{collection}/{key}/{child collection}/`` → ...

Resources are location-aware (``__name__``/``__parent__``). ``__getitem__``
raises ``KeyError`` for anything that is not there, which traversal turns into
a view lookup by name and, failing that, a 404; under a collection, a
segment that names no row is a ``NoRow``, which its own view answers 404.
Each resource knows its own path as the client writes it (``path``), so
links are built without quoting keys twice.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

import sqlalchemy as sa
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPForbidden
from pyramid.request import Request
from pyramid.traversal import ResourceTreeTraverser

from api.collections import SEGMENT_SAFE, Description, describe
from api.db import fetch_row
from api.errors import RoutineNotFound
from api.routines import Routine
from api.schemas import collections_of, routines_of, schema_of

# What the next page's URL leaves out of the request's query: the cursor
# takes over from the offset.
NOT_CARRIED = frozenset({"cursor", "offset"})
# What the query of a URL may hold as it is (RFC 3986), "%" for escapes already made.
URL_SAFE = "!$&'()*+,;=:@/?-._~%"


class Root:
    __name__ = ""
    __parent__ = None
    allowed_methods = ("GET", "HEAD")
    path = "/"

    def __init__(self, request: Request) -> None:
        # Weakly: the request holds its resources (request.root, request.context);
        # a strong reference back would make every request a reference cycle,
        # left for the cyclic GC to find, which pauses every request it meets.
        self._request = weakref.ref(request)

    @property
    def request(self) -> Request:
        request = self._request()
        assert request is not None, "a resource outlived its request"
        return request

    def __getitem__(self, name: str) -> Collection | Routines:
        request = self.request
        schema = schema_of(request)
        registry = request.registry
        collections = collections_of(registry, schema)
        table = collections.get(name)
        if table is None:
            if name == "rpc":
                return Routines(self, routines_of(registry, schema))
            raise KeyError(name)
        return Collection(self, name, table)


# Writes lock the row they load, so that a read-modify-write sees the latest version.
WRITE_METHODS = frozenset({"PUT", "PATCH", "DELETE"})


class Collection:
    """The rows of a table; under an item, those whose foreign key points at it."""

    def __init__(
        self,
        parent: Root | Item,
        name: str,
        table: sa.Table,
        fixed: dict[str, Any] | None = None,
    ) -> None:
        self.__parent__ = parent
        self.__name__ = name
        self.table = table
        self.description: Description = describe(table)
        # A child collection's foreign key columns and the values they hold.
        self.fixed: dict[str, Any] = fixed or {}

    @property
    def path(self) -> str:
        parent, segment = self.__parent__.path, _segment(self.__name__)
        return f"{parent}{segment}/" if parent.endswith("/") else f"{parent}/{segment}/"

    @property
    def allowed_methods(self) -> tuple[str, ...]:
        return self.description.allowed_methods

    @property
    def request(self) -> Request:
        return self.__parent__.request

    def __getitem__(self, segment: str) -> Item | NoRow:
        description = self.description
        if not description.key:
            return NoRow(self, segment)
        request = self.request
        if len(description.key) == 1:
            pk = description.parse_single_key(segment)
        else:
            pk = description.parse_key(_key_values(request, segment))
        if pk is None:  # not a key of this table: no row has it
            return NoRow(self, segment)
        writes = request.method in WRITE_METHODS
        if writes and not request.has_permission("write", self):
            # Refuse before the lookup: whether a row exists is not told to
            # (nor locked for) a client that may not write it.
            raise HTTPForbidden()
        # A write locks the row it reads, unless its version settles it: the
        # write's WHERE checks the version the row was read at.
        lock = writes and description.version is None
        row = fetch_row(request, self.table, pk, for_update=lock)
        if row is None or (self.fixed and any(row[n] != v for n, v in self.fixed.items())):
            return NoRow(self, segment)
        return Item(self, segment, row, pk)

    def item_path(self, row: dict[str, Any]) -> str:
        return f"{self.path}{self.description.key_segment(row)}"

    def next_url(self, continuation: str) -> str:
        """The URL of the page after this request's: ``cursor=...``, or
        ``offset=N`` where no cursor can say where a page ends.

        The request's query string as it came, with ``continuation`` in place
        of its own cursor or offset, rather than parsed and encoded again:
        what is not plain ASCII in it is percent-encoded, and escapes already
        there are kept.
        """
        request = self.request
        kept = [
            part
            for part in request.query_string.split("&")
            if part and unquote_plus(part.partition("=")[0]) not in NOT_CARRIED
        ]
        query = quote("&".join([*kept, continuation]), safe=URL_SAFE)
        return f"{request.application_url}{self.path}?{query}"


@functools.lru_cache(maxsize=4096)
def _segment(name: str) -> str:
    """A collection's name as a path segment: encoded, where it holds a
    space ("Order Details") or anything else a segment does not carry."""
    return quote(name, safe=SEGMENT_SAFE)


def _key_values(request: Request, segment: str) -> list[str]:
    """The values of a composite key's URL segment, decoded."""
    try:
        return [
            unquote(part, errors="strict") for part in _raw_segment(request, segment).split(",")
        ]
    except UnicodeDecodeError:
        return []


def _raw_segment(request: Request, segment: str) -> str:
    """``segment`` as the client percent-encoded it, when the server kept the
    raw path (RAW_URI: gunicorn, and the ASGI front door from uvicorn's
    ``raw_path``): a composite key's values may hold an encoded comma. Else
    the decoded segment, whose commas all separate values."""
    raw_uri = request.environ.get("RAW_URI")
    if raw_uri:
        for raw in raw_uri.partition("?")[0].split("/"):
            if "%" in raw and unquote(raw) == segment:
                return raw
    return quote(segment, safe=",")


class Item:
    """One row, by its key; its children are the collections its foreign keys give."""

    def __init__(self, parent: Collection, segment: str, row: dict[str, Any], pk: Any) -> None:
        self.__parent__ = parent
        self.__name__ = segment
        self.row = row
        self.table = parent.table
        self.pk = pk  # the primary key, as the database holds it

    @property
    def path(self) -> str:
        return self.__parent__.item_path(self.row)

    @property
    def allowed_methods(self) -> tuple[str, ...]:
        return _item_methods(self.__parent__)

    @property
    def request(self) -> Request:
        return self.__parent__.request

    def __getitem__(self, name: str) -> Collection:
        relation = self.__parent__.description.children.get(name)
        if relation is None:
            raise KeyError(name)
        fixed = {
            str(column.name): self.row[referred.name]
            for column, referred in zip(relation.columns, relation.referred, strict=True)
        }
        return Collection(self, name, relation.child.table, fixed)


class NoRow:
    """A segment of a collection that names no row (a key no row has, or not
    a key at all): answered 404 by a view of its own (``api.views.items``).

    A ``KeyError`` would answer the same 404, through a view lookup by the
    segment, which Pyramid does not cache when it fails, and then its
    exception view: dearer than a point read, so a cheap way to busy a
    worker."""

    def __init__(self, parent: Collection, segment: str) -> None:
        self.__parent__ = parent
        self.__name__ = segment

    @property
    def allowed_methods(self) -> tuple[str, ...]:
        return _item_methods(self.__parent__)

    def __getitem__(self, name: str) -> Any:
        raise KeyError(name)


def _item_methods(collection: Collection) -> tuple[str, ...]:
    if collection.description.read_only:
        return ("GET", "HEAD")
    return ("GET", "HEAD", "PUT", "PATCH", "DELETE")


class Routines:
    """``/rpc/``: the stored routines that ``api.routines`` serves."""

    __name__ = "rpc"
    path = "/rpc/"
    allowed_methods = ()

    def __init__(self, parent: Root, routines: dict[str, Routine]) -> None:
        self.__parent__ = parent
        self.routines = routines  # the picked schema's

    @property
    def request(self) -> Request:
        return self.__parent__.request

    def __getitem__(self, name: str) -> RoutineCall:
        routine = self.routines.get(name)
        if routine is None:
            raise RoutineNotFound(f"No stored routine {name} is served")
        return RoutineCall(self, routine)


class RoutineCall:
    """``/rpc/{name}``: a call of one stored routine."""

    def __init__(self, parent: Routines, routine: Routine) -> None:
        self.__parent__ = parent
        self.__name__ = routine.name
        self.routine = routine
        self.path = f"/rpc/{routine.name}"

    @property
    def allowed_methods(self) -> tuple[str, ...]:
        return self.routine.allowed_methods

    @property
    def request(self) -> Request:
        return self.__parent__.request


class Traverser(ResourceTreeTraverser):
    """Pyramid's traversal, but of the path's segments as the client encoded
    them where one holds an encoded slash: a key may hold "/" (its item URL
    says ``/skey/a%2Fb``), which the decoded PATH_INFO splits in two."""

    def __call__(self, request: Request) -> dict[str, Any]:
        raw = request.environ.get("RAW_URI", "")
        segments = _segments_as_encoded(raw, request.path_info) if "%2" in raw else None
        if segments is None:
            return super().__call__(request)
        context: Any = self.root
        for index, segment in enumerate(segments):
            try:
                found = context[segment]
            except KeyError:
                return self._found(context, segment, segments[:index], segments[index + 1 :])
            context = found
        return self._found(context, "", segments, ())

    def _found(self, context: Any, view_name: str, traversed: tuple, subpath: tuple) -> dict:
        root = self.root
        return {
            "context": context,
            "view_name": view_name,
            "subpath": subpath,
            "traversed": traversed,
            "virtual_root": root,
            "virtual_root_path": (),
            "root": root,
        }


def _segments_as_encoded(raw_uri: str, path_info: str) -> tuple[str, ...] | None:
    """The segments of ``path_info`` as the raw path splits them, each
    decoded, where one of them holds an encoded slash; else None (what
    Pyramid's own traversal reads alike). The raw path may hold a prefix
    that PATH_INFO leaves out (SCRIPT_NAME): its last segments are taken."""
    path = raw_uri.partition("?")[0]
    raw = [part for part in path.split("/") if part]
    if not any("%2f" in part.lower() for part in raw):
        return None
    try:
        decoded = [unquote(part, errors="strict") for part in raw]
    except UnicodeDecodeError:
        return None
    wanted = path_info[:-1] if path.endswith("/") else path_info
    length = 0  # of "/" + "/".join(decoded[start:]), kept as start moves back: one pass
    for start in range(len(decoded) - 1, -1, -1):
        length += len(decoded[start]) + 1
        if length == len(wanted):
            segments = tuple(decoded[start:])
            if "/" + "/".join(segments) != wanted or {".", ".."} & set(segments):
                return None
            return segments
    return None


def includeme(config: Configurator) -> None:
    config.include("api.collections")
    config.set_root_factory(Root)
    config.add_traverser(Traverser)
