"""Several databases of one MariaDB server, served as PostgREST's schemas
(``api.schemas``): picked by ``Accept-Profile`` and ``Content-Profile``, over
HTTP and through postgrest-py's ``schema()``."""

import httpx
import pytest
from postgrest import SyncPostgrestClient
from sqlalchemy.engine import make_url

from api.bridge.asgi import ASGIApp
from api.collections import StartupError
from tests.support import TOKENS, WRITER, assert_problem, make_app, mariadb_database, run_sql
from tests.support.servers import ThreadedServer

DEFAULT_TABLES = [
    "CREATE TABLE actor (actor_id INT PRIMARY KEY, first_name VARCHAR(20) NOT NULL)",
    "INSERT INTO actor VALUES (1, 'PENELOPE')",
    "CREATE FUNCTION doubled(p INT) RETURNS INT DETERMINISTIC RETURN p * 2",
]
# The same name as the default's actor, of other columns; a parent and its child.
OTHER_TABLES = [
    "CREATE TABLE actor (id INT PRIMARY KEY, nick VARCHAR(20) NOT NULL)",
    "INSERT INTO actor VALUES (7, 'seven')",
    "CREATE TABLE country (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL)",
    "CREATE TABLE city (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20),"
    " country_id INT NOT NULL, FOREIGN KEY (country_id) REFERENCES country (id))",
    "INSERT INTO country VALUES (1, 'Utopia')",
    "INSERT INTO city (name, country_id) VALUES ('Sun', 1)",
    "CREATE FUNCTION tripled(p INT) RETURNS INT DETERMINISTIC RETURN p * 3",
    "CREATE PROCEDURE add_country(IN p_id INT, IN p_name VARCHAR(20)) MODIFIES SQL DATA"
    " INSERT INTO country VALUES (p_id, p_name)",
]


@pytest.fixture(scope="module")
def databases():
    (default, drop_default), (other, drop_other) = mariadb_database(), mariadb_database()
    run_sql(default, *DEFAULT_TABLES)
    run_sql(other, *OTHER_TABLES)
    yield default, other
    drop_default()
    drop_other()


@pytest.fixture(scope="module")
def served(databases):
    default, other = databases
    settings = {
        "api.tables": "*",
        "api.routines": "*",
        "api.schemas": make_url(other).database,
        "api.declared_tables": "false",
        "api.tokens": TOKENS,
    }
    app = make_app(default, **settings)
    with ThreadedServer(ASGIApp(app)) as server:
        yield server, make_url(default).database, make_url(other).database
    app.close()


def test_a_profile_picks_the_schema_each_answer_names(served):
    server, default, other = served
    with httpx.Client(base_url=server.url) as http:
        for headers in ({}, {"Accept-Profile": default}, {"Accept-Profile": "public"}):
            page = http.get("/actor/", headers=headers)
            assert page.json() == [{"actor_id": 1, "first_name": "PENELOPE"}]
            assert page.headers["Content-Profile"] == default
        page = http.get("/actor/", headers={"Accept-Profile": other})
        assert page.json() == [{"id": 7, "nick": "seven"}]
        assert page.headers["Content-Profile"] == other
        # Content-Profile picks a write's schema, not a read's.
        assert http.get("/actor/", headers={"Content-Profile": other}).json()[0]["actor_id"] == 1
        picked = {"Accept-Profile": other}
        embedded = http.get("/country/", params={"select": "name,city(name)"}, headers=picked)
        assert embedded.json() == [{"name": "Utopia", "city": [{"name": "Sun"}]}]
        assert http.get("/country/1/city/", headers=picked).json()[0]["name"] == "Sun"
        assert_problem(http.get("/country/"), 404)  # not the default's
        refused = assert_problem(http.get("/actor/", headers={"Accept-Profile": "nope"}), 406)
        assert refused["code"] == "PGRST106"
        assert refused["message"] == f"The schema must be one of the following: {default}, {other}"
        # Each schema's routines are its own.
        assert http.get("/rpc/doubled", params={"p": 2}).json() == 4
        assert http.get("/rpc/tripled", params={"p": 2}, headers=picked).json() == 6
        missing = http.get("/rpc/doubled", params={"p": 2}, headers=picked)
        assert assert_problem(missing, 404)["code"] == "PGRST202"
        assert_problem(http.get("/rpc/tripled", params={"p": 2}), 404)


