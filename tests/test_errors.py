"""Every error leaves as problem+json, the 500 and a missing database included."""

import pytest

from tests.support import assert_problem, make_app
from tests.support.servers import ThreadedServer, free_port


def test_an_unhandled_error_is_a_500_problem_without_a_traceback(http):
    response = http.post("/_probe_write_then_fail", params={"name": "fails"})
    body = assert_problem(response, 500)
    assert "RuntimeError" not in response.text
    assert body["detail"] == "The server failed to answer this request."


def test_a_database_that_is_not_there_is_503_and_liveness_still_answers(tmp_path):
    """A MariaDB URL with nothing listening: the API starts, and answers 503 for data."""
    import httpx

    from api.bridge.asgi import ASGIApp

    url = f"mysql+asyncmy://root@127.0.0.1:{free_port()}/test"
    app = make_app(url, **{"db.connect_timeout": "1"})
    with ThreadedServer(ASGIApp(app)) as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/__lbheartbeat__").status_code == 200
        for path in ("/__heartbeat__", "/mytable/1", "/mytable/"):
            response = http.get(path)
            assert_problem(response, 503)
            assert response.headers["retry-after"] == "1"
        # An export reads its first batch before it answers: a 503, not a 200 cut off
        for media_type in ("application/x-ndjson", "text/csv"):
            assert_problem(http.get("/mytable/", headers={"Accept": media_type}), 503)


@pytest.mark.parametrize(
    ("setting", "message"),
    [({}, "no database URL"), ({"sqlalchemy.url": "not a url"}, "Could not parse")],
)
def test_a_missing_or_malformed_database_url_fails_at_start(setting, message, monkeypatch):
    from api import main

    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(Exception, match=message):
        main({}, **setting)


def test_a_problem_carries_postgrest_members_for_postgrest_clients(http):
    problem = assert_problem(http.get("/mytable/?id=eq.x"), 400)
    assert problem["code"] == "PGRST100"
    assert problem["message"] == problem["detail"]
    assert problem["details"] is None and problem["hint"] is None
    assert assert_problem(http.get("/nothing/"), 404)["code"] == "PGRST205"


def test_a_unique_violation_has_postgresql_s_code(http):
    response = http.post("/_probe_duplicate_key", params={"name": "dup"})
    assert assert_problem(response, 409)["code"] == "23505"
