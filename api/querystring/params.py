"""The query string itself: its parameters, strictly decoded, and the
numbers and ranges that pick a page's rows."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from webob.multidict import MultiDict

from api.errors import BadRequest, RangeNotSatisfiable

# More parameters than any query of the language needs is a mistake, or an attack.
MAX_PARAMETERS = 100


def parse_query_string(query_string: str) -> MultiDict:
    """The parameters of a query string, as the client percent-encoded them in UTF-8.

    ``query_string`` is the environ's: the raw bytes, decoded as latin-1.
    A pair that is not UTF-8 once decoded is a 400 naming it; so is a query
    of more than MAX_PARAMETERS parameters. Linear in the length.
    """
    params = MultiDict()
    for part in query_string.encode("latin-1").split(b"&"):
        if not part:
            continue
        if len(params) == MAX_PARAMETERS:
            raise BadRequest(f"a query takes at most {MAX_PARAMETERS} parameters")
        raw_name, _, raw_value = part.partition(b"=")
        shown = raw_name.decode("latin-1")
        name = _decoded(raw_name, shown, "a parameter's name")
        params.add(name, _decoded(raw_value, name, f"the value of '{name}'"))
    return params


def _decoded(raw: bytes, parameter: str, what: str) -> str:
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{what} is not percent-encoded UTF-8", parameter=parameter) from None


def single_value(params: MultiDict, name: str) -> str | None:
    values = params.getall(name)
    if len(values) > 1:
        raise BadRequest(f"'{name}' may be given only once", parameter=name)
    return values[0] if values else None


def capped_limit(params: MultiDict, prefix: str, max_limit: int) -> int | None:
    """``limit``, at most ``max_limit`` (PostgREST's db-max-rows caps it silently)."""
    count = requested_limit(params, prefix)
    return None if count is None else min(count, max_limit)


def requested_limit(params: MultiDict, prefix: str) -> int | None:
    """``limit`` as sent: a whole number; a negative one at the top, which
    postgrest-py's and supabase-js's range(5, 2) send, is PostgREST's 416."""
    text = single_value(params, "limit")
    if text is not None and not prefix and re.fullmatch(r"-0*[1-9][0-9]{0,14}", text):
        details = "Limit should be greater than or equal to zero."
        raise RangeNotSatisfiable(details, parameter="limit")
    return whole_number(params, prefix, "limit")


def whole_number(params: MultiDict, prefix: str, name: str) -> int | None:
    text = single_value(params, name)
    if text is None:
        return None
    if not re.fullmatch(r"[0-9]{1,15}", text):
        digits = text.isascii() and text.isdigit()
        message = f"'{prefix}{name}' must be a whole number" + (
            " of at most 15 digits" if digits else ""
        )
        raise BadRequest(message, parameter=f"{prefix}{name}")
    return int(text)


# A Range request header (PostgREST's, in items): "0-24", or "25-" for no end.
RANGE = re.compile(r"(?:items=)?([0-9]{1,15})-([0-9]{0,15})\Z")


def parse_range(text: str | None) -> tuple[int, int | None] | None:
    """``Range: FIRST-LAST`` as (offset, limit or None); None when absent or
    not a range PostgREST reads (it then answers every row, as here). A
    LAST before FIRST is PostgREST's 416."""
    match = RANGE.match(text.strip()) if text else None
    if match is None:
        return None
    first, last = int(match.group(1)), match.group(2)
    if not last:
        return first, None
    if int(last) < first:
        raise RangeNotSatisfiable(
            "The lower boundary must be lower than or equal to the upper boundary"
            " in the Range header.",
            parameter="Range",
        )
    return first, int(last) - first + 1
