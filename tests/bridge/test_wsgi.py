"""The WSGI front door: the same API, its own loop, released when the app closes."""

from tests.support import PROBLEM, WRITER, make_app


def test_closing_the_wsgi_app_disposes_of_its_background_engine(database_url):
    app = make_app(database_url)
    assert app.run(lambda: app.registry.api_engines.current()) is not None
    assert len(app.registry.api_engines.by_loop) == 1
    app.close()
    assert len(app.registry.api_engines.by_loop) == 0


def test_the_wsgi_front_door_serves_the_same_api(testapp):
    assert testapp.get("/mytable/2").json["name"] == "demo 2"
    response = testapp.get("/mytable/abc", status=404)
    assert response.content_type == PROBLEM


def test_the_wsgi_front_door_refuses_a_body_over_the_limit(testapp):
    response = testapp.post(
        "/mytable/",
        params=b'{"name": "' + b"x" * (64 * 1024) + b'"}',
        headers={**WRITER, "Content-Type": "application/json"},
        status=413,
    )
    assert response.content_type == "application/problem+json"
