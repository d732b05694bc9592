"""Stored routines at /rpc/{name}, called as PostgREST's functions are: by
postgrest-py's rpc(), and over HTTP. On MariaDB: Sakila's own functions and
procedures, and routines of this module's that write, raise and give OUT
parameters. SQLite has none."""

import re

import httpx
import pytest
import webtest
from openapi_spec_validator import validate
from postgrest import APIError, SyncPostgrestClient

from api.bridge.asgi import ASGIApp
from api.collections import StartupError
from tests.support import (
    MARIADB_URL,
    TOKENS,
    WRITER,
    assert_problem,
    fetch_sql,
    make_app,
    mariadb_database,
    run_sql,
)
from tests.support.servers import ThreadedServer

ROUTINES = [
    "CREATE TABLE tag (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(40) NOT NULL UNIQUE)",
    # Writes a row, counts into an INOUT parameter; MODIFIES SQL DATA: no GET.
    """CREATE PROCEDURE add_tag(IN p_name VARCHAR(40), INOUT p_total INT) MODIFIES SQL DATA
    BEGIN
      INSERT INTO tag (name) VALUES (p_name);
      SELECT COUNT(*) + p_total INTO p_total FROM tag;
    END""",
    # Writes, then raises: the write must not stay.
    """CREATE PROCEDURE add_then_refuse(IN p_name VARCHAR(40)) MODIFIES SQL DATA
    BEGIN
      INSERT INTO tag (name) VALUES (p_name);
      SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused after writing';
    END""",
    """CREATE FUNCTION doubled(p_amount DECIMAL(10,2)) RETURNS DECIMAL(12,2) DETERMINISTIC
    BEGIN
      IF p_amount < 0 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'negative amount'; END IF;
      RETURN p_amount * 2;
    END""",
    "CREATE PROCEDURE nothing_back() BEGIN DO 1; END",
    # SELECT ... INTO of more than one row fails (ER_TOO_MANY_ROWS).
    """CREATE FUNCTION tag_like(p_pattern VARCHAR(40)) RETURNS INT READS SQL DATA
    BEGIN
      DECLARE v_id INT;
      SELECT id INTO v_id FROM tag WHERE name LIKE p_pattern;
      RETURN v_id;
    END""",
    # 1 DIV 0 fails under the server's ERROR_FOR_DIVISION_BY_ZERO (SQLSTATE 22012).
    "CREATE FUNCTION shares(p_total INT, p_parts INT) RETURNS INT DETERMINISTIC"
    " RETURN p_total DIV p_parts",
    # A subquery of more than one row (SQLSTATE 21000) once there are two tags.
    "CREATE FUNCTION only_tag() RETURNS VARCHAR(40) READS SQL DATA RETURN (SELECT name FROM tag)",
    "CREATE PROCEDURE read_doc(IN p_doc LONGTEXT) SELECT JSON_VALUE(p_doc, '$.a') AS a",
    # As many rows as asked for, up to a million (MariaDB's sequence engine; a
    # recursive CTE stops at max_recursive_iterations, 1,000 here).
    """CREATE PROCEDURE counted_rows(IN p_n INT) READS SQL DATA
    SELECT seq AS i FROM seq_1_to_1000000 WHERE seq <= p_n""",
    # Writes, answers rows, then raises: after rows, the error comes with the next result.
    """CREATE PROCEDURE rows_then_refuse(IN p_name VARCHAR(40)) MODIFIES SQL DATA
    BEGIN
      INSERT INTO tag (name) VALUES (p_name);
      SELECT name FROM tag;
      SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused after rows';
    END""",
]


@pytest.fixture(scope="module")
def rpc_url():
    url, drop = mariadb_database()
    run_sql(url, *ROUTINES)
    yield url
    drop()


def serve(url, **settings):
    app = make_app(url, **{"api.tokens": TOKENS, **settings})
    return app, ThreadedServer(ASGIApp(app))


@pytest.fixture(scope="module")
def own(rpc_url):
    app, server = serve(rpc_url, **{"api.tables": "*", "api.routines": "*"})
    with server as running:
        yield running
    app.close()


@pytest.fixture(scope="module")
def sakila_rpc(sakila_url):
    app, server = serve(sakila_url, **{"api.routines": "*"})
    with server as running:
        yield running
    app.close()


def client_of(server):
    return SyncPostgrestClient(server.url, headers={"Authorization": "Bearer writer-secret"})


