"""Test-only views, included with ``pyramid.includes = tests.probe_views``."""

import asyncio
import random

import sqlalchemy as sa
from pyramid.threadlocal import get_current_registry, get_current_request
from pyramid.view import view_config

from api.bridge import await_
from api.models import mytable, utcnow
from api.resources import Root


def _locals_ok(request):
    return get_current_request() is request and get_current_registry() is request.registry


@view_config(context=Root, name="_probe_sync_locals", renderer="json")
def sync_locals(context, request):
    """Checks the thread-locals in the request greenlet, before and after an await."""
    checks = [_locals_ok(request)]
    await_(asyncio.sleep(random.random() / 50))
    checks.append(_locals_ok(request))
    return {"n": request.params["n"], "ok": all(checks)}


@view_config(context=Root, name="_probe_async_locals", renderer="json")
async def async_locals(context, request):
    """Checks the thread-locals in an async view's coroutine, across awaits."""
    checks = [_locals_ok(request)]
    for _ in range(3):
        await asyncio.sleep(random.random() / 50)
        checks.append(_locals_ok(request))
    return {"n": request.params["n"], "ok": all(checks)}


async def _insert(request, name):
    now = utcnow()
    values = {"name": name, "created_at": now, "updated_at": now}
    await request.dbsession.execute(sa.insert(mytable).values(**values))


@view_config(context=Root, name="_probe_write", request_method="POST", renderer="json")
async def write(context, request):
    await _insert(request, request.params["name"])
    return {"written": request.params["name"]}


@view_config(context=Root, name="_probe_write_then_fail", request_method="POST")
async def write_then_fail(context, request):
    await _insert(request, request.params["name"])
    raise RuntimeError("failing after a write: the write must be rolled back")


@view_config(context=Root, name="_probe_duplicate_key", request_method="POST")
async def duplicate_key(context, request):
    """Inserts a row whose primary key exists: a unique violation."""
    now = utcnow()
    values = {"id": 1, "name": "dup", "created_at": now, "updated_at": now}
    await request.dbsession.execute(sa.insert(mytable).values(**values))


@view_config(
    context=Root, name="_probe_write_then_traverse", request_method="POST", renderer="json"
)
def write_then_traverse(context, request):
    """Inserts a row, then finds it through traversal in the same transaction.

    A plain def view: it runs in the request greenlet, where traversal may await_().
    """
    now = utcnow()
    values = {"name": request.params["name"], "created_at": now, "updated_at": now}
    result = await_(request.dbsession.execute(sa.insert(mytable).values(**values)))
    (pk,) = result.inserted_primary_key
    return context["mytable"][str(pk)].row


def includeme(config):
    config.scan(__name__)
