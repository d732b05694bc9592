"""Text under MySQL's collations and character sets, on MariaDB: MySQL's
world sample keeps countries by a CHAR(3) code, and a city may name its
country in another case (the foreign key takes ``usa`` for ``USA``). The
API answers as the database compares, as its filters and writes do; a
latin1 column refuses what latin1 cannot hold, and the message says which."""

import httpx
import pytest

from api.bridge.asgi import ASGIApp
from tests.support import make_app, mariadb_database, run_sql
from tests.support.servers import ThreadedServer

WORLD = [
    "CREATE TABLE country (Code CHAR(3) PRIMARY KEY, Name CHAR(52) NOT NULL)"
    " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
    "CREATE TABLE city (ID INT AUTO_INCREMENT PRIMARY KEY, Name CHAR(35) NOT NULL,"
    " CountryCode CHAR(3) NOT NULL, FOREIGN KEY (CountryCode) REFERENCES country (Code))"
    " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
    "INSERT INTO country VALUES ('USA', 'United States'), ('NLD', 'Netherlands'),"
    " ('CIV', 'Côte d''Ivoire')",
    "INSERT INTO city (ID, Name, CountryCode) VALUES (1, 'New York', 'USA'),"
    " (2, 'Lowertown', 'usa'), (3, 'Amsterdam', 'NLD'), (4, 'Abidjan', 'CÍV')",
    "CREATE TABLE note (id INT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(20))"
    " DEFAULT CHARSET=latin1",
    # MySQL 5's "utf8": no 4-byte character (an emoji)
    "CREATE TABLE tag (code VARCHAR(8) PRIMARY KEY) DEFAULT CHARSET=utf8mb3",
    "INSERT INTO tag VALUES ('new'), ('old')",
]


@pytest.fixture(scope="module")
def world():
    url, drop = mariadb_database()
    run_sql(url, *WORLD)
    settings = {"api.tables": "*", "api.declared_tables": "false"}
    app = make_app(url, **settings, **{"api.tokens": "writer-secret:read,write"})
    with ThreadedServer(ASGIApp(app)) as running, httpx.Client(base_url=running.url) as client:
        yield client
    app.close()
    drop()


def names(answer):
    return [city["Name"] for city in answer]


def test_a_country_s_cities_are_those_the_database_finds_for_its_code(world):
    """Lowertown (``usa``) was left out of the United States' cities, which
    a count, a filter and ``!inner`` all found."""
    usa = world.get("/country/", params={"select": "Code,city(Name)", "Code": "eq.USA"}).json()
    assert names(usa[0]["city"]) == ["New York", "Lowertown"]
    counted = world.get("/country/", params={"select": "city(count)", "Code": "eq.USA"}).json()
    assert counted == [{"city": [{"count": 2}]}]
    inner = world.get(
        "/country/",
        params={"select": "Code,city!inner(Name)", "city.Name": "eq.Lowertown"},
    ).json()
    assert inner == [{"Code": "USA", "city": [{"Name": "Lowertown"}]}]
    # under the country's item, and limited per country
    assert names(world.get("/country/usa/city/").json()) == ["New York", "Lowertown"]
    limited = world.get(
        "/country/",
        params={"select": "city(Name)", "city.limit": "1", "city.order": "Name", "Code": "eq.USA"},
    ).json()
    assert names(limited[0]["city"]) == ["Lowertown"]


def test_a_city_s_country_is_the_one_its_code_names(world):
    """Lowertown's country was null, though its foreign key holds; so was
    Abidjan's, whose code has an accent that general_ci ignores."""
    cities = world.get("/city/", params={"select": "Name,country(Name)", "order": "ID"}).json()
    assert [city["country"] for city in cities] == [
        {"Name": "United States"},
        {"Name": "United States"},
        {"Name": "Netherlands"},
        {"Name": "Côte d'Ivoire"},
    ]
    ivory = world.get("/country/", params={"select": "city(Name)", "Code": "eq.CIV"}).json()
    assert ivory == [{"city": [{"Name": "Abidjan"}]}]


