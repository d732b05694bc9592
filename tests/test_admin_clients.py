"""The data providers of two admin frameworks, from npm (pinned in
tests/js/package-lock.json), against the API serving Sakila, run by node:
react-admin's PostgREST provider (ra-data-postgrest, with two-column keys)
and Refine's Supabase provider (over supabase-js, which asks for
``/rest/v1``, the prefix ``root_path`` serves, with JWTs for keys). What an admin page lists,
shows, creates, edits and deletes, and the message it shows on an error."""

import json
import os
import subprocess

import pytest

from api.bridge.asgi import ASGIApp
from tests.support import make_app, unique_name
from tests.support.servers import ThreadedServer
from tests.test_jwt import SECRET, signed
from tests.test_postgrest_js import CLIENT, node  # noqa: F401 (a fixture)


def drive(node, script, **env):  # noqa: F811
    """What each call of the script answered, by name."""
    result = subprocess.run(
        [node, script],
        cwd=CLIENT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {name: call.get("ok", call) for name, call in json.loads(result.stdout).items()}


@pytest.fixture(scope="module")
def supabase_url(sakila_url):
    """The Sakila API under ``/rest/v1``, where supabase-js asks for
    PostgREST, taking JWTs as a Supabase project's keys are."""
    roles = {"api.jwt_secret": SECRET, "api.jwt_roles": "service_role:read,write anon:read"}
    app = make_app(sakila_url, **{"api.tables": "*", **roles})
    with ThreadedServer(ASGIApp(app, root_path="/rest/v1")) as running:
        yield running.url
    app.close()


TOO_LONG = "Some fields do not fit the table: name must be a string of at most 25 characters."


def ids(answer, key):
    return [row[key] for row in answer["data"]]


def test_react_admin_lists_shows_and_edits_sakila(node, sakila_server):  # noqa: F811
    tag = unique_name("ra")[:25]
    calls = drive(node, "react_admin.mjs", BASE_URL=sakila_server.url, TAG=tag)
    # getList: offset and limit, Prefer: count=exact, the total read from Content-Range
    assert (ids(calls["list"], "id"), calls["list"]["total"]) == ([194, 76, 112, 67, 190], 200)
    by_id = calls["listById"]
    assert (ids(by_id, "film_id"), by_id["total"]) == ([1000, 999, 998], 1000)
    # a search of words (ilike.*goldfinger*), filters with operators (length=gt.180), or=(...)
    assert ids(calls["search"], "film_id") == [2, 95, 366, 798]
    assert (ids(calls["filters"], "title"), calls["filters"]["total"]) == (
        ["WORST BANGER", "STAR OPERATION"],
        4,
    )
    assert ids(calls["or"], "actor_id") == [1, 2, 54, 95, 104, 120]
    assert calls["embed"]["data"] == [
        {
            "film_id": 1,
            "title": "ACADEMY DINOSAUR",
            "id": 1,
            "language": {
                "language_id": 1,
                "name": "English",
                "last_update": "2006-02-15T05:02:19Z",
            },
        }
    ]
    # getOne asks for one object; a two-column key is and=(...), several are or=(and(...),...)
    assert calls["one"]["data"]["title"] == "ACADEMY DINOSAUR"
    assert calls["oneOfTwoKeys"]["data"]["id"] == "[1,23]"
    assert sorted(ids(calls["many"], "id")) == [1, 2, 3]
    assert ids(calls["manyOfTwoKeys"], "id") == ["[1,1]", "[1,23]"]
    assert (ids(calls["reference"], "city"), calls["reference"]["total"]) == (
        ["Adoni", "Ahmadnagar", "Allappuzha (Alleppey)"],
        60,
    )
    # create, update, updateMany, delete: one object back each time
    created = calls["create"]["data"]
    assert created["name"] == tag and created["id"] == created["category_id"]
    assert calls["createOfTwoKeys"]["data"]["id"] == "[2,1]"
    assert calls["update"]["data"]["name"] == f"{tag}!"
    assert calls["updateMany"]["data"] == [created["id"]]
    assert calls["delete"]["data"]["name"] == f"{tag}?"
    assert calls["deleteOfTwoKeys"]["data"]["id"] == "[2,1]"
    assert calls["deleteMany"]["data"] == []  # already deleted
    assert calls["gone"]["error"]["status"] == 406
    # the message react-admin shows its user
    assert calls["duplicate"]["error"] == {
        "status": 409,
        "message": "Another row already has this actor_id, film_id ('1-1').",
    }
    assert calls["tooLong"]["error"] == {"status": 422, "message": TOO_LONG}


def test_refine_lists_shows_and_edits_sakila_through_supabase_js(node, supabase_url):  # noqa: F811
    tag = unique_name("refine")[:20]
    keys = {
        "SUPABASE_KEY": signed({"role": "service_role", "exp": 3600}),
        "ANON_KEY": signed({"role": "anon", "exp": 3600}),
        "EXPIRED_KEY": signed({"role": "service_role", "exp": -3600}),
    }
    calls = drive(node, "refine.mjs", SUPABASE_URL=supabase_url, TAG=tag, **keys)
    # getList: range, count=exact, each of Refine's filter operators
    first_three = {
        "list": ([997, 996, 995], 1000),
        "contains": (["ACE GOLDFINGER", "BREAKFAST GOLDFINGER", "GOLDFINGER SENSIBILITY"], 4),
        "startswith": ([2, 29, 95], 4),
        "neIn": ([2, 3, 4], 4),
        "between": ([5, 137, 224], 257),
        "isNull": ([1, 2, 3], 4),
        "notNull": ([5, 6, 7], 599),
        "setHas": ([15, 16, 29], 276),  # a SET column, as an array: cs.{...}
        "setLacks": ([4, 8, 11], 497),
        "or": ([1, 2, 3], 8),
    }
    for name, expected in first_three.items():
        answer = calls[name]
        first_key = next(iter(answer["data"][0]))
        assert (ids(answer, first_key), answer["total"]) == expected, name
    city = {"city": "A Corua (La Corua)", "country": {"country": "Spain"}}
    assert calls["embed"]["data"][0] == city
    assert calls["one"]["data"]["first_name"] == "PENELOPE"
    assert sorted(ids(calls["many"], "actor_id")) == [1, 2]
    # create, createMany; update and updateMany, deleteOne and deleteMany, the
    # latter two of each sent at once
    created = [calls["create"]["data"], *calls["createMany"]["data"]]
    assert [row["name"] for row in created] == [tag, f"{tag} 2", f"{tag} 3"]
    assert calls["update"]["data"]["name"] == f"{tag}!"
    assert [row["name"] for row in calls["updateMany"]["data"]] == [f"{tag}?", f"{tag}?"]
    assert calls["gone"]["data"] == []
    # the message Refine shows its user
    assert calls["tooLong"]["error"]["message"] == TOO_LONG
    # the anon key reads and may not write; an expired key is told so
    assert calls["anonRead"]["data"] == [{"actor_id": 1}]
    assert (calls["anonWrite"]["status"], calls["anonWrite"]["error"]["code"]) == (403, "42501")
    expired = calls["expired"]
    assert (expired["status"], expired["error"]["code"], expired["error"]["message"]) == (
        401,
        "PGRST303",
        "JWT expired",
    )
