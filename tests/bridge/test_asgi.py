"""The ASGI front door: bodies over the limit are refused, short bodies never processed."""

import asyncio
import gzip
import itertools

import orjson
import pytest
import sqlalchemy as sa

from api.bridge import greenlets
from api.bridge.asgi import ASGIApp
from api.views import bodies
from tests.support import PROBE_SETTINGS, WRITER, assert_problem, make_app, unique_name


def test_a_body_over_the_limit_is_413_before_it_is_read(http):
    response = http.post("/mytable/", content=b"x" * (64 * 1024 + 1))
    assert_problem(response, 413)


@pytest.mark.parametrize("coding", ["gzip", "br", "GZIP"])
def test_a_body_with_a_content_coding_is_415_and_nothing_is_written(http, coding):
    """gzip'd JSON was read as text, a 400 about UTF-8; RFC 9110 asks a 415
    that says which codings are taken."""
    name = unique_name("gzipped")
    body = gzip.compress(orjson.dumps({"name": name}))
    headers = {**WRITER, "Content-Type": "application/json", "Content-Encoding": coding}
    response = http.post("/mytable/", content=body, headers=headers)
    assert_problem(response, 415)
    assert response.headers["accept-encoding"] == "identity"
    assert http.get(f"/mytable/?name=eq.{name}").json() == []
    identity = {**headers, "Content-Encoding": "identity"}
    sent = http.post("/mytable/", content=orjson.dumps({"name": name}), headers=identity)
    assert sent.status_code == 201
    assert http.delete(f"/mytable/{sent.json()[0]['id']}", headers=WRITER).status_code == 204


@pytest.mark.parametrize(
    ("media_type", "body"),
    [("Application/JSON; charset=UTF-8", b'{"name": "%s"}'), ("TEXT/CSV", b"name\r\n%s\r\n")],
)
def test_a_media_type_is_read_whatever_its_case(http, media_type, body):
    """RFC 9110 8.3.1: type and subtype are case-blind. Application/JSON was a 415."""
    name = unique_name("cased")
    headers = {**WRITER, "Content-Type": media_type}
    sent = http.post("/mytable/", content=body % name.encode(), headers=headers)
    assert sent.status_code == 201, sent.text
    (created,) = sent.json()
    assert created["name"] == name
    assert http.delete(f"/mytable/{created['id']}", headers=WRITER).status_code == 204


COUNTED = {"Prefer": "count=exact"}


def _post_scope(announced, path="/mytable/"):
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", WRITER["Authorization"].encode()),
        (b"content-length", str(announced).encode()),
    ]
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": headers,
    }


@pytest.mark.parametrize("ending", ["disconnect", "fewer bytes"])
def test_a_body_shorter_than_announced_writes_nothing(http, wsgi_app, ending):
    """Content-Length 1000 and 26 bytes of valid JSON: the client went away
    mid-body, or the server was handed fewer bytes than announced."""
    name = unique_name("cut")[:20]
    body = f'{{"name": "{name}"}}'.encode()
    if ending == "disconnect":
        messages = [
            {"type": "http.request", "body": body, "more_body": True},
            {"type": "http.disconnect"},
        ]
    else:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    # The call returns once the request is done with, processed or not.
    asyncio.run(ASGIApp(wsgi_app)(_post_scope(1000), receive, send))
    assert not any(m.get("status") == 201 for m in sent)
    assert http.get("/mytable/", params={"name": f"eq.{name}"}).json() == []


def test_deadlines_cancel_what_outlives_them_and_spare_what_was_lifted():
    from api.bridge.asgi import Deadlines

    async def scenario():
        deadlines = Deadlines(0.05, asyncio.get_running_loop())
        outcomes = {}

        async def request(name, lift_after):
            deadline = deadlines.set()
            try:
                await asyncio.sleep(lift_after)
                deadline.lift()
                await asyncio.sleep(0.1)  # past the deadline, lifted: not cancelled
                outcomes[name] = "done"
            except asyncio.CancelledError:
                outcomes[name] = "cancelled" if deadline.expired else "cancelled by others"

        await asyncio.gather(request("quick", 0), request("slow", 10), request("quick 2", 0))
        return outcomes, len(deadlines.pending), deadlines.timer

    outcomes, pending, timer = asyncio.run(scenario())
    assert outcomes == {"quick": "done", "slow": "cancelled", "quick 2": "done"}
    assert (pending, timer) == (0, None)


