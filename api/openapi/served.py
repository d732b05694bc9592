"""The document as it is served: encoded once, and gzipped once.

Each answer differs only in its last member, ``servers`` (where this client
reaches the API), so the bytes before it are kept, and so is a gzip
compressor's state after them (``zlib``'s ``copy``): an answer is those
bytes and its own few. Encoding and gzipping the whole document for each
request made it, for a large schema, a cheap way to busy a worker; the
Host header, and so the URL, is the client's to choose, so the answers
themselves are not cached.
"""

from __future__ import annotations

import zlib
from typing import Any

from pyramid.registry import Registry

from api.formats import dump_json
from api.openapi import build_document
from api.schemas import collections_of, routines_of

GZIP = 31  # zlib's wbits for a gzip header and trailer
LEVEL = 6  # gzip's default


class ServedDocument:
    """``document``'s bytes, and its gzip, with a ``servers`` URL of each answer's."""

    def __init__(self, document: dict[str, Any]) -> None:
        if "servers" in document:
            raise ValueError("the document's servers are each answer's own")
        # orjson keeps the order of members: "servers" goes last, after these.
        self.head = dump_json(document)[:-1] + b',"servers":[{"url":'
        self.compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, GZIP)
        self.gzip_head = self.compressor.compress(self.head)
        self.gzip_head += self.compressor.flush(zlib.Z_SYNC_FLUSH)

    def plain(self, url: str) -> bytes:
        return self.head + _tail(url)

    def gzipped(self, url: str) -> bytes:
        compressor = self.compressor.copy()
        return self.gzip_head + compressor.compress(_tail(url)) + compressor.flush()


def served_document(registry: Registry, schema: str | None = None) -> ServedDocument:
    """The document of the default schema, or of another (``api.schemas``),
    built on first ask. The server runners ask
    for each before gunicorn forks (``api.serve``): built once for every
    worker, and no worker's loop stalls on a large schema's."""
    documents: dict[str | None, ServedDocument] = registry.__dict__.setdefault("api_openapi", {})
    served = documents.get(schema)
    if served is None:
        limit = registry.api_settings.page_limit_max
        collections, routines = collections_of(registry, schema), routines_of(registry, schema)
        document = build_document(collections, routines, limit)
        served = documents[schema] = ServedDocument(document)
    return served


def _tail(url: str) -> bytes:
    return dump_json(url) + b"}]}"
