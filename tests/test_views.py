"""Views: HEAD, exact integers, and the health endpoints."""

import orjson

from api.db import migrations_head


def test_head_answers_like_get_without_a_body(http):
    response = http.head("/mytable/1")
    got = http.get("/mytable/1")
    assert response.status_code == 200
    assert response.content == b""
    for header in ("content-type", "content-length", "etag"):
        assert response.headers[header] == got.headers[header]


def test_big_integers_are_exact(http, wsgi_app, backend):
    """A BIGINT beyond 2**53 comes back digit for digit, not as a rounded float."""
    import sqlalchemy as sa

    from api.models import mytable, utcnow

    # Beyond 2**53 a JSON number read as a double loses digits. (Not 2**63 - 1:
    # MariaDB's auto-increment would have nowhere left to go.)
    big = 2**53 + 1

    def insert():
        from api.bridge import await_

        engine = wsgi_app.registry.api_engines.current()

        async def go():
            async with engine.begin() as connection:
                await connection.execute(sa.delete(mytable).where(mytable.c.id == big))
                now = utcnow()
                await connection.execute(
                    sa.insert(mytable).values(
                        id=big, name="big", data={"n": 2**62}, created_at=now, updated_at=now
                    )
                )

        await_(go())

    wsgi_app.run(insert)
    response = http.get(f"/mytable/{big}")
    assert response.status_code == 200
    assert b'"id":9007199254740993' in response.content
    assert orjson.loads(response.content)["data"]["n"] == 2**62


def test_liveness_and_readiness(http):
    assert http.get("/__lbheartbeat__").json() == {"status": "ok"}
    ready = {"status": "ok", "database": "ok", "schema": migrations_head()}
    assert http.get("/__heartbeat__").json() == ready
