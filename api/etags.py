"""Entity tags of rows: the version column where a table has one; otherwise a
strong hash of the row's content.

A version is cheap and settles a race in the write itself (``UPDATE ... WHERE
version = :v``). A content hash needs the row as it is now: a write compares
it with If-Match after reading the row under its lock (``FOR UPDATE``).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
import sqlalchemy as sa

from api.collections import describe
from api.formats import dump_json


def etag(table: sa.Table, row: dict[str, Any]) -> str:
    """The row's strong entity tag, quoted."""
    version = describe(table).version
    if version is not None:
        return f'"{row[version.name]}"'
    return f'"{content_hash(row)}"'


def content_hash(row: dict[str, Any]) -> str:
    """A hash of the row's values, the same whichever way it was read: JSON
    passed through as stored text (an ``orjson.Fragment``, whose text is had
    by writing it out) is parsed as the request session parses it."""
    canonical = {
        key: orjson.loads(dump_json(value)) if isinstance(value, orjson.Fragment) else value
        for key, value in row.items()
    }
    digest = hashlib.sha256(dump_json(canonical, sort_keys=True)).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()
