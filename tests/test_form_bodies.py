"""Form bodies (``application/x-www-form-urlencoded``): what ``curl -d`` and
``fetch`` with ``URLSearchParams`` send, taken as PostgREST takes them, one
row of text read by its columns' types; on both databases, and on Sakila."""

import json
import shutil
import subprocess
import urllib.parse
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api import validation
from tests.support import WRITER, assert_problem, create, names_in_table, unique_name


def test_a_form_creates_one_row_each_field_read_by_its_column(http):
    """Text for a number or a boolean is read as one; a space may come as
    ``+``; a field sent twice keeps its last value, as PostgREST's does."""
    created = http.post(
        "/probe_nullable/?select=id,score,flag",
        content="score=1&score=41&flag=true",
        headers={**WRITER, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert created.status_code == 201, created.text
    ((probe),) = created.json()
    assert (probe["score"], probe["flag"]) == (41, True)
    assert http.delete(f"/probe_nullable/{probe['id']}", headers=WRITER).status_code == 204
    tag = unique_name("form")
    created = http.post(
        "/mytable/?select=id,name,data", data={"name": f"{tag} a+b"}, headers=WRITER
    )
    assert created.status_code == 201, created.text
    ((row),) = created.json()
    assert row["name"] == f"{tag} a+b" and row["data"] is None
    assert http.delete(f"/mytable/{row['id']}", headers=WRITER).status_code == 204


def test_a_form_updates_and_replaces_as_json_does(http):
    """PATCH and PUT of an item, and PATCH by filters, take a form too; a
    JSON column's field is a JSON string, as PostgREST stores it."""
    row = create(http).json()
    item = f"/mytable/{row['id']}"
    patched = http.patch(item, data={"data": '{"n": 1}'}, headers=WRITER)
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"] == '{"n": 1}'
    long = "é€ +&=%" * 1200  # 25 KB of escapes: decoded in pieces, a character cut in two
    patched = http.patch(item, data={"data": long}, headers=WRITER)
    assert patched.status_code == 200, patched.text
    assert http.get(item).json()["data"] == long
    renamed = unique_name("form")
    patched = http.patch(f"/mytable/?id=eq.{row['id']}", data={"name": renamed}, headers=WRITER)
    assert [r["name"] for r in patched.json()] == [renamed]
    replaced = http.put(item, data={"name": f"{renamed} put"}, headers=WRITER)
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["name"], replaced.json()["data"]) == (f"{renamed} put", None)
    assert http.delete(item, headers=WRITER).status_code == 204


@pytest.mark.parametrize(
    "body, status, says",
    [
        ("score=4x&flag=yes", 422, "score must be an integer; flag must be true or false"),
        ("score=", 422, "score must be an integer"),
        ("bogus=1", 422, "bogus is not a column of this table"),
        (b"score=1&flag=\xff", 400, "The form body is not UTF-8."),
        ("flag=%ff", 400, "The form body is not UTF-8."),
        ("&".join(["score=1"] * 5000), 400, "A form body holds at most 4096 fields."),
        ("score=1&" + "x" * (1 << 20), 413, "larger than the server accepts"),
        (' {"score": 1}', 415, "The body is JSON, sent as a form"),  # curl -d '{...}'
        ("[1]", 415, "send it with Content-Type: application/json"),
    ],
)
def test_a_form_that_does_not_fit_writes_nothing(http, body, status, says):
    before = http.get("/probe_nullable/?select=id").json()
    headers = {**WRITER, "Content-Type": "application/x-www-form-urlencoded"}
    problem = assert_problem(http.post("/probe_nullable/", content=body, headers=headers), status)
    assert says in problem["message"]
    assert http.get("/probe_nullable/?select=id").json() == before


def test_a_body_of_another_type_is_415_naming_the_three(http):
    before = names_in_table(http)
    refused = http.post(
        "/mytable/", content="name=x", headers={**WRITER, "Content-Type": "text/plain"}
    )
    detail = assert_problem(refused, 415)["detail"]
    assert detail == (
        "Send the body as application/json, application/x-www-form-urlencoded or text/csv."
    )
    assert names_in_table(http) == before


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_d_into_sakila(sakila):
    """As typed at a shell: raw UTF-8, DECIMAL, YEAR, an ENUM and a SET as
    MySQL writes it."""
    title = unique_name("FORM FILM")
    sent = subprocess.run(
        [
            "curl", "-s", "-H", "Authorization: Bearer writer-secret",
            "-H", "Prefer: return=representation",
            "-d", f"title={title} é&language_id=1&rental_rate=12.30&release_year=2006",
            "-d", "rating=NC-17&special_features=Trailers,Commentaries",
            f"{sakila.base_url}/film?select=film_id,title,rental_rate,release_year,rating,special_features",
        ],
        capture_output=True, check=True, text=True, timeout=30,
    )  # fmt: skip
    ((film),) = json.loads(sent.stdout)
    assert film["title"] == f"{title} é"
    assert (film["rental_rate"], film["release_year"], film["rating"]) == (12.3, 2006, "NC-17")
    assert film["special_features"] == ["Commentaries", "Trailers"]
    assert sakila.delete(f"/film/{film['film_id']}", headers=WRITER).status_code == 204


@given(st.text(max_size=60), st.integers(min_value=3, max_value=12))
def test_a_field_decodes_as_urllib_decodes_it_in_pieces_of_any_size(text, piece_bytes):
    """Decoded in pieces (``FORM_CHUNK_BYTES``, made small here), a field
    reads as urllib reads it whole: no escape or character cut in two is lost."""
    encoded = urllib.parse.quote_plus(text).encode()
    with mock.patch.object(validation, "FORM_CHUNK_BYTES", piece_bytes):
        assert validation._form_text(encoded) == text


def test_a_form_without_a_token_writes_nothing(http):
    """A page of another site can make a browser post a form without a CORS
    preflight, but not with the bearer token every write needs."""
    before = names_in_table(http)
    sent = http.post(
        "/mytable/",
        data={"name": unique_name("csrf")},
        headers={"Origin": "https://elsewhere.example"},
    )
    assert_problem(sent, 401)
    assert names_in_table(http) == before