def test_writes_land_in_the_schema_content_profile_names(served, databases):
    server, _, other = served
    written = {**WRITER, "Content-Profile": other}
    with httpx.Client(base_url=server.url) as http:
        created = http.post("/actor/", json={"id": 8, "nick": "eight"}, headers=written)
        assert created.status_code == 201, created.text
        assert created.headers["Location"].endswith("/actor/8")
        patched = http.patch("/actor/8", json={"nick": "ate"}, headers=written)
        assert patched.json()["nick"] == "ate"
        # The default's actor has no nick: a write without the profile is refused.
        refused = http.post("/actor/", json={"id": 9, "nick": "nine"}, headers=WRITER)
        assert_problem(refused, 422)
        read = http.get("/actor/8", headers={"Accept-Profile": other})
        assert read.json() == {"id": 8, "nick": "ate"}
        assert http.delete("/actor/8", headers=written).status_code == 204
        assert http.get("/actor/8", headers={"Accept-Profile": other}).status_code == 404


def test_each_schema_has_its_own_description(served):
    server, default, other = served
    with httpx.Client(base_url=server.url) as http:
        answer = http.get("/openapi.json", headers={"Accept-Profile": other})
        assert answer.headers["Content-Profile"] == other
        document = answer.json()
        assert {"/actor/", "/country/", "/city/"} <= set(document["paths"])
        assert "/rpc/doubled" not in document["paths"] and "/rpc/tripled" in document["paths"]
        document = http.get("/openapi.json").json()
        assert "/country/" not in document["paths"] and "/rpc/doubled" in document["paths"]
        listed = http.get("/", headers={"Accept-Profile": other}).json()["collections"]
        assert sorted(c["name"] for c in listed) == ["actor", "city", "country"]
        root = http.get("/")
        assert [c["name"] for c in root.json()["collections"]] == ["actor"]
        assert root.headers["Content-Profile"] == default


def test_postgrest_py_switches_schemas(served):
    server, _, other = served
    headers = {"Authorization": "Bearer writer-secret"}
    with SyncPostgrestClient(server.url, headers=headers) as client:
        assert client.from_("actor").select("*").execute().data[0]["first_name"] == "PENELOPE"
        there = client.schema(other)
        assert there.from_("actor").select("nick").eq("id", 7).execute().data == [
            {"nick": "seven"}
        ]
        there.from_("country").insert({"id": 2, "name": "Erewhon"}).execute()
        found = there.from_("country").select("name,city(name)").eq("id", 2).execute()
        assert found.data == [{"name": "Erewhon", "city": []}]
        there.from_("country").delete().eq("id", 2).execute()
        there.rpc("add_country", {"p_id": 3, "p_name": "Oz"}).execute()
        assert there.from_("country").select("name").eq("id", 3).execute().data == [{"name": "Oz"}]
        there.from_("country").delete().eq("id", 3).execute()


def test_a_database_without_tables_yet_is_served_empty(databases):
    """A database named in api.schemas is one of the schemas before it
    holds anything: a listing with no collections, not a 406."""
    default, _ = databases
    empty, drop = mariadb_database()
    try:
        app = make_app(default, **{"api.tables": "*", "api.schemas": make_url(empty).database})
        try:
            with ThreadedServer(ASGIApp(app)) as server:
                picked = {"Accept-Profile": make_url(empty).database}
                listed = httpx.get(f"{server.url}/", headers=picked)
                assert listed.status_code == 200 and listed.json()["collections"] == []
                assert_problem(httpx.get(f"{server.url}/actor/", headers=picked), 404)
        finally:
            app.close()
    finally:
        drop()


@pytest.mark.parametrize("naming", ["itself", "missing"])
def test_a_schema_that_cannot_be_served_stops_start_up(databases, naming):
    default, _ = databases
    schema = make_url(default).database if naming == "itself" else "api_no_such_database"
    with pytest.raises(StartupError, match=r"api\.schemas|could not read"):
        make_app(default, **{"api.tables": "*", "api.schemas": schema})


def test_sqlite_serves_one_schema(tmp_path):
    with pytest.raises(StartupError, match=r"api\.schemas"):
        make_app(f"sqlite+aiosqlite:///{tmp_path}/one.sqlite", **{"api.schemas": "other"})
