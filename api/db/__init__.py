"""The database: engines per event loop (``engines``), request sessions
joined to ``request.tm`` and which one reads a row (``sessions``), and what
the health checks ask of it (``health``)."""

from __future__ import annotations

import pyramid_tm
from pyramid.config import Configurator

from api.db.engines import Engines, create_engine, dispose_engines, get_engine, get_reader
from api.db.health import migrations_head, ping, schema_revision
from api.db.sessions import fetch_row, may_write, request_dbsession, retries_of

__all__ = [
    "create_engine",
    "fetch_row",
    "get_engine",
    "get_reader",
    "migrations_head",
    "ping",
    "schema_revision",
]


def includeme(config: Configurator) -> None:
    settings = config.registry.settings
    # One transaction manager per request: transaction.manager is thread-local,
    # and every request greenlet of a loop shares one thread. The function
    # itself, not its dotted name, which pyramid_tm would resolve on each request.
    settings["tm.manager_hook"] = pyramid_tm.explicit_manager
    settings.setdefault("tm.annotate_user", "false")
    settings["tm.activate_hook"] = may_write
    config.include("pyramid_tm")
    # A request whose transaction lost a deadlock runs again
    # (api.database_errors.deadlock_victim); a safe one has no transaction.
    settings["retry.attempts"] = config.registry.api_settings.write_attempts
    settings["retry.activate_hook"] = retries_of
    config.include("pyramid_retry")
    config.registry.api_engines = Engines(config.registry.api_settings)
    config.add_request_method(request_dbsession, "dbsession", reify=True)
    config.add_request_method(fetch_row, "fetch_row")
    config.add_loop_stopping_hook(dispose_engines)
