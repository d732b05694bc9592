"""Thin views: validate input, call a loader, return plain data.

``async def`` views are awaited by ``api.bridge.integration.await_coroutine_views``;
the ``json`` renderer is orjson. A module per kind of request: ``pages``
(reading a collection), ``items`` (item URLs), ``writes`` (writes to a
collection), ``service`` (the root, OpenAPI, health, 405s); ``responses``
holds what they share.
"""

from __future__ import annotations

from pyramid.config import Configurator

from api.resources import Collection, Item
from api.views.items import show_row
from api.views.pages import list_rows
from api.views.responses import json_renderer_factory, json_response_factory


def includeme(config: Configurator) -> None:
    config.add_renderer("json", json_renderer_factory)
    config.set_response_factory(json_response_factory)
    # Views of one context that differ only by method are tried in the order
    # they were added, and each one passed over raises an exception: the
    # reads, the hot path, go first.
    config.add_view(show_row, context=Item, request_method="GET", renderer="json")
    config.add_view(list_rows, context=Collection, request_method="GET")
    config.scan(__name__)  # every module of the package
