"""The resource tree that traversal walks: ``/`` → ``/{collection}/`` → ``/{collection}/{id}``.

Resources are location-aware (``__name__``/``__parent__``). ``__getitem__``
raises ``KeyError`` for anything that is not there, which traversal turns into
a view lookup by name and, failing that, a 404.
"""

import re
import weakref

from pyramid.httpexceptions import HTTPForbidden

from api import queries
from api.bridge import await_
from api.db import SAFE_METHODS

# Collection names are plain identifiers; names starting with "_" belong to
# the API itself (/__heartbeat__), so a table can never shadow them.
COLLECTION_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
# A primary key in a URL: a positive decimal integer that fits a signed BIGINT.
ITEM_KEY = re.compile(r"[1-9][0-9]{0,18}\Z")
BIGINT_MAX = 2**63 - 1


class Root:
    __name__ = ""
    __parent__ = None
    allowed_methods = ("GET", "HEAD")

    def __init__(self, request):
        # Weakly: the request holds its resources (request.root, request.context);
        # a strong reference back would make every request a reference cycle,
        # left for the cyclic GC to find (its collections paused all requests
        # for 30-40 ms about once a second under load).
        self._request = weakref.ref(request)
        self.__acl__ = request.registry.api_acl  # built from settings by api.security

    @property
    def request(self):
        return self._request()

    def __getitem__(self, name):
        table = self.request.registry.api_collections.get(name)
        if table is None:
            raise KeyError(name)
        return Collection(self, name, table)


# Writes lock the row they load, so that a read-modify-write sees the latest version.
WRITE_METHODS = frozenset({"PUT", "PATCH", "DELETE"})


class Collection:
    allowed_methods = ("GET", "HEAD", "POST")

    def __init__(self, parent, name, table):
        self.__parent__ = parent
        self.__name__ = name
        self.table = table

    @property
    def request(self):
        return self.__parent__.request

    def __getitem__(self, key):
        if not ITEM_KEY.match(key) or int(key) > BIGINT_MAX:
            raise KeyError(key)
        request = self.request
        for_update = request.method in WRITE_METHODS
        if for_update and not request.has_permission("write", self):
            # Refuse before the lookup: whether a row exists is not told to
            # (nor locked for) a client that may not write it.
            raise HTTPForbidden()
        if request.method in SAFE_METHODS and "dbsession" not in request.__dict__:
            # A read with no transaction of its own: coalesced with its peers.
            loader = request.registry.api_engines.point_loader(self.table)
            row = await_(loader.load(int(key)))
        else:  # the request's own transaction: it sees its own writes, and locks for them
            row = await_(
                queries.load_row(request.dbsession, self.table, int(key), for_update=for_update)
            )
        if row is None:
            raise KeyError(key)
        return Item(self, key, row)


class Item:
    allowed_methods = ("GET", "HEAD", "PUT", "PATCH", "DELETE")

    def __init__(self, parent, key, row):
        self.__parent__ = parent
        self.__name__ = key
        self.row = row
        self.table = parent.table

    def __getitem__(self, name):
        raise KeyError(name)  # rows have no children


def add_collection(config, table, name=None):
    """Directive: serve ``table`` as the collection ``/{name}/``."""
    name = name or table.name
    if not COLLECTION_NAME.match(name):
        raise ValueError(f"collection name {name!r} must match {COLLECTION_NAME.pattern}")
    if len(table.primary_key.columns) != 1:
        raise ValueError(f"table {table.name!r} needs a single-column primary key")
    config.registry.api_collections[name] = table


def includeme(config):
    config.registry.api_collections = {}
    config.add_directive("add_collection", add_collection)
    config.set_root_factory(Root)
