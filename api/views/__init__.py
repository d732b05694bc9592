"""Thin views: validate input, call a loader, return plain data.

``async def`` views are awaited by ``api.bridge.integration.await_coroutine_views``;
the ``json`` renderer is orjson. A module per kind of request: ``pages``
(reading a collection), ``items`` (item URLs), ``writes`` (writes to a
collection), ``service`` (the root, OpenAPI, health, 405s); ``responses``
holds what they share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request

from api.resources import Collection, Item
from api.security import BY_METHOD
from api.views.items import ITEM_WRITES, show_row
from api.views.pages import list_rows
from api.views.responses import json_renderer_factory, json_response_factory
from api.views.service import method_not_allowed
from api.views.writes import COLLECTION_WRITES

View = Callable[[Any, Request], Any]


def by_method(views: Mapping[str, View]) -> View:
    """One view for every method of a context, which calls ``views``'s
    function of the request's method (``method_not_allowed`` for the rest).

    Pyramid tries a context's views in turn, and each one it passes over
    raises an exception response (``PredicateMismatch``), which a write
    paid for the read's view before it. The permission is the
    method's (``api.security.BY_METHOD``). It is named for the functions it
    calls, which ``pviews`` shows."""

    def answer_by_method(context: Any, request: Request) -> Any:
        return views.get(request.method, method_not_allowed)(context, request)

    called = ", ".join(f"{m}: {v.__module__}.{v.__name__}" for m, v in views.items())
    answer_by_method.__name__ = f"by_method({called})"
    return answer_by_method


def includeme(config: Configurator) -> None:
    config.add_renderer("json", json_renderer_factory)
    config.set_response_factory(json_response_factory)
    reads = ("GET", "HEAD")
    item = by_method({**dict.fromkeys(reads, show_row), **ITEM_WRITES})
    collection = by_method({**dict.fromkeys(reads, list_rows), **COLLECTION_WRITES})
    config.add_view(item, context=Item, permission=BY_METHOD, renderer="json")
    config.add_view(collection, context=Collection, permission=BY_METHOD)
    config.scan(__name__)  # every module of the package
