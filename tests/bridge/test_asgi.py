"""The ASGI front door: bodies over the limit are refused, short bodies never processed."""

import asyncio

import pytest

from api.bridge.asgi import ASGIApp
from tests.support import WRITER, assert_problem, unique_name


def test_a_body_over_the_limit_is_413_before_it_is_read(http):
    response = http.post("/mytable/", content=b"x" * (64 * 1024 + 1))
    assert_problem(response, 413)


def _post_scope(announced):
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", WRITER["Authorization"].encode()),
        (b"content-length", str(announced).encode()),
    ]
    return {
        "type": "http",
        "method": "POST",
        "path": "/mytable/",
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