def test_an_item_url_in_another_case_is_the_row(world):
    assert world.get("/country/usa").json() == {"Code": "USA", "Name": "United States"}
    assert world.get("/country/cív").json()["Code"] == "CIV"
    assert world.get("/country/xyz").status_code == 404


WRITER = {"Authorization": "Bearer writer-secret", "Prefer": "return=representation"}


def test_an_upsert_in_another_case_answers_the_row_it_wrote(world):
    """``{"Code": "nld"}`` merged into NLD, as MySQL's ON DUPLICATE KEY
    UPDATE finds it, and answered no row: the rows read back were matched
    to the body's with Python's ==."""
    client = world
    merge = {**WRITER, "Prefer": "return=representation,resolution=merge-duplicates"}
    merged = client.post("/country/", json={"Code": "nld", "Name": "Holland"}, headers=merge)
    assert (merged.status_code, merged.json()) == (201, [{"Code": "NLD", "Name": "Holland"}])
    ignore = {**WRITER, "Prefer": "return=representation,resolution=ignore-duplicates"}
    body = [{"Code": "usa", "Name": "X"}, {"Code": "ZZZ", "Name": "Zed"}]
    ignored = client.post("/country/", json=body, headers=ignore)
    assert ignored.json() == [{"Code": "ZZZ", "Name": "Zed"}]  # only the row inserted
    assert client.get("/country/USA").json() == {"Code": "USA", "Name": "United States"}
    # as it was, for the other tests
    restore = client.patch("/country/NLD", json={"Name": "Netherlands"}, headers=WRITER)
    assert restore.status_code == 200
    assert client.delete("/country/ZZZ", headers=WRITER).status_code == 204


def test_a_value_a_column_cannot_hold_is_named_in_the_message(world):
    """An emoji in a latin1 column: the message, which clients show their
    user, named no column; ``details``' "at row 2" counts the statement's rows."""
    body = [{"body": "fine"}, {"body": "a smile \U0001f600"}]
    refused = world.post("/note/", json=body, headers=WRITER)
    problem = refused.json()
    assert (refused.status_code, problem["message"]) == (
        422,
        "A value does not fit its column: body.",
    )
    assert "`body`" in problem["details"]
    assert world.get("/note/").json() == []  # nothing of the array was written


def test_text_a_latin1_column_cannot_hold_finds_no_row(world):
    """Cyrillic, or an emoji, in a filter on a latin1 column (MySQL 5's
    default character set) was a 400, as MySQL refuses to compare the two;
    PostgreSQL would find no row. Text latin1 holds is compared as before."""
    made = world.post("/note/", json={"body": "café"}, headers=WRITER)
    assert made.status_code == 201, made.text
    for value in ("eq.Москва", "ilike.*Ж*", "in.(Москва,\U0001f600)", "eq.\U0001f600"):
        found = world.get("/note/", params={"body": value})
        assert (found.status_code, found.json()) == (200, []), value
    assert [n["body"] for n in world.get("/note/", params={"body": "ilike.*CAF*"}).json()] == [
        "café"
    ]
    assert world.delete("/note/", params={"body": "eq.café"}, headers=WRITER).status_code == 200


def test_an_emoji_names_no_row_of_a_utf8mb3_key(world):
    """Its item URL was a 400 ("Illegal mix of collations"): no row can hold
    it, so there is none (404), for a read as for a write; a filter finds none."""
    smile = "%F0%9F%98%80"
    assert world.get(f"/tag/{smile}").status_code == 404
    assert world.delete(f"/tag/{smile}", headers=WRITER).status_code == 404
    assert world.get(f"/tag/?code=eq.{smile}").json() == []
    assert world.get("/tag/new").json() == {"code": "new"}
