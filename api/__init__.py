"""An async JSON API over database tables, on Pyramid traversal."""

from typing import Any

from pyramid.config import Configurator

from api.bridge.wsgi import WSGIApp
from api.collections import StartupError
from api.reflection import add_reflected_tables
from api.settings import SettingsError


def main(global_config: dict[str, Any], **settings: Any) -> WSGIApp:
    """The PasteDeploy app factory: wiring only."""
    with Configurator(settings=settings) as config:
        # every setting, validated: registry.api_settings
        config.include("api.settings")
        # request greenlets and async def views
        config.include("api.bridge")
        # problem+json for every error
        config.include("api.errors")
        # failed requests let go of their tracebacks (no reference cycle)
        config.include("api.tracebacks")
        # engines per event loop, request sessions, pyramid_tm
        config.include("api.db")
        # bearer tokens, the security policy, CORS
        config.include("api.security")
        # the resource tree and the add_collection directive
        config.include("api.resources")
        # the tables declared in code, served as collections
        config.include("api.models")
        # the existing tables and views that api.tables names, reflected
        config.include(add_reflected_tables)
        # the stored routines that api.routines names, at /rpc/{name}
        config.include("api.routines")
        # views (GET /openapi.json among them) and the orjson renderer
        config.include("api.views")
    # The WSGI front door; api.serve wraps the same router in the ASGI one.
    return WSGIApp(config.make_wsgi_app())


def paste_main(global_config: dict[str, Any], **settings: Any) -> WSGIApp:
    """``main`` for PasteDeploy's tools (pserve, pshell, prequest, pviews):
    a setting or a table that stops start-up is one line that says why and
    how to mend it, and a non-zero exit, not a traceback."""
    try:
        return main(global_config, **settings)
    except (SettingsError, StartupError) as exc:
        raise SystemExit(f"api: cannot start: {exc}") from None
