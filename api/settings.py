"""Every setting of the API: its ini key, environment variable, type and default.

``includeme`` reads them once at start-up, from the environment (which wins)
and the ini file, validates them, and puts one frozen ``Settings`` on the
registry as ``registry.api_settings``. A bad value stops start-up with the
setting's name and what it expects. The README's settings table lists the
same fields.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from pyramid.config import Configurator
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from api.jwts import Key, base64_passphrases, parse_claim_path, parse_secret
from api.security import Token, parse_roles, parse_tokens

# Plain driver names that users write, mapped to the async drivers we run on.
ASYNC_DRIVERS = {
    "mysql": "mysql+asyncmy",
    "mariadb": "mariadb+asyncmy",
    "mysql+pymysql": "mysql+asyncmy",
    "mysql+mysqldb": "mysql+asyncmy",
    "sqlite": "sqlite+aiosqlite",
}

SERVED_DRIVERS = frozenset({"mysql+asyncmy", "mariadb+asyncmy", "sqlite+aiosqlite"})

TRUE = frozenset({"true", "yes", "on", "1"})
FALSE = frozenset({"false", "no", "off", "0", ""})


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


def database_url(text: str) -> URL:
    """A SQLAlchemy URL, on the async driver of its database."""
    try:
        url = make_url(text)
    except ArgumentError as exc:
        raise ValueError(str(exc)) from None
    url = url.set(drivername=ASYNC_DRIVERS.get(url.drivername, url.drivername))
    if url.drivername not in SERVED_DRIVERS:
        # Without this, another database's URL failed at start-up with a
        # traceback (its driver is not installed) or served half-working.
        postgrest = url.get_backend_name() == "postgresql"
        hint = " (PostgreSQL has PostgREST itself)" if postgrest else ""
        raise ValueError(
            f"the API serves MySQL and MariaDB (mysql://, on asyncmy) and SQLite"
            f" (sqlite://, on aiosqlite), not {url.drivername}://{hint}"
        )
    return url


def boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise ValueError("expected true or false")


def at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        text = text.strip()
        if not text.isascii() or not text.lstrip("-").isdigit():
            raise ValueError(f"expected a whole number of at least {low}")
        value = int(text)
        if value < low:
            raise ValueError(f"expected a whole number of at least {low}")
        return value

    return parse


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not 0 < value < float("inf"):
        raise ValueError("expected a positive number of seconds")
    return value


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        word = text.strip().lower()
        if word not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return word

    return parse


def words(text: str) -> tuple[str, ...]:
    """Names separated by whitespace or commas (PostgREST's lists take
    commas); a name with either in it is double-quoted, as PostgREST quotes
    one: ``"Order Details", customers``."""
    if text.count('"') % 2:
        raise ValueError(f"a quoted name is not closed: {text}")
    return tuple(quoted or bare for quoted, bare in QUOTED_OR_BARE.findall(text))


# A double-quoted name (not empty), or a run of anything but separators and quotes.
QUOTED_OR_BARE = re.compile(r'"([^"]+)"|([^\s,"]+)')


def as_bytes(text: str) -> bytes:
    return text.encode()


def setting(
    key: str,
    parse: Callable[[str], Any],
    default: Any = dataclasses.MISSING,
    *,
    env: str | None = None,
    doc: str,
    secret: bool = False,
    missing: str = "required",
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """A field of ``Settings``: read from ``env`` (default: the key, upper case,
    dots as underscores) or the ini ``key``, parsed by ``parse``."""
    metadata = {
        "key": key,
        "env": env or key.upper().replace(".", "_"),
        "parse": parse,
        "doc": doc,
        "missing": missing,
    }
    if default_factory is not None:
        return dataclasses.field(
            default_factory=default_factory, metadata=metadata, repr=not secret
        )
    return dataclasses.field(default=default, metadata=metadata, repr=not secret)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """The API's settings, validated; ``registry.api_settings``."""

    database_url: URL = setting(
        "sqlalchemy.url",
        database_url,
        env="DATABASE_URL",
        doc="The database. `mysql://` and `sqlite://` run on asyncmy and aiosqlite. Required.",
        secret=True,
        missing="no database URL",
    )
    db_pool_size: int = setting(
        "db.pool_size", at_least(1), 10, doc="Connections kept open for request sessions (writes)."
    )
    db_max_overflow: int = setting(
        "db.max_overflow", at_least(0), 10, doc="Extra write connections under load."
    )
    db_read_pool_size: int | None = setting(
        "db.read_pool_size",
        at_least(1),
        None,
        doc="Connections kept open for plain reads (default: `db.pool_size`).",
    )
    db_read_max_overflow: int | None = setting(
        "db.read_max_overflow",
        at_least(0),
        None,
        doc="Extra read connections under load (default: `db.max_overflow`).",
    )
    db_pool_timeout: float = setting(
        "db.pool_timeout", seconds, 10.0, doc="Seconds to wait for a connection, then 503."
    )
    db_pool_recycle: int = setting(
        "db.pool_recycle", at_least(-1), 3600, doc="Seconds after which a connection is renewed."
    )
    db_connect_timeout: int = setting(
        "db.connect_timeout", at_least(1), 5, doc="Seconds to wait for a new connection."
    )
    db_startup_timeout: int = setting(
        "db.startup_timeout",
        at_least(0),
        60,
        doc="Seconds start-up tries again to reach a database that is not up yet, then stops.",
    )
    db_ping_timeout: float = setting(
        "db.ping_timeout", seconds, 2.0, doc="Seconds `/__heartbeat__` waits for the database."
    )
    db_statement_timeout: float = setting(
        "db.statement_timeout",
        seconds,
        10.0,
        doc="Seconds a statement may run (504) or wait for a lock (503); the server enforces it.",
    )
    response_timeout: float = setting(
        "api.response_timeout",
        seconds,
        15.0,
        doc="Seconds until a response starts (a stalled database included), then 503.",
    )
    send_timeout: float = setting(
        "api.send_timeout",
        seconds,
        30.0,
        doc="Seconds a response waits for its client to take some of it, then drops it.",
    )
    max_exports: int = setting(
        "api.max_exports",
        at_least(1),
        2,
        doc="NDJSON and CSV exports a worker runs at once; 503 beyond.",
    )
    db_idle_timeout: int = setting(
        "db.idle_timeout",
        at_least(1),
        60,
        doc="Seconds after which MariaDB closes a pooled connection left idle.",
    )
    page_limit_default: int = setting(
        "api.page_limit_default",
        at_least(1),
        1000,
        doc="Rows in a page without `limit` (PostgREST: all of them, up to the largest page).",
    )
    page_limit_max: int = setting(
        "api.page_limit_max",
        at_least(1),
        1000,
        doc="The most rows in a page; a larger `limit` is cut to it (PostgREST's db-max-rows).",
    )
    export_batch_rows: int = setting(
        "api.export_batch_rows", at_least(1), 5000, doc="Rows an export reads at a time."
    )
    max_body_bytes: int = setting(
        "api.max_body_bytes", at_least(1), 1 << 20, doc="The largest request body (413 beyond)."
    )
    max_json_depth: int = setting(
        "api.max_json_depth", at_least(1), 32, doc="The deepest JSON nesting in a body (400)."
    )
    max_batch_rows: int = setting(
        "api.max_batch_rows", at_least(1), 1000, doc="Rows one POST array may create (413)."
    )
    write_attempts: int = setting(
        "api.write_attempts",
        at_least(1),
        3,
        doc="Times a write runs in all when MySQL rolls it back as a deadlock's victim "
        "(then 503 with code `40001`), or when its pooled connection was dropped before "
        "the write went out (a restart, a failover; then 503).",
    )
    require_if_match: bool = setting(
        "api.require_if_match", boolean, False, doc="Writes need `If-Match` (428 without)."
    )
    read_requires_token: bool = setting(
        "api.read_requires_token", boolean, False, doc="Reads need a token with `read`."
    )
    tokens: tuple[Token, ...] = setting(
        "api.tokens",
        parse_tokens,
        (),
        doc="Bearer tokens: whitespace-separated `SECRET:PERM[,PERM]` (`read`, `write`).",
        secret=True,
    )
    jwt_secret: tuple[Key, ...] = setting(
        "api.jwt_secret",
        parse_secret,
        (),
        doc="Bearer tokens may be JWTs signed with this: an HMAC passphrase (32 characters or "
        "more), or a JWK or JWK set of public keys as JSON; `@path` reads it from a file.",
        secret=True,
    )
    jwt_roles: Mapping[str, frozenset[str]] = setting(
        "api.jwt_roles",
        parse_roles,
        doc="What a JWT's role grants: whitespace-separated `ROLE:PERM[,PERM]`; a role not "
        "listed, or none, grants nothing.",
        default_factory=dict,
    )
    jwt_role_claim_key: tuple[str | int, ...] = setting(
        "api.jwt_role_claim_key",
        parse_claim_path,
        ("role",),
        doc="Where a JWT's claims hold its role, as PostgREST's path: `.role`, "
        "`.app_metadata.roles[0]`.",
    )
    jwt_secret_is_base64: bool = setting(
        "api.jwt_secret_is_base64",
        boolean,
        False,
        doc="`api.jwt_secret`'s passphrase is written in base64, as PostgREST's "
        "`jwt-secret-is-base64` says.",
    )
    jwt_aud: str | None = setting(
        "api.jwt_aud",
        lambda text: text.strip() or None,
        None,
        doc="A JWT whose `aud` claim names other audiences, not this one, is refused.",
    )
    cors_origins: tuple[str, ...] = setting(
        "api.cors_origins", words, (), doc="Origins allowed by CORS, or `*`; empty: CORS off."
    )
    declared_tables: bool = setting(
        "api.declared_tables",
        boolean,
        True,
        doc="Serve the tables declared in code (`api/models.py`), which Alembic migrates, and "
        "check their migration in `/__heartbeat__`; `false` for a database the API does not "
        "migrate.",
    )
    tables: tuple[str, ...] = setting(
        "api.tables",
        words,
        (),
        doc="Existing tables and views to serve by reflection: `*`, or names (views read-only "
        "unless MySQL can write through them).",
    )
    schemas: tuple[str, ...] = setting(
        "api.schemas",
        words,
        (),
        doc="Other databases of the same MySQL/MariaDB server, each served whole (tables, views, "
        "routines) as a "
        "PostgREST schema, picked by `Accept-Profile` (reads) or `Content-Profile` (writes).",
    )
    routines: tuple[str, ...] = setting(
        "api.routines",
        words,
        (),
        doc="Stored functions and procedures to serve at `/rpc/{name}`: `*`, or names.",
    )
    aggregates_enabled: bool = setting(
        "api.aggregates_enabled",
        boolean,
        False,
        doc="Aggregates in `select` (`count()`, `amount.sum()`), off as in PostgREST.",
    )
    plan_enabled: bool = setting(
        "api.plan_enabled",
        boolean,
        False,
        doc="`Accept: application/vnd.pgrst.plan+json` answers a read's plan (EXPLAIN).",
    )
    access_log: str = setting(
        "api.access_log",
        one_of("json", "human", "off"),
        "human",
        doc="A line per request on the `api.access` logger: `json`, `human` or `off`.",
    )
    metrics: bool = setting(
        "api.metrics", boolean, True, doc="`GET /metrics` in Prometheus's format; off: a 404."
    )
    metrics_token: str = setting(
        "api.metrics_token",
        str.strip,
        "",
        doc="When set, `/metrics` needs `Authorization: Bearer` with it.",
        secret=True,
    )
    version_column: str = setting(
        "api.version_column",
        str.strip,
        "version",
        doc="The integer column that versions a row (ETags, If-Match); others get content ETags.",
    )
    cursor_secret: bytes = setting(
        "api.cursor_secret",
        as_bytes,
        doc="Signs page cursors; without it they last as long as the process.",
        secret=True,
        default_factory=lambda: secrets.token_bytes(32),
    )

    def __post_init__(self) -> None:
        if not (self.declared_tables or self.tables or self.routines or self.schemas):
            raise SettingsError(
                "api.declared_tables: false, and api.tables and api.routines name nothing: "
                "there is nothing to serve; set api.tables (API_TABLES='*' serves every table)"
            )
        if self.page_limit_default > self.page_limit_max:
            raise SettingsError(
                "api.page_limit_default: expected at most api.page_limit_max "
                f"({self.page_limit_max}), got {self.page_limit_default}"
            )
        if self.jwt_secret_is_base64:
            try:  # frozen: the keys, decoded, in place of the ones parsed
                object.__setattr__(self, "jwt_secret", base64_passphrases(self.jwt_secret))
            except ValueError as exc:
                raise SettingsError(f"api.jwt_secret: {exc}") from None

    @property
    def read_pool_size(self) -> int:
        return self.db_pool_size if self.db_read_pool_size is None else self.db_read_pool_size

    @property
    def read_max_overflow(self) -> int:
        if self.db_read_max_overflow is None:
            return self.db_max_overflow
        return self.db_read_max_overflow


FIELDS = dataclasses.fields(Settings)


def load_settings(ini: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """``Settings`` from the environment (which wins) and the ini file's settings."""
    environ = os.environ if environ is None else environ
    values = {}
    for field in FIELDS:
        key, env = field.metadata["key"], field.metadata["env"]
        if environ.get(env):
            source, text = f"{env} (environment)", environ[env]
        elif ini.get(key) not in (None, ""):
            source, text = key, str(ini[key])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            missing = field.metadata["missing"]
            raise SettingsError(f"{key}: {missing}; set {env} or {key}")
        else:
            continue
        try:
            values[field.name] = field.metadata["parse"](text)
        except ValueError as exc:
            shown = "(hidden)" if not field.repr else repr(text)
            raise SettingsError(f"{source}: {exc}, got {shown}") from None
    return Settings(**values)


def includeme(config: Configurator) -> None:
    # Validated before anything else is configured: a bad value stops start-up.
    config.registry.api_settings = load_settings(config.registry.settings)
