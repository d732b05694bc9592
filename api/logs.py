"""What the API logs: no secret, no row value, and no flood.

Query strings are logged with the values of credential-like parameters
redacted; SQL parameters are hidden by the engines (``hide_parameters``);
database errors are logged by their class and code, not their message (which
quotes values: "Duplicate entry 'x'"); and a failure that repeats, such as a
database outage, is logged once per interval with a count of the rest.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from typing import Any

REDACTED = "[redacted]"
# Parameter names whose values are credentials, in any case and inside longer names.
CREDENTIAL_NAME = re.compile(
    r"token|secret|passw|pwd|auth|session|signature|api[-_]?key|access[-_]?key|credential|jwt",
    re.IGNORECASE,
)


def loggable_query(query_string: str) -> str:
    """``query_string`` with the values of credential-like parameters redacted."""
    parts = []
    for part in query_string.split("&"):
        name, equals, _ = part.partition("=")
        parts.append(f"{name}={REDACTED}" if equals and _is_credential(name) else part)
    return "&".join(parts)


# A client sends the same few names again and again (select, order, its
# columns): each is searched for once, not on every request's log line. The
# cache is bounded: names a client makes up push older ones out.
@functools.lru_cache(maxsize=1024)
def _is_credential(name: str) -> bool:
    return CREDENTIAL_NAME.search(name) is not None


def database_error(exc: BaseException) -> str:
    """A driver error by its class and code, without its message's values;
    with what it means where no retry mends it (``misconfigured``)."""
    orig = getattr(exc, "orig", None) or exc
    code = error_number(exc)
    kind = f"{type(orig).__name__}" + (f" ({code})" if code is not None else "")
    reason = misconfigured(exc)
    return f"{kind}: {reason}" if reason else kind


# MySQL/MariaDB errors that waiting does not mend, and what they mean; the
# message itself is not repeated (it names the user and host).
MISCONFIGURED = {
    1044: "the database user may not use this database",
    1045: "the database refused the API's credentials (DATABASE_URL's user or password;"
    " or the server takes only TLS: add ?ssl_ca=/path/to/ca.pem to DATABASE_URL)",
    3159: "the database takes only TLS connections: add ?ssl_ca=/path/to/ca.pem to DATABASE_URL",
    1049: "the database that DATABASE_URL names does not exist",
    1698: "the database refused the API's credentials (DATABASE_URL's user or password)",
    1146: "a table the API serves does not exist: run alembic -c production.ini upgrade head,"
    " or, after a change of the schema, reload the API (SIGHUP to gunicorn's master)",
    1449: "the DEFINER of a view, routine or trigger is no user of the database server:"
    " create that user, or define it again",
    1054: "a column the API serves is no longer in the database: after a change of the"
    " schema, reload the API (SIGHUP to gunicorn's master)",
}


def misconfigured(exc: BaseException) -> str | None:
    """What a database error means when no retry mends it, else None."""
    orig = getattr(exc, "orig", None) or exc
    code = error_number(exc)
    if code in MISCONFIGURED:
        return MISCONFIGURED[code]
    if "no such table" in str(orig):  # SQLite's words for 1146
        return MISCONFIGURED[1146]
    return None


# MySQL's "Deadlock found when trying to get lock; try restarting transaction"
DEADLOCK = 1213


def deadlocked(exc: BaseException) -> bool:
    """Whether ``exc`` is MySQL's deadlock: the database rolled the whole
    transaction back as the cycle's victim, and nothing in it was wrong, so
    running it again may well succeed."""
    return error_number(exc) == DEADLOCK


def error_number(exc: BaseException) -> int | None:
    """A driver error's number (MySQL's errno), if it has one."""
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


class Throttled:
    """Logs a message of one kind at most once per ``interval`` seconds; the
    next one that is logged says how many were left out."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self.lock = threading.Lock()
        self.kinds: dict[str, tuple[float, int]] = {}  # kind -> (last logged, left out since)

    def log(self, level: int, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self.lock:
            last, left_out = self.kinds.get(kind, (float("-inf"), 0))
            if now - last < self.interval:
                self.kinds[kind] = (last, left_out + 1)
                return
            self.kinds[kind] = (now, 0)
        if left_out:
            message += " (and %d more like it in the last %.0f s)"
            args = (*args, left_out, self.interval)
        self.logger.log(level, message, *args)
