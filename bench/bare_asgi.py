"""The HTTP ceiling: an ASGI app that answers every request with one fixed JSON body."""

BODY = b'{"id":1,"name":"bench 1","data":{"n":1,"tags":["a","b"]},"version":1}'
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))],
}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send(START)
    await send({"type": "http.response.body", "body": BODY})
