"""Logs: no secret and no row value in them, and an outage logged once per interval."""

import logging

import httpx

from api.bridge.asgi import ASGIApp
from api.logs import loggable_query
from tests.support import assert_problem, make_app, unique_name
from tests.support.servers import ThreadedServer, free_port


def _api_log(caplog):
    """What the API logged (not the test's own HTTP client), tracebacks included."""
    handler = logging.Handler()
    return "\n".join(
        handler.format(record) for record in caplog.records if record.name.startswith("api")
    )


def test_a_500_logs_its_query_without_credentials(http, caplog):
    caplog.set_level(logging.INFO)
    query = "name=fails&access_token=SECRET-1&api_key=SECRET-2&password=SECRET-3&order=id"
    assert_problem(http.post(f"/_probe_write_then_fail?{query}"), 500)
    logged = _api_log(caplog)
    assert "unhandled error on POST /_probe_write_then_fail?name=fails" in logged
    assert "SECRET" not in logged
    assert "access_token=[redacted]" in logged and "order=id" in logged


def test_only_the_values_of_credential_like_names_are_redacted():
    query = "select=id,name&API-Key=k1&order=id.desc&my_token=t1&token&=x&note=auth%20free"
    logged = (
        "select=id,name&API-Key=[redacted]&order=id.desc&my_token=[redacted]"
        "&token&=x&note=auth%20free"
    )
    assert loggable_query(query) == logged
    assert loggable_query(query) == logged  # each name's answer as it was the first time


def test_a_failed_write_logs_no_row_value(http, caplog):
    """A 409 (duplicate key), and a statement the database refuses (a 500 on
    MariaDB, a 503 on SQLite): neither logs the values written."""
    caplog.set_level(logging.DEBUG, logger="api")
    name = unique_name("private")
    assert_problem(http.post("/_probe_duplicate_key", params={"name": name}), 409)
    response = http.post("/_probe_write_missing_table", data={"name": name})  # not in the URL
    assert response.status_code in (500, 503)
    logged = _api_log(caplog)
    assert "integrity error" in logged
    assert name not in logged


def test_an_outage_is_logged_once_per_interval_with_a_count(caplog):
    caplog.set_level(logging.WARNING, logger="api")
    url = f"mysql+asyncmy://root@127.0.0.1:{free_port()}/test"
    app = make_app(url, **{"db.connect_timeout": "1"})
    with ThreadedServer(ASGIApp(app)) as server, httpx.Client(base_url=server.url) as client:
        for _ in range(30):
            assert_problem(client.get("/mytable/1"), 503)
    unavailable = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(unavailable) == 1, [r.getMessage() for r in unavailable]
    app.close()