def test_sakila_functions_and_procedures_through_postgrest_py(sakila_rpc):
    with client_of(sakila_rpc) as client:
        # A FUNCTION answers its value: DECIMAL with its exact digits.
        balance = client.rpc(
            "get_customer_balance",
            {"p_customer_id": 1, "p_effective_date": "2005-07-30T00:00:00Z"},
        ).execute()
        assert isinstance(balance.data, float | int)
        assert (
            client.rpc("inventory_in_stock", {"p_inventory_id": 1}, get=True).execute().data == 1
        )
        # A PROCEDURE's first result set is its rows.
        stock = client.rpc("film_in_stock", {"p_film_id": 1, "p_store_id": 1}).execute()
        assert stock.data == [{"inventory_id": n} for n in (1, 2, 3, 4)]
        got = client.rpc("film_in_stock", {"p_film_id": 1, "p_store_id": 1}, get=True).execute()
        assert got.data == stock.data
        with pytest.raises(APIError) as error:  # four rows are not one
            client.rpc("film_in_stock", {"p_film_id": 1, "p_store_id": 1}).single().execute()
        assert error.value.code == "PGRST116"
        with pytest.raises(APIError) as error:
            client.rpc("film_in_stock", {"p_film_id": 1}).execute()
        assert error.value.code == "PGRST202"
        assert "film_in_stock(p_film_id, p_store_id)" in error.value.hint


def test_balance_is_exact_json(sakila_rpc):
    body = {"p_customer_id": 1, "p_effective_date": "2005-07-30T00:00:00Z"}
    response = httpx.post(f"{sakila_rpc.url}/rpc/get_customer_balance", json=body, headers=WRITER)
    assert response.status_code == 200
    assert re.fullmatch(rb"[0-9]+\.[0-9]{2}", response.content)  # DECIMAL(5,2), as stored


def test_a_call_that_writes_commits_and_answers_out_parameters(own):
    with client_of(own) as client:
        first = client.rpc("add_tag", {"p_name": "red", "p_total": 100}).execute()
        assert first.data == {"p_total": 101}
        second = client.rpc("add_tag", {"p_name": "blue", "p_total": 0}).execute()
        assert second.data == {"p_total": 2}
        tags = client.from_("tag").select("name").order("id").execute().data
        assert [t["name"] for t in tags] == ["red", "blue"]
        # A duplicate is the table's unique key refusing it: 409, as a write by rows.
        with pytest.raises(APIError) as error:
            client.rpc("add_tag", {"p_name": "red", "p_total": 0}).execute()
        assert error.value.code == "23505"


def test_what_a_routine_signals_is_a_400_and_nothing_stays(own):
    with client_of(own) as client:
        with pytest.raises(APIError) as error:
            client.rpc("add_then_refuse", {"p_name": "green"}).execute()
        assert error.value.code == "P0001" and error.value.message == "refused after writing"
        assert client.from_("tag").select("name").eq("name", "green").execute().data == []
        with pytest.raises(APIError) as error:
            client.rpc("doubled", {"p_amount": -1}).execute()
        assert error.value.message == "negative amount"
        assert client.rpc("doubled", {"p_amount": "2.25"}).execute().data == 4.5
        # A routine's statement that fails is the routine's error too: it was a 503.
        for name in ("twice-a", "twice-b"):
            client.from_("tag").insert({"name": name}).execute()
        assert client.rpc("tag_like", {"p_pattern": "twice-a"}).execute().data is not None
        with pytest.raises(APIError) as error:
            client.rpc("tag_like", {"p_pattern": "twice-%"}).execute()
        assert error.value.code == "P0003"
        assert "more than one row" in error.value.message
        # A value the routine computes and the server refuses: PostgREST's 400 for a
        # data exception; it was a 503 that said the database was unavailable.
        assert client.rpc("shares", {"p_total": 7, "p_parts": 2}).execute().data == 3
        with pytest.raises(APIError) as error:
            client.rpc("shares", {"p_total": 7, "p_parts": 0}).execute()
        assert (error.value.code, error.value.message) == ("22012", "Division by 0")
        with pytest.raises(APIError) as error:  # the two twice- tags above
            client.rpc("only_tag", {}).execute()
        assert (error.value.code, error.value.message) == (
            "21000",
            "Subquery returns more than 1 row",
        )


