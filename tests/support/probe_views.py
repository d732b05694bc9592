"""Test-only views, included with ``pyramid.includes = tests.probe_views``."""

import asyncio
import random

import sqlalchemy as sa
from pyramid.threadlocal import get_current_registry, get_current_request
from pyramid.view import view_config
from sqlalchemy.dialects import mysql

from api.bridge import await_
from api.collections import add_collection
from api.db import get_engine
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
    name = request.params.get("name", "dup")
    values = {"id": 1, "name": name, "created_at": now, "updated_at": now}
    await request.dbsession.execute(sa.insert(mytable).values(**values))


_missing_table = sa.Table("no_such_table", sa.MetaData(), sa.Column("name", sa.String(50)))


@view_config(context=Root, name="_probe_write_missing_table", request_method="POST")
async def write_missing_table(context, request):
    """A write whose statement the database refuses: its values must not reach the logs."""
    await request.dbsession.execute(sa.insert(_missing_table).values(name=request.params["name"]))


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


@view_config(context=Root, name="_probe_session_read", request_method="GET", renderer="json")
async def session_read(context, request):
    """A safe request (no transaction manager) that reads through request.dbsession.

    Reports how many pooled connections were out before it read: none, when
    the sessions of earlier safe requests were closed.
    """
    pool = get_engine(request).pool
    checked_out = pool.checkedout() if hasattr(pool, "checkedout") else None
    count = await request.dbsession.scalar(sa.select(sa.func.count()).select_from(mytable))
    return {"rows": count, "checked_out_before": checked_out}


# A test-only table with nullable columns of several types, served beside
# mytable: the query language is generic, and mytable has no nullable column
# that can be ordered by. The fixtures create it (it is not the app's schema).
probe_metadata = sa.MetaData()
probe_nullable = sa.Table(
    "probe_nullable",
    probe_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("score", sa.Integer, nullable=True),
    sa.Column("flag", sa.Boolean, nullable=True),
)
PROBE_ROWS = [
    {"score": score, "flag": flag}
    for score, flag in [
        (None, True),
        (3, None),
        (1, False),
        (None, None),
        (2, True),
        (2, False),
        (None, False),
        (5, True),
        (1, None),
        (None, True),
    ]
]


def includeme(config):
    config.scan(__name__)

    # pyramid.includes run before main() adds the add_collection directive,
    # so register when the configuration is committed.
    def add_probe_tables():
        probes = (probe_nullable, probe_coded, probe_small, probe_pair, probe_types, probe_checked)
        for table in (*probes, *BOOKS):
            add_collection(config, table)

    config.action(None, add_probe_tables)


# Test-only tables with other keys: a string, and an unsigned small integer
# that the API does not fill in.
probe_coded = sa.Table(
    "probe_coded",
    probe_metadata,
    sa.Column("code", sa.String(8), primary_key=True),
    sa.Column("label", sa.String(20), nullable=True),
)
probe_small = sa.Table(
    "probe_small",
    probe_metadata,
    sa.Column("id", mysql.SMALLINT(unsigned=True), primary_key=True, autoincrement=False),
    sa.Column("label", sa.String(20), nullable=True),
)
# A check constraint, which both databases enforce.
probe_checked = sa.Table(
    "probe_checked",
    probe_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("qty", sa.Integer),
    sa.CheckConstraint("qty > 0", name="qty_positive"),
)
# A composite key of a string and an integer, in that order.
probe_pair = sa.Table(
    "probe_pair",
    probe_metadata,
    sa.Column("code", sa.String(8), primary_key=True),
    sa.Column("n", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("label", sa.String(20), nullable=True),
)
# One column of each type both databases have (MariaDB's own: Sakila).
MOODS = ("low", "mid", "high")  # not in alphabetical order: the ENUM trap
probe_types = sa.Table(
    "probe_types",
    probe_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("day", sa.Date, nullable=True),
    sa.Column("clock", sa.Time, nullable=True),
    sa.Column("at", sa.DateTime, nullable=True),
    sa.Column("amount", sa.Float, nullable=True),
    sa.Column("flag", sa.Boolean, nullable=True),
    sa.Column("blob", sa.LargeBinary(16), nullable=True),
    sa.Column("mood", sa.Enum(*MOODS, name="mood"), nullable=True),
    sa.Column("tag", sa.String(40), nullable=True),
)

# Relations on both databases: authors write and edit books (two keys to one
# parent), books carry tags through a junction table.
probe_author = sa.Table(
    "probe_author",
    probe_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(40), nullable=False),
)
probe_book = sa.Table(
    "probe_book",
    probe_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(40), nullable=False),
    sa.Column("author_id", sa.Integer, sa.ForeignKey("probe_author.id"), nullable=False),
    sa.Column("editor_id", sa.Integer, sa.ForeignKey("probe_author.id"), nullable=True),
)
probe_tag = sa.Table(
    "probe_tag",
    probe_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("label", sa.String(20), nullable=False),
)
probe_book_tag = sa.Table(
    "probe_book_tag",
    probe_metadata,
    sa.Column("book_id", sa.Integer, sa.ForeignKey("probe_book.id"), primary_key=True),
    sa.Column("tag_id", sa.Integer, sa.ForeignKey("probe_tag.id"), primary_key=True),
)
# A table that refers to itself: each person's manager.
probe_person = sa.Table(
    "probe_person",
    probe_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(40), nullable=False),
    sa.Column("manager_id", sa.Integer, sa.ForeignKey("probe_person.id"), nullable=True),
)
BOOKS = (probe_author, probe_book, probe_tag, probe_book_tag, probe_person)
# Authors 1-4 (4 wrote nothing); books 1-6; tags 1-3 (3 on no book).
BOOK_ROWS = {
    probe_author: [
        {"id": n, "name": name} for n, name in enumerate(["Ann", "Bob", "Cy", "Di"], 1)
    ],
    probe_book: [
        {"id": 1, "title": "Alpha", "author_id": 1, "editor_id": 2},
        {"id": 2, "title": "Beta", "author_id": 1, "editor_id": None},
        {"id": 3, "title": "Gamma", "author_id": 1, "editor_id": 3},
        {"id": 4, "title": "Delta", "author_id": 2, "editor_id": 1},
        {"id": 5, "title": "Epsilon", "author_id": 3, "editor_id": 1},
        {"id": 6, "title": "Zeta", "author_id": 3, "editor_id": None},
    ],
    probe_tag: [{"id": n, "label": label} for n, label in enumerate(["new", "old", "odd"], 1)],
    # Eve manages Finn and Gus; Finn manages Hal.
    probe_person: [
        {"id": 1, "name": "Eve", "manager_id": None},
        {"id": 2, "name": "Finn", "manager_id": 1},
        {"id": 3, "name": "Gus", "manager_id": 1},
        {"id": 4, "name": "Hal", "manager_id": 2},
    ],
    probe_book_tag: [
        {"book_id": 1, "tag_id": 1},
        {"book_id": 1, "tag_id": 2},
        {"book_id": 2, "tag_id": 2},
        {"book_id": 5, "tag_id": 1},
    ],
}
