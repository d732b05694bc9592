"""What a database error means to the client who caused it, as problem+json.

The driver's classes say little: asyncmy raises every server error it has
no class of its own for as ``OperationalError``, the class of a lost
connection. So an error is read by its number too: a database that is not
there (503 with ``Retry-After``), a deadlock's victim (run again), a value
the request sent (4xx, with PostgreSQL's SQLSTATE, as PostgREST passes it
on), or the server's own fault (500, ``errors.server_error``).
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import exception_view_config
from pyramid_retry import is_last_attempt, mark_error_retryable
from sqlalchemy import exc as sa_exc

from api.database_conflicts import CHECK_FAILED, integrity_error, server_says
from api.db.engines import StatementTooLarge
from api.errors import problem_response, server_error
from api.logs import Throttled, database_error, deadlocked, error_number, misconfigured
from api.observe import count_error
from api.sql.locks import LockWaitTimeout
from api.sql.writes import ClashOnAnotherKey

log = logging.getLogger(__name__)


class DatabaseUnavailable(Exception):
    """The database could not be reached, or did not answer in time."""


# Driver and pool failures that mean "the database is not there right now":
# refused or lost connections, pool checkout timeouts, asyncio timeouts.
UNAVAILABLE = (
    DatabaseUnavailable,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    TimeoutError,
    ConnectionError,
)


# MySQL's words for a server that takes no writes: ER_OPTION_PREVENTS_STATEMENT
# (read_only, for a user without SUPER), ER_READ_ONLY_MODE, and a write in a
# read-only transaction; PostgreSQL's read_only_sql_transaction is 25006.
READ_ONLY = frozenset({1290, 1836, 1792})

READ_ONLY_NOW = (
    "The database takes no writes now: it is read-only (a replica, or a primary"
    " being failed over). Try again shortly, or send writes to the primary."
)


def writes_refused(exc: Exception, request: Request) -> Response | None:
    """The answer to a write the server refuses as read-only, else None: a
    503 to retry, since a failover may end it, that says why."""
    if error_number(exc) not in READ_ONLY:
        return None
    count_error("database_read_only")
    kind = database_error(exc)
    request.registry.api_throttled_log.log(logging.WARNING, kind, "database read-only: %s", kind)
    return problem_response(503, READ_ONLY_NOW, code="25006", headers={"Retry-After": "1"})


# The driver's CR_SERVER_GONE_ERROR: it found the connection closed before a
# statement went out (one the server dropped while it sat in the pool: a
# restart, a failover, a KILL), so nothing of the statement ran, and a
# transaction on it was rolled back. A write runs again from the start
# (pyramid_retry), as for a deadlock; a read is tried again by its reader.
NEVER_SENT = 2006


def connection_gone(exc: Exception) -> Response:
    """The request's connection was gone before its statement went out: it
    runs again, on a new one (the pool renews every connection older than
    this one's loss), and this answer is dropped."""
    mark_error_retryable(exc)
    log.info("a pooled connection was gone, the request runs again: %s", database_error(exc))
    return problem_response(503, "The database connection was lost; try again.")


def database_unavailable(exc: Exception, request: Request) -> Response:
    if deadlocked(exc):
        return deadlock_victim(exc, request)
    # The server answered: an error of the request's, its schema's or its
    # settings', which asyncmy has no class for. Each says what it is.
    said = refused_value(exc) or signalled(exc) or timed_out(exc, request)
    said = said or denied(exc, request) or writes_refused(exc, request)
    if said is not None:
        return said
    if server_sqlstate(exc)[:2] == "23":  # a constraint the driver has no class for
        return integrity_error(exc, request)
    if server_sqlstate(exc)[:2] in STATEMENT_FAILURES:
        return statement_failed(exc)
    if error_number(exc) == NEVER_SENT and not is_last_attempt(request):
        return connection_gone(exc)
    kind = database_error(exc)
    throttled = request.registry.api_throttled_log
    reason = misconfigured(exc)
    count_error("database_misconfigured" if reason else "database_unavailable")
    if reason is not None:  # waiting mends nothing: say what is wrong, to all
        throttled.log(logging.ERROR, kind, "database misconfigured: %s", kind)
        return problem_response(503, f"The API cannot serve this: {reason}.")
    # An outage fails every request alike: one line per kind and interval.
    throttled.log(logging.WARNING, kind, "database unavailable: %s", kind)
    return problem_response(
        503,
        "The database is unavailable; try again shortly.",
        headers={"Retry-After": "1"},
    )


# A statement the server stopped at the session's bound (db.statement_timeout):
# MariaDB's ER_STATEMENT_TIMEOUT, MySQL's ER_QUERY_TIMEOUT. The database is there.
STATEMENT_TIMEOUT = frozenset({1969, 3024})
# A wait for a lock another transaction holds, which ends a second before
# (ER_LOCK_WAIT_TIMEOUT): that transaction will end, so it is worth a retry.
LOCK_WAIT_TIMEOUT = 1205


def timed_out(exc: Exception, request: Request) -> Response | None:
    """The answer to a statement the server stopped at its time bound, else
    None: a 504, as a gateway whose upstream did not answer in time, that
    says how to ask for less, and no Retry-After, since the same request
    would run as long again (PostgREST answers its 57014 with a 500); a
    wait for a lock is a 503 to retry."""
    errno = error_number(exc)
    if errno not in STATEMENT_TIMEOUT and errno != LOCK_WAIT_TIMEOUT:
        return None
    log.info("timed out: %s", database_error(exc))
    if errno == LOCK_WAIT_TIMEOUT:
        return lock_wait_timeout(exc, request)
    count_error("statement_timeout")
    bound = request.registry.api_settings.db_statement_timeout
    return problem_response(
        504,
        f"The database stopped the statement after {bound:g} s (db.statement_timeout):"
        " ask for less, such as filters on indexed columns, a smaller limit, or"
        " Prefer: count=planned in place of count=exact.",
        code="57014",
    )


@exception_view_config(ClashOnAnotherKey)
def clash_on_another_key(exc: ClashOnAnotherKey, request: Request) -> Response:
    """An upsert whose row clashed on a unique key other than on_conflict's:
    a 409, as PostgREST's ON CONFLICT raises the other key's violation."""
    outcome = (
        "nothing was written."
        if exc.engine is None
        else f"the row it clashed with may have been changed, which {exc.engine} cannot undo."
    )
    return problem_response(
        409,
        f"A row clashes with another on a unique key other than ({', '.join(exc.target)}),"
        f" which on_conflict names; {outcome}",
        code="23505",
    )


@exception_view_config(LockWaitTimeout)
def lock_wait_timeout(exc: Exception, request: Request) -> Response:
    """A wait for a lock another transaction holds, which will end: a 503 to retry."""
    count_error("lock_wait_timeout")
    return problem_response(
        503,
        "The request waited too long for rows or a table that another transaction"
        " holds; try again shortly.",
        code="55P03",
        headers={"Retry-After": "1"},
    )


def deadlock_victim(exc: Exception, request: Request) -> Response:
    """The request's transaction lost a deadlock and was rolled back whole,
    which MySQL's manual says to run again: the request runs again from
    the start (pyramid_retry, ``api.write_attempts`` in all), and this
    answer is the last attempt's."""
    mark_error_retryable(exc)
    if is_last_attempt(request):
        count_error("deadlock")
        tries = request.environ.get("retry.attempts", 1)
        log.info("deadlock: %s, after %s attempts", database_error(exc), tries)
    return problem_response(
        503,
        "The write lost a deadlock with other writes, each time it was tried; try again.",
        headers={"Retry-After": "1"},
        code="40001",
    )


# InnoDB's full-text parser reports a search it cannot parse in boolean mode
# ("((((", a lone "+") as 1064, the number of a statement MySQL cannot parse;
# only the message tells them apart: the SQL parser's begins "You have an
# error in your SQL syntax".
FULLTEXT_SYNTAX = (1064, "syntax error")


@exception_view_config(sa_exc.ProgrammingError)
def programming_error(exc: sa_exc.ProgrammingError, request: Request) -> Response:
    """A table that is not there (a database never migrated) is a 503 that
    says so; a full-text search MySQL cannot parse is the client's (400);
    any other is the server's fault."""
    if misconfigured(exc) is not None:
        return database_unavailable(exc, request)
    says = server_says(exc)
    if error_number(exc) == FULLTEXT_SYNTAX[0] and (says or "").startswith(FULLTEXT_SYNTAX[1]):
        count_error("data")
        return problem_response(
            400,
            "A full-text search (fts, phfts, wfts) is not valid in MySQL's boolean mode;"
            " plfts searches its words as plain text.",
            code="42601",
            details=says,
        )
    return server_error(exc, request)


@exception_view_config(sa_exc.InternalError)
def internal_error(exc: sa_exc.InternalError, request: Request) -> Response:
    """What the driver calls internal: the storage engine's errors, a value
    it refuses among them (``REFUSED_VALUES``); any other is the server's fault."""
    return refused_value(exc) or server_error(exc, request)


class SchemaNotCurrent(Exception):
    """Readiness: the database's schema is not at the migrations' head."""


@exception_view_config(StatementTooLarge)
def statement_too_large(exc: StatementTooLarge, request: Request) -> Response:
    count_error("too_large")
    log.info("statement too large: %s", exc)
    return problem_response(
        413,
        f"The write makes a statement of about {exc.size} bytes, and the database takes"
        f" at most {exc.limit} (its max_allowed_packet): send fewer rows at once.",
        code="54000",
    )


@exception_view_config(SchemaNotCurrent)
def schema_not_current(exc: SchemaNotCurrent, request: Request) -> Response:
    return problem_response(503, str(exc))


CHARSET_REFUSED = "A value holds characters its column's character set has not."

AUTO_INCREMENT_SPENT = "The next auto-increment key is past the highest value its column holds."

REGEXP_FAILED = "A regular expression in the filters is not valid, or took too long on a value."

# Errors about a value or a query the request sent, which the driver raises
# as an OperationalError, as it does a lost connection: the client's to mend,
# so a 4xx that says which (PostgREST's status and SQLSTATE), never a 503
# that invites the same request again.
REFUSED_VALUES: dict[int, tuple[int, str, str]] = {
    1139: (400, "2201B", REGEXP_FAILED),
    1267: (400, "22021", CHARSET_REFUSED),
    1270: (400, "22021", CHARSET_REFUSED),
    1271: (400, "22021", CHARSET_REFUSED),
    1292: (422, "22007", "A value does not fit its column."),
    # a column left out that a trigger was thought to set, and did not
    1364: (400, "23502", "A column that takes no null, and has no default, was given no value."),
    1690: (422, "22003", "A value is out of its column's range."),
    # The storage engine's HA_ERR_AUTOINC_ERANGE, and MySQL's words for it:
    # the next auto-increment key is past its column's type (a row was given
    # the highest key), as PostgreSQL's sequence_generator_limit_exceeded.
    167: (400, "2200H", AUTO_INCREMENT_SPENT),
    1467: (400, "2200H", AUTO_INCREMENT_SPENT),
    # A column left out whose default the server's sql_mode refuses: a zero
    # date ('0000-00-00'), made under an older mode, under NO_ZERO_DATE.
    1978: (422, "22007", "A column left out has a default the database refuses."),
    # ONLY_FULL_GROUP_BY: MariaDB refuses an expression selected twice among
    # the grouped columns (select=a:x::text,b:x::text,count()).
    1055: (400, "42803", "The database's sql_mode refuses this grouping (ONLY_FULL_GROUP_BY)."),
    # The server's max_join_size (with sql_big_selects off): too many rows to look at.
    1104: (
        400,
        "54000",
        "The database would look at more rows than max_join_size allows: narrow the filters.",
    ),
    3819: (400, "23514", CHECK_FAILED),  # MySQL's check constraint
    4025: (400, "23514", CHECK_FAILED),  # MariaDB's
    # Writes through a view MySQL calls updatable, which it still refuses
    # (PostgreSQL's "cannot insert into view" is 55000).
    1288: (400, "55000", "This view cannot take this write."),
    1348: (400, "55000", "A column of this view is not a table's column, and cannot be written."),
    1369: (400, "44000", "The row would not be seen through the view (WITH CHECK OPTION)."),
    1393: (
        400,
        "55000",
        "A write through a join view may change the columns of one of its tables only.",
    ),
    1394: (400, "55000", "A join view takes an INSERT only of named columns."),
    1395: (400, "55000", "No rows can be deleted through a join view."),
    1423: (400, "55000", "This view cannot create rows: a column it does not show needs a value."),
    1471: (400, "55000", "This view cannot create rows."),
}
# SQLite's words for a REGEXP whose pattern does not compile, or whose match
# ran out of time (``operators.regexp``).
SQLITE_REGEXP_FAILED = "user-defined function raised exception"


def refused_value(exc: Exception) -> Response | None:
    """The answer to a database error about a value the request sent, else None."""
    orig = getattr(exc, "orig", None)
    errno = error_number(exc)
    if errno in REFUSED_VALUES:
        status, code, detail = REFUSED_VALUES[errno]
        said = server_says(exc)
    elif orig is not None and str(orig) == SQLITE_REGEXP_FAILED:
        (status, code, detail), said = REFUSED_VALUES[1139], None
    else:
        return None
    count_error("data")
    log.info("value refused: %s", database_error(exc))
    return problem_response(status, _naming(detail, said), code=code, details=said)


# MySQL's ER_SIGNAL_EXCEPTION: an error the schema's own code raised (SIGNAL
# in a trigger or a routine), as PL/pgSQL's RAISE.
SIGNAL = 1644

# PostgREST's SQLSTATEs for an error status of the schema's choosing: PT402 is a 402.
CHOSEN_STATUSES = {f"PT{status.value}": status.value for status in HTTPStatus if status >= 400}


def signalled(exc: Exception) -> Response | None:
    """The answer to a SIGNAL, else None: as PostgREST answers a RAISE, a
    400 with its message, and P0001 for MySQL's usual SQLSTATE 45000 (an
    unhandled user exception); another SQLSTATE is passed on, and a PTnnn
    one sets the status."""
    if error_number(exc) != SIGNAL:
        return None
    sqlstate = server_sqlstate(exc) or "45000"
    status = CHOSEN_STATUSES.get(sqlstate, 400)
    code = "P0001" if sqlstate == "45000" else sqlstate
    count_error("raised")
    log.info("raised by the schema: %s", database_error(exc))
    message = server_says(exc) or "The database refused the statement."
    return problem_response(status, message, code=code)


# What the API's database user may not do, which the API's own permissions
# let through: PostgreSQL's insufficient_privilege, a 403 from PostgREST.
# No retry mends it; the server's words, which name the user, stay in the log.
DENIED = {
    1142: "The API's database user may not do this to this table.",
    1143: "The API's database user may not do this to a column of this table.",
    1370: "The API's database user may not run this routine.",
}


def denied(exc: Exception, request: Request) -> Response | None:
    """The answer to a privilege the database withholds from the API, else None."""
    detail = DENIED.get(error_number(exc) or 0)
    if detail is None:
        return None
    count_error("database_denied")
    kind = database_error(exc)
    request.registry.api_throttled_log.log(
        logging.WARNING, kind, "database denied: %s: %s", kind, server_says(exc)
    )
    return problem_response(403, detail, code="42501")


def server_sqlstate(exc: Exception) -> str:
    """The SQLSTATE MySQL sent with an error (asyncmy keeps it), else ''."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) or ""


# SQLSTATE classes of a statement that failed on what it met, mostly in a
# routine's or a trigger's code, which the driver raises as it does a lost
# connection: no data (02: a cursor FETCH past the end), cardinality (21: a
# subquery of more than one row), data (22: a division by zero) and cursor
# state (24). PostgREST answers each class with a 400.
STATEMENT_FAILURES = frozenset({"02", "21", "22", "24"})


def statement_failed(exc: Exception) -> Response:
    """PostgREST's 400 for a ``STATEMENT_FAILURES`` error, with the server's
    words and SQLSTATE: the database is there, and the same request would
    fail again (it was a 503 that said to try again)."""
    count_error("data")
    log.info("statement failed: %s", database_error(exc))
    says = server_says(exc) or "The database could not run the statement."
    return problem_response(400, says, code=server_sqlstate(exc))


@exception_view_config(sa_exc.DataError)
def data_error(exc: sa_exc.DataError, request: Request) -> Response:
    count_error("data")
    log.info("data error: %s", database_error(exc))
    says = server_says(exc)
    return problem_response(422, _naming("A value does not fit its column.", says), details=says)


# MariaDB's "for column `db`.`table`.`name` at row 2", MySQL's "for column 'name' at row 2";
# of a default, "for column 'name'" last.
_FOR_COLUMN = re.compile(r"for column (?:`[^`]*`\.)*[`']([^`']+)[`'](?: at row|$)")


def _naming(message: str, says: str | None) -> str:
    """``message``, naming the column the database's words name: the
    message is what a client shows its user, who cannot read ``details``'
    row number, which counts the rows of a statement, not of a body."""
    column = _FOR_COLUMN.search(says or "")
    return f"{message[:-1]}: {column[1]}." if column else message


def includeme(config: Configurator) -> None:
    config.registry.api_throttled_log = Throttled(log)
    config.scan(__name__)
    config.scan("api.database_conflicts")
    for exc_type in UNAVAILABLE:
        config.add_exception_view(database_unavailable, context=exc_type)
