"""Keyset cursors: the sort-key values of the last row of a page, bound to
the query's order and filters and signed, so that a forged, altered or
reused cursor is a clear 400 rather than a wrong page or a 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from api.columns import parse_text, to_text
from api.errors import BadRequest
from api.formats import dump_json

if TYPE_CHECKING:
    from api.querystring import ListQuery


def _sign(payload: bytes, secret: bytes) -> bytes:
    return hmac.digest(secret, payload, "sha256")[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(query: ListQuery, row: dict[str, Any], secret: bytes) -> str:
    values = [to_text(item.column, row[item.column.name]) for item in query.order]
    payload = dump_json({"q": _b64(hashlib.sha256(query.signature()).digest()[:12]), "v": values})
    return f"{_b64(payload)}.{_b64(_sign(payload, secret))}"


def decode_cursor(text: str, query: ListQuery, secret: bytes) -> tuple[Any, ...]:
    try:
        payload_text, signature_text = text.split(".")
        payload, signature = _unb64(payload_text), _unb64(signature_text)
    except ValueError:
        raise BadRequest("the cursor is malformed", parameter="cursor") from None
    if not hmac.compare_digest(signature, _sign(payload, secret)):
        raise BadRequest("the cursor is not one this API issued", parameter="cursor")
    data = orjson.loads(payload)
    if data["q"] != _b64(hashlib.sha256(query.signature()).digest()[:12]):
        raise BadRequest(
            "the cursor belongs to another order or other filters", parameter="cursor"
        )
    return tuple(
        _cursor_value(item.column, value)
        for item, value in zip(query.order, data["v"], strict=True)
    )


def _cursor_value(column: sa.Column[Any], value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    return parse_text(column, value)  # written by to_text