def test_deadlines_lifted_in_order_do_not_pile_up():
    from api.bridge.asgi import Deadlines

    async def scenario():
        deadlines = Deadlines(60, asyncio.get_running_loop())
        for _ in range(1000):
            deadlines.set().lift()
        return len(deadlines.pending)

    assert asyncio.run(scenario()) == 1  # the last one, until the next is set


def test_repeated_headers_reach_the_app_as_one_list(http):
    """Two Prefer headers are one list of preferences (RFC 9110 5.3): the
    first is not lost to the second."""
    headers = [("Prefer", "count=exact"), ("Prefer", "return=representation")]
    response = http.get("/mytable/", params={"limit": "1"}, headers=headers)
    assert response.status_code == 206  # one row of an exact count: a part
    assert response.headers["content-range"].split("/")[1].isdigit()


def test_a_bulk_write_lets_the_worker_answer_others_between_its_rows(
    http, database_url, monkeypatch
):
    """Checking and binding 1,000 rows takes milliseconds of one request's
    turn on the loop; it gives the loop back now and then (give_way). A
    heartbeat asked for while a POST's rows are being checked is answered
    before the last row is, and every row is written."""
    monkeypatch.setattr(greenlets, "TURN", 0.0)  # each look at the clock gives way
    wsgi = make_app(database_url, **{**PROBE_SETTINGS, "api.max_batch_rows": "300"})
    app = ASGIApp(wsgi)
    name = unique_name("turns")[:20]
    body = orjson.dumps([{"name": name}] * 300)
    happened, asked = [], []

    def on_statement(connection, cursor, sql, *args):
        if sql.lstrip().upper().startswith("INSERT"):
            happened.append("INSERT")

    def recorder(what):
        async def send(message):
            if message["type"] == "http.response.start":
                happened.append((what, message["status"]))

        return send

    heartbeat = {**_post_scope(0, "/__lbheartbeat__"), "method": "GET", "headers": []}
    checked = itertools.count(1)

    def validate_row(*args, **kwargs):  # at the 150th row, another client asks
        count = next(checked)
        if count == 150:
            asked.append(asyncio.ensure_future(app(heartbeat, _body, recorder("heartbeat"))))
        elif count == 300:
            happened.append("the last row checked")
        return bodies.validate_row.__wrapped__(*args, **kwargs)

    async def scenario():
        one = orjson.dumps({"name": name})  # the pools connected, the statements compiled
        await app(_post_scope(len(one)), lambda: _body(one), recorder("warm-up"))
        happened.clear()
        await app(_post_scope(len(body)), lambda: _body(body), recorder("POST"))
        await asyncio.gather(*asked)
        await wsgi.registry.api_engines.dispose(asyncio.get_running_loop())

    validate_row.__wrapped__ = bodies.validate_row
    monkeypatch.setattr(bodies, "validate_row", validate_row)
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", on_statement)
    try:
        asyncio.run(scenario())
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", on_statement)
    assert happened == [("heartbeat", 200), "the last row checked", "INSERT", ("POST", 201)]
    mine = {"name": f"eq.{name}"}
    stored = http.get("/mytable/", params={**mine, "select": "id", "limit": "1"}, headers=COUNTED)
    assert stored.headers["content-range"].endswith("/301")  # the warm-up's row too
    deleted = http.delete("/mytable/", params=mine, headers=WRITER)  # others count the rows
    assert deleted.status_code == 200 and len(deleted.json()) == 301


async def _body(body=b""):
    return {"type": "http.request", "body": body, "more_body": False}
