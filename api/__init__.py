"""An async JSON API over database tables, on Pyramid traversal."""

from pyramid.config import Configurator

from api.bridge import WSGIApp


def main(global_config, **settings):
    """The PasteDeploy app factory: wiring only."""
    with Configurator(settings=settings) as config:
        # request greenlets and async def views
        config.include("api.bridge")
        # problem+json for every error
        config.include("api.errors")
        # engines per event loop, request sessions, pyramid_tm
        config.include("api.db")
        # bearer tokens, the security policy, CORS
        config.include("api.security")
        # body size, depth and batch limits
        config.include("api.validation")
        # the resource tree and the add_collection directive
        config.include("api.resources")
        # the tables served as collections
        config.include("api.models")
        # views (GET /openapi.json among them) and the orjson renderer
        config.include("api.views")
    # The WSGI front door; api.serve wraps the same router in the ASGI one.
    return WSGIApp(config.make_wsgi_app())