def test_a_call_answers_at_most_the_largest_page(rpc_url):
    """As PostgREST's db-max-rows bounds a function's rows: the first
    api.page_limit_max of them, the total unknown. They are read unbuffered
    and the rest read past: a set of a million rows was held whole, 600 MB."""
    limits = {"api.page_limit_max": "5", "api.page_limit_default": "5"}
    app, server = serve(rpc_url, **{"api.tables": "tag", "api.routines": "*", **limits})
    with server as running:
        url = f"{running.url}/rpc"
        few = httpx.get(f"{url}/counted_rows?p_n=5")
        assert (few.json(), few.headers["content-range"]) == (
            [{"i": i} for i in range(1, 6)],
            "0-4/5",
        )
        many = httpx.get(f"{url}/counted_rows?p_n=100000")
        assert many.json() == few.json() and many.headers["content-range"] == "0-4/*"
        # A SIGNAL after the rows is still the call's error, and nothing it wrote stays.
        refused = httpx.post(f"{url}/rows_then_refuse", json={"p_name": "after"}, headers=WRITER)
        assert assert_problem(refused, 400)["message"] == "refused after rows"
        assert httpx.get(f"{running.url}/tag/?name=eq.after").json() == []
        assert httpx.get(f"{url}/doubled?p_amount=2").json() == 4
    app.close()


def test_a_call_whose_answer_the_client_cannot_take_is_406_and_never_made(own):
    url, writer = f"{own.url}/rpc", {"Authorization": WRITER["Authorization"]}
    headers = {**writer, "Accept": "image/png"}
    refused = httpx.post(f"{url}/add_tag", json={"p_name": "png", "p_total": 0}, headers=headers)
    assert assert_problem(refused, 406)["code"] == "PGRST107"
    assert_problem(httpx.get(f"{url}/doubled?p_amount=1", headers=headers), 406)
    with client_of(own) as client:
        assert client.from_("tag").select("name").eq("name", "png").execute().data == []
    taken = httpx.get(f"{url}/doubled?p_amount=1", headers={"Accept": "application/json, */*"})
    assert (taken.status_code, taken.json()) == (200, 2)


def test_each_answer_of_a_call_as_csv(sakila_rpc, own):
    with client_of(sakila_rpc) as client:
        # A procedure's rows, as postgrest-py's csv() asks for them.
        stock = client.rpc("film_in_stock", {"p_film_id": 1, "p_store_id": 1}).csv().execute()
        assert stock.data == "inventory_id\r\n1\r\n2\r\n3\r\n4\r\n"
    csv = {"Accept": "text/csv"}
    # A function's value: one cell, under the function's name.
    response = httpx.get(f"{own.url}/rpc/doubled?p_amount=1.25", headers=csv)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8; header=present"
    assert response.text == "doubled\r\n2.50\r\n"
    # OUT parameters: one row; the call's write is kept.
    response = httpx.post(
        f"{own.url}/rpc/add_tag", json={"p_name": "csv", "p_total": 0}, headers={**WRITER, **csv}
    )
    assert response.status_code == 200
    assert response.text.startswith("p_total\r\n") and response.text.count("\r\n") == 2
    assert httpx.get(f"{own.url}/tag/?name=eq.csv").json() != []
    # A result set with no rows: an empty line, as PostgREST writes no rows.
    response = httpx.get(
        f"{sakila_rpc.url}/rpc/film_in_stock?p_film_id=100000&p_store_id=1", headers=csv
    )
    assert (response.status_code, response.text) == (200, "\r\n")
    assert response.headers["content-range"] == "*/0"
    # Nothing back: still 204.
    response = httpx.post(f"{own.url}/rpc/nothing_back", json={}, headers={**WRITER, **csv})
    assert response.status_code == 204 and response.content == b""


