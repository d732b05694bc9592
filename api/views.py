"""Thin views: validate input, call a loader, return plain data.

``async def`` views are awaited by ``api.bridge.await_coroutine_views``; the
``json`` renderer is orjson.
"""

import orjson
from pyramid.httpexceptions import HTTPMethodNotAllowed
from pyramid.view import view_config

from api import queries
from api.db import get_engine, ping
from api.errors import BadRequest, DatabaseUnavailable
from api.resources import Collection, Item, Root

_ORJSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def json_renderer_factory(info):
    def render(value, system):
        request = system.get("request")
        if request is not None:
            response = request.response
            if response.content_type == response.default_content_type:
                response.content_type = "application/json"
                response.charset = None
        return orjson.dumps(value, option=_ORJSON_OPTIONS)

    return render


@view_config(context=Root, request_method="GET", renderer="json")
def list_collections(context, request):
    return {
        "collections": [
            {"name": name, "href": request.resource_url(context[name])}
            for name in request.registry.api_collections
        ]
    }


def _int_param(request, name, default, minimum, maximum):
    values = request.GET.getall(name)
    if not values:
        return default
    if len(values) > 1:
        raise BadRequest(f"'{name}' may be given only once", parameter=name)
    value = values[0]
    if not value.isdigit() or not minimum <= int(value) <= maximum:
        raise BadRequest(
            f"'{name}' must be an integer from {minimum} to {maximum}", parameter=name
        )
    return int(value)


@view_config(context=Collection, request_method="GET", renderer="json")
async def list_rows(context, request):
    settings = request.registry.api_paging
    limit = _int_param(request, "limit", settings["default"], 1, settings["max"])
    after = _int_param(request, "after", 0, 0, 2**63 - 1)
    rows = await queries.load_page(request.dbsession, context.table, after, limit + 1)
    next_url = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1][queries.primary_key(context.table).name]
        next_url = request.resource_url(context, query={"limit": limit, "after": last})
        request.response.headers["Link"] = f'<{next_url}>; rel="next"'
    return {"items": rows, "next": next_url}


@view_config(context=Item, request_method="GET", renderer="json")
def show_row(context, request):
    return context.row


@view_config(context=Root)
@view_config(context=Collection)
@view_config(context=Item)
def method_not_allowed(context, request):
    raise HTTPMethodNotAllowed(headers={"Allow": ", ".join(context.allowed_methods)})


# Health endpoints: names start with "_", which no collection may (api.resources).


@view_config(context=Root, name="__lbheartbeat__", renderer="json")
def liveness(context, request):
    """The process answers; the database is not touched."""
    return {"status": "ok"}


@view_config(context=Root, name="__heartbeat__", renderer="json")
async def readiness(context, request):
    """The database answers a round trip within ``db.ping_timeout`` seconds."""
    try:
        await ping(get_engine(request), request.registry.api_ping_timeout)
    except Exception as exc:
        raise DatabaseUnavailable(str(exc)) from exc
    return {"status": "ok", "database": "ok"}


def includeme(config):
    settings = config.registry.settings
    config.add_renderer("json", json_renderer_factory)
    config.registry.api_paging = {
        "default": int(settings.get("api.page_limit_default", 50)),
        "max": int(settings.get("api.page_limit_max", 500)),
    }
    config.scan(__name__)
