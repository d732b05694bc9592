"""CSV bodies: PostgREST's bulk insert, on both databases and on Sakila."""

import pytest

from tests.support import WRITER, assert_problem, names_in_table, unique_name

CSV = {**WRITER, "Content-Type": "text/csv"}
SHOWN = {**CSV, "Prefer": "return=representation"}


def test_a_csv_body_inserts_its_rows_as_an_array_does(http):
    """A header row of column names, then a row per record: quoted commas,
    quotes and line breaks, NULL as null, JSON text in a JSON column."""
    tag = unique_name("csv")
    body = (
        "name,data\r\n"
        f'{tag} a,"{{""n"": 1, ""tags"": [""x""]}}"\r\n'
        f'"{tag} b, with a comma",NULL\n'
        f'"{tag} c\nwith a line break","[1,2]"\n'
        "\n"  # a blank line is no row
        f'"{tag} ""d""","""text"""\n'
    )
    created = http.post("/mytable/?select=name,data", content=body, headers=SHOWN)
    assert created.status_code == 201, created.text
    assert created.json() == [
        {"name": f"{tag} a", "data": {"n": 1, "tags": ["x"]}},
        {"name": f"{tag} b, with a comma", "data": None},
        {"name": f"{tag} c\nwith a line break", "data": [1, 2]},
        {"name": f'{tag} "d"', "data": "text"},
    ]
    stored = http.get("/mytable/", params={"name": f"like.{tag}*", "select": "id,data"}).json()
    assert len(stored) == 4 and stored[0]["data"] == {"n": 1, "tags": ["x"]}
    for row in stored:
        assert http.delete(f"/mytable/{row['id']}", headers=WRITER).status_code == 204


def test_a_csv_body_may_start_with_a_byte_order_mark(http):
    """Excel's "CSV UTF-8" starts with one: it was read into the first
    column's name, a 422 that said 'name' is not a column."""
    tag = unique_name("bom")
    body = f"\ufeffname\r\n{tag}\r\n".encode()
    created = http.post("/mytable/?select=name", content=body, headers=SHOWN)
    assert (created.status_code, created.json()) == (201, [{"name": tag}])


def test_csv_cells_are_read_by_their_columns_types(http):
    """A number or a boolean comes as text: read by the column's type, and a
    cell that is not one is a 422 naming its row and column."""
    created = http.post(
        "/probe_nullable/", content="score,flag\n41,true\nNULL,false\n", headers=SHOWN
    )
    assert created.status_code == 201, created.text
    assert [(r["score"], r["flag"]) for r in created.json()] == [(41, True), (None, False)]
    for row in created.json():
        assert http.delete(f"/probe_nullable/{row['id']}", headers=WRITER).status_code == 204
    refused = http.post("/probe_nullable/", content="score,flag\n4x,true\n5,yes\n", headers=CSV)
    assert {e["field"]: e["message"] for e in assert_problem(refused, 422)["errors"]} == {
        "[0].score": "must be an integer",
        "[1].flag": "must be true or false",
    }


@pytest.mark.parametrize(
    "body, status, says",
    [
        ("", 400, "starts with a row of distinct column names"),
        ("name,name\na,b\n", 400, "starts with a row of distinct column names"),
        ("name,data\na\n", 400, "Line 2 of the CSV body has 1 of the header's 2 fields"),
        ('name\n"never closed\n', 400, "not valid CSV, line 2"),
        ("name,data\na,{not json\n", 400, "Line 2: A CSV cell of 'data' is not valid JSON"),
        ("name,bogus\na,1\n", 422, "Some fields do not fit the table"),
        ("bogus\n", 422, "Some fields do not fit the table"),  # said without a record
        ("name\n" + "row\n" * 6, 413, "at most 5 rows"),  # api.max_batch_rows = 5 here
    ],
)
def test_a_csv_body_that_cannot_be_read_writes_nothing(http, body, status, says):
    before = names_in_table(http)
    problem = assert_problem(http.post("/mytable/", content=body, headers=CSV), status)
    assert says in problem["detail"]
    assert names_in_table(http) == before


def test_a_csv_body_that_is_not_utf8_is_a_400(http):
    refused = http.post("/mytable/", content=b"name\n\xff\xfe\n", headers=CSV)
    assert assert_problem(refused, 400)["detail"] == "The CSV body is not UTF-8."


def test_csv_into_sakila_reads_mysql_s_types(sakila):
    """DECIMAL, YEAR, ENUM and SET (as MySQL writes it, or as a JSON array,
    as this API's CSV export writes it) from CSV cells, into Sakila's film."""
    titles = [unique_name("CSV FILM"), unique_name("CSV FILM")]
    body = (
        "title,language_id,rental_rate,release_year,rating,special_features\n"
        f'{titles[0]},1,12.30,2006,NC-17,"Trailers,Commentaries"\n'
        f'{titles[1]},1,0.99,NULL,G,"[""Deleted Scenes""]"\n'
    )
    created = sakila.post(
        "/film/?select=film_id,rental_rate,release_year,rating,special_features",
        content=body,
        headers=SHOWN,
    )
    assert created.status_code == 201, created.text
    first, second = created.json()
    assert (first["rental_rate"], first["release_year"], first["rating"]) == (12.3, 2006, "NC-17")
    assert first["special_features"] == ["Commentaries", "Trailers"]
    assert (second["release_year"], second["special_features"]) == (None, ["Deleted Scenes"])
    for film in (first, second):
        assert sakila.delete(f"/film/{film['film_id']}", headers=WRITER).status_code == 204
