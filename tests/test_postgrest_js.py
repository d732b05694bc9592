"""postgrest-js (the Supabase client for PostgREST, from npm, pinned in
tests/js/package-lock.json) against the live API on both databases, run by
node: what a JavaScript client sees."""

import json
import os
import pathlib
import shutil
import subprocess

import pytest

from tests.support import IN_CI, unique_name

CLIENT = pathlib.Path(__file__).parent / "js"


@pytest.fixture(scope="module")
def node():
    if shutil.which("node") is None or not (CLIENT / "node_modules").exists():
        if IN_CI:
            pytest.fail("node and tests/js/node_modules are needed: make installs them")
        pytest.skip("node, or tests/js/node_modules (make installs it), is missing")
    return shutil.which("node")


def test_postgrest_js_reads_and_writes_as_against_postgrest(node, server):
    tag = unique_name("js")
    result = subprocess.run(
        [node, "client.mjs"],
        cwd=CLIENT,
        env={**os.environ, "BASE_URL": server.url, "TAG": tag},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    calls = json.loads(result.stdout)
    for name, call in calls.items():
        if name not in ("error", "backwards", "maxAffected", "geojson"):
            assert call["error"] is None, (name, call)
    assert [row["name"] for row in calls["insert"]["data"]] == [f"{tag} a", f"{tag} b"]
    assert [row["name"] for row in calls["select"]["data"]] == [f"{tag} a", f"{tag} b"]
    assert calls["count"]["count"] == 2 and len(calls["count"]["data"]) == 1
    assert calls["single"]["data"] == {"name": f"{tag} a"}
    assert calls["maybe"]["data"] is None
    assert [row["name"] for row in calls["range"]["data"]] == [f"{tag} b"]
    header, first = calls["csv"]["data"].splitlines()  # limit bounds a CSV, as PostgREST's
    assert header == "id,name" and first.endswith(f",{tag} a")
    assert [row["name"] for row in calls["or"]["data"]] == [f"{tag} a"]
    assert calls["json"]["data"] == [{"n": "1"}]
    assert calls["update"]["data"][0]["data"] == {"n": 2}
    assert calls["upsert"]["data"][0]["id"] == 987655
    assert calls["error"]["error"]["code"] == "42703"
    assert calls["error"]["error"]["message"] == "'nope' is not a column of this table"
    assert (calls["counted"]["status"], calls["counted"]["count"]) == (201, 1)
    assert (calls["backwards"]["status"], calls["backwards"]["error"]["code"]) == (416, "PGRST103")
    books = [author["books"] for author in calls["embedCount"]["data"]]
    assert books == [[{"count": n}] for n in (3, 1, 2, 0)]
    titles = [[b["title"] for b in a["probe_book"]] for a in calls["embedOr"]["data"]]
    assert titles == [["Alpha"], [], ["Zeta"], []]
    listed = (
        "likeAll",
        "match",
        "inQuoted",
        "ilikeAny",
        "not",
        "filter",
        "rollback",
        "ignored",
        "delete",
    )
    names = {call: [row["name"] for row in calls[call]["data"]] for call in listed}
    # a quote in a bare in.(...) value is itself: postgrest-js quotes only commas and parentheses
    assert names["likeAll"] == names["match"] == names["inQuoted"] == [f"{tag} a"]
    assert names["ilikeAny"] == [f"{tag} a", f"{tag} b"]
    assert names["not"] == [f"{tag} b", f"{tag} c", f"{tag} d"]
    assert names["filter"] == [f"{tag} a", f"{tag} c"]
    refused = calls["maxAffected"]  # two Prefer headers, joined by fetch
    assert (refused["status"], refused["error"]["code"]) == (400, "PGRST124")
    assert names["rollback"] == [f"{tag} z"]  # answered, and not kept: see delete
    # A duplicate, left as it was (delete finds c), and not answered: PostgREST's DO NOTHING
    assert names["ignored"] == []
    assert calls["defaults"]["data"] == [
        {"name": f"{tag} e", "data": None},
        {"name": f"{tag} f", "data": {"n": 5}},
    ]
    assert calls["geojson"]["status"] == 406  # mytable has no spatial column
    # a, b, the upserted c, the counted d, and e and f: not z, rolled back
    assert sorted(names["delete"]) == [f"{tag} {letter}" for letter in "abcdef"]
