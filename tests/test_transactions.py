"""pyramid_tm owns the transaction: commit once on success, roll back on error."""

import threading
import uuid

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session


@pytest.fixture
def commits():
    """Counts commits of request sessions, per row name written."""
    counted = []
    lock = threading.Lock()

    def after_commit(session):
        with lock:
            counted.append(session)

    event.listen(Session, "after_commit", after_commit)
    yield counted
    event.remove(Session, "after_commit", after_commit)


def test_a_request_that_succeeds_commits_exactly_once(http, commits):
    name = f"committed-{uuid.uuid4().hex}"
    response = http.post("/_probe_write", params={"name": name})
    assert response.status_code == 200
    assert len(commits) == 1
    assert name in names_in_table(http)


def test_a_request_that_raises_rolls_back(http, commits):
    name = f"rolled-back-{uuid.uuid4().hex}"
    response = http.post("/_probe_write_then_fail", params={"name": name})
    assert response.status_code == 500
    assert commits == []
    assert name not in names_in_table(http)


def test_reads_commit_nothing(http, commits):
    assert http.get("/mytable/1").status_code == 200
    assert commits == []


def test_a_safe_request_may_read_through_its_session_and_gives_the_connection_back(http, commits):
    total = int(
        http.get("/mytable/?limit=1", headers={"Prefer": "count=exact"}).headers["Total-Count"]
    )
    first = http.get("/_probe_session_read")
    second = http.get("/_probe_session_read")
    assert first.status_code == second.status_code == 200
    assert first.json()["rows"] == total
    assert second.json()["checked_out_before"] in (0, None)  # None: SQLite's pool has no count
    assert commits == []


def names_in_table(http):
    names, url = [], "/mytable/?limit=500"
    while url:
        page = http.get(url).json()
        names += [row["name"] for row in page["items"]]
        url = page["next"]
    return names