def test_calls_over_http(own):
    url = own.url
    # A routine that modifies data is refused GET.
    response = httpx.get(f"{url}/rpc/add_tag?p_name=x&p_total=1")
    assert_problem(response, 405)
    assert response.headers["allow"] == "POST"
    # A call writes only with a write token.
    response = httpx.post(f"{url}/rpc/add_tag", json={"p_name": "x", "p_total": 1})
    assert_problem(response, 401)
    # No result set and no OUT parameter: 204.
    response = httpx.post(f"{url}/rpc/nothing_back", json={}, headers=WRITER)
    assert response.status_code == 204 and response.content == b""
    # Arguments are checked by their parameters' types.
    response = httpx.get(f"{url}/rpc/doubled?p_amount=abc")
    assert assert_problem(response, 400)["parameter"] == "p_amount"
    response = httpx.post(f"{url}/rpc/doubled", json={"p_amount": [1]}, headers=WRITER)
    assert assert_problem(response, 422)["errors"][0]["field"] == "p_amount"
    response = httpx.post(f"{url}/rpc/doubled", json=[1], headers=WRITER)
    assert_problem(response, 422)
    response = httpx.post(f"{url}/rpc/doubled", json={"p_amount": 4e307}, headers=WRITER)
    assert assert_problem(response, 422)["errors"][0]["field"] == "p_amount"  # was a 500
    # A form's fields are text, read as a GET's query string is.
    response = httpx.post(f"{url}/rpc/doubled", data={"p_amount": "2.50"}, headers=WRITER)
    assert response.json() == 5.0
    response = httpx.post(f"{url}/rpc/doubled", data={"p_amount": "abc"}, headers=WRITER)
    assert assert_problem(response, 400)["parameter"] == "p_amount"
    response = httpx.post(f"{url}/rpc/add_tag", data={"p_name": "form"}, headers=WRITER)
    assert assert_problem(response, 404)["code"] == "PGRST202"  # p_total is missing
    assert httpx.get(f"{url}/tag/?name=eq.form").json() == []
    # What a CALL's rows cannot be put through is named.
    response = httpx.get(f"{url}/rpc/doubled?p_amount=1&order=value")
    assert "MySQL cannot" in assert_problem(response, 400)["detail"]
    # A filter on them is refused, not dropped (a POST answered every row), and nothing is called.
    filtered = {"json": {"p_name": "filtered", "p_total": 1}, "headers": WRITER}
    response = httpx.post(f"{url}/rpc/add_tag?name=eq.other", **filtered)
    assert assert_problem(response, 400)["parameter"] == "name"
    assert httpx.get(f"{url}/tag/?name=eq.filtered").json() == []
    response = httpx.get(f"{url}/rpc/doubled?p_amount=1&doubled=gt.5")
    assert assert_problem(response, 400)["parameter"] == "doubled"
    assert assert_problem(httpx.get(f"{url}/rpc/nope"), 404)["code"] == "PGRST202"
    # Prefer: params=single-object gives the whole body to a routine's one parameter.
    headers = {**WRITER, "Prefer": "params=single-object"}
    response = httpx.post(f"{url}/rpc/read_doc", json={"a": 5, "b": [1]}, headers=headers)
    assert response.json() == [{"a": "5"}]
    # Prefer: tx=rollback answers the call and keeps nothing.
    headers = {**WRITER, "Prefer": "tx=rollback"}
    response = httpx.post(
        f"{url}/rpc/add_tag", json={"p_name": "dry", "p_total": 0}, headers=headers
    )
    assert response.status_code == 200
    assert httpx.get(f"{url}/tag/?name=eq.dry").json() == []


def test_routines_on_sqlite_and_at_start_up(tmp_path, rpc_url):
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path}/none.sqlite"
    # SQLite has no stored routines: "*" serves none, and a name stops start-up.
    app = make_app(sqlite_url, **{"api.routines": "*"})
    assert app.registry.api_routines == {}
    app.close()
    with pytest.raises(StartupError, match="no stored routines"):
        make_app(sqlite_url, **{"api.routines": "doubled"})
    with pytest.raises(StartupError, match="no routine named nope"):
        make_app(rpc_url, **{"api.routines": "doubled nope"})
    app = make_app(rpc_url, **{"api.routines": "doubled"})
    assert list(app.registry.api_routines) == ["doubled"]
    app.close()


def test_openapi_describes_each_routine(own):
    document = httpx.get(f"{own.url}/openapi.json").json()
    validate(document)
    paths = document["paths"]
    assert set(paths["/rpc/add_tag"]) == {"post"}  # MODIFIES SQL DATA: no GET
    assert set(paths["/rpc/doubled"]) == {"get", "post"}
    body = paths["/rpc/add_tag"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["p_name", "p_total"]
    assert body["properties"]["p_name"] == {"type": ["string", "null"], "maxLength": 40}
    value = paths["/rpc/doubled"]["get"]["responses"]["200"]["content"]["application/json"]
    assert value["schema"]["multipleOf"] == 0.01
    assert "text/csv" in paths["/rpc/doubled"]["get"]["responses"]["200"]["content"]


def test_routines_are_read_under_a_server_s_ansi_quotes(rpc_url):
    """Under sql_mode ANSI_QUOTES, SQLAlchemy's parser of MySQL's column
    definitions takes "name", not `name`: each parameter's type went
    unread, and start-up failed ("cannot read the type 'decimal(10,2)'")."""
    (mode,) = fetch_sql(MARIADB_URL, "SELECT @@GLOBAL.sql_mode")[0]
    run_sql(MARIADB_URL, "SET GLOBAL sql_mode = 'ANSI_QUOTES,STRICT_TRANS_TABLES'")
    try:
        app = make_app(rpc_url, **{"api.routines": "*", "api.tables": "tag"})
        try:
            client = webtest.TestApp(app)
            assert client.get("/rpc/doubled", params={"p_amount": "2.5"}).json == 5
            assert client.get("/tag/").status_code == 200
        finally:
            app.close()
    finally:
        run_sql(MARIADB_URL, f"SET GLOBAL sql_mode = '{mode}'")
