"""Group commit (``api.db.groups``) on each database: the conditional writes
of concurrent requests in one transaction, each still all or nothing."""

import asyncio
import concurrent.futures
import functools
import re
import secrets
from typing import ClassVar

import httpx
import orjson
import pytest
import sqlalchemy as sa
import transaction
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from api.bridge import run_in_greenlet
from api.db.groups import GroupCommit, GroupedWrite
from api.reads.gate import Gate
from api.sql import write_statements
from api.sql.compiled import CompiledWrite
from api.sql.grouped import CountedWrite, GroupedInsert
from tests.support import WRITER, assert_problem, create, deadlocks_counted, until_a_lock_wait

counters = sa.Table(
    "group_probe",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("n", sa.Integer, nullable=False),
)


def count_up(row):
    """A write of one row: its n counted up; it matches no row if there is none."""
    statement = sa.update(counters).where(counters.c.id == row).values(n=counters.c.n + 1)
    return lambda connection: connection.execute(statement).rowcount


def duplicate_key(connection):
    connection.execute(sa.insert(counters).values(id=1, n=0))  # row 1 is there: it fails
    return 1


def in_group(url, run):
    """``run(group)`` with a group of width 1 (one group at a time) over rows
    1, 2 and 3 at n = 0: what it returns, each row's n after it, and how many
    transactions were committed."""

    async def main():
        engine = create_async_engine(url)
        commits = []
        try:
            async with engine.begin() as connection:
                await connection.run_sync(counters.metadata.drop_all)
                await connection.run_sync(counters.metadata.create_all)
                rows = [{"id": i, "n": 0} for i in (1, 2, 3)]
                await connection.execute(sa.insert(counters), rows)
            event.listen(engine.sync_engine, "commit", lambda connection: commits.append(1))
            result = await run(GroupCommit(engine, Gate(2, 5), timeout=10, width=1))
            async with engine.connect() as connection:
                read = await connection.execute(sa.select(counters.c.id, counters.c.n))
                rows = dict(read.all())
            return result, rows, len(commits)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_writes_handed_over_together_share_one_commit(database_url):
    async def run(group):
        writes = (count_up(1), count_up(2), count_up(9))
        return await asyncio.gather(*(group.write(write) for write in writes))

    counts, rows, commits = in_group(database_url, run)
    assert counts == [1, 1, 0]  # row 9 is not there: that write matched nothing
    assert rows == {1: 1, 2: 1, 3: 0}
    assert commits == 1


def test_a_write_that_fails_is_taken_out_and_the_others_run_again(database_url):
    async def run(group):
        writes = (count_up(1), duplicate_key, count_up(2))
        return await asyncio.gather(*(group.write(w) for w in writes), return_exceptions=True)

    (first, failed, last), rows, commits = in_group(database_url, run)
    assert isinstance(failed, sa.exc.IntegrityError)
    assert (first, last) == (1, 1)
    # Row 1 was counted up before the failure, rolled back with it, and
    # counted up again in the group's second transaction: once in all.
    assert rows == {1: 1, 2: 1, 3: 0}
    assert commits == 1


class CountedInsert(GroupedInsert):
    """A GroupedInsert that counts the rows of each statement it runs."""

    statements: ClassVar[list[int]] = []

    def run_together(self, connection, inserts):
        CountedInsert.statements.append(len(inserts))
        return super().run_together(connection, inserts)


def insert_together(url, rows):
    """``rows`` inserted by one group: what each answered, each row's n
    after, the commits, and the rows of each INSERT statement run."""
    CountedInsert.statements = []

    async def run(group):
        inserts = [CountedInsert(counters, row) for row in rows]
        return await asyncio.gather(*(group.write(w) for w in inserts), return_exceptions=True)

    return (*in_group(url, run), CountedInsert.statements)


def test_grouped_inserts_go_in_one_statement_and_answer_their_rows_in_order(database_url):
    rows = [{"id": 4, "n": 7}, {"id": 5, "n": 8}, {"id": 6, "n": 9}]
    answers, stored, commits, statements = insert_together(database_url, rows)
    assert answers == rows
    assert stored == {1: 0, 2: 0, 3: 0, 4: 7, 5: 8, 6: 9}
    assert (commits, statements) == (1, [3])


def test_grouped_inserts_answered_out_of_order_go_one_by_one(database_url, monkeypatch):
    insert = write_statements.insert

    class Reversed:  # a database whose RETURNING answers a multi-row INSERT backwards
        def __init__(self, *arguments):
            self.statement = insert(*arguments)

        def run_many(self, connection, rows, stamps):
            return self.statement.run_many(connection, rows, stamps)[::-1]

    monkeypatch.setattr(write_statements, "insert", Reversed)
    rows = [{"id": 4, "n": 7}, {"id": 5, "n": 8}, {"id": 6, "n": 9}]
    answers, stored, commits, statements = insert_together(database_url, rows)
    assert answers == rows
    assert stored == {1: 0, 2: 0, 3: 0, 4: 7, 5: 8, 6: 9}
    assert (commits, statements) == (1, [3, 1, 1, 1])


def test_grouped_inserts_with_one_that_clashes_go_one_by_one_and_it_is_taken_out(
    database_url,
):
    rows = [{"id": 4, "n": 7}, {"id": 1, "n": 5}, {"id": 5, "n": 8}]  # row 1 is there
    (first, clashed, last), stored, commits, statements = insert_together(database_url, rows)
    assert isinstance(clashed, sa.exc.IntegrityError)
    assert (first, last) == ({"id": 4, "n": 7}, {"id": 5, "n": 8})
    assert stored == {1: 0, 2: 0, 3: 0, 4: 7, 5: 8}
    assert commits == 1
    assert statements == [3, 1, 1, 1, 1]  # the three, then one by one, then again without row 1


def counted(statement, **values):
    """A CountedWrite of ``statement`` (Core) with ``values`` on row ``values["row"]``."""
    return CountedWrite(
        functools.partial(CompiledWrite, statement), values, counters, values["row"]
    )


def test_counted_writes_go_in_one_script_and_one_that_fails_is_taken_out(database_url):
    by_row = counters.c.id == sa.bindparam("row")
    up = sa.update(counters).where(by_row).values(n=counters.c.n + 1)
    move = sa.update(counters).where(by_row).values(id=sa.bindparam("to"))
    executed = []

    async def run(group):
        listen = event.listens_for(group.engine.sync_engine, "before_cursor_execute")
        listen(lambda *arguments: executed.append(arguments[2]))
        writes = (counted(up, row=1), counted(move, row=2, to=1), counted(up, row=3))
        writes += (counted(up, row=9),)  # no such row: it matches none
        return await asyncio.gather(*(group.write(w) for w in writes), return_exceptions=True)

    (first, clashed, third, none), rows, commits = in_group(database_url, run)
    executed = [sql for sql in executed if sql.startswith("UPDATE")]
    assert isinstance(clashed, sa.exc.IntegrityError)
    assert (first, third, none) == (1, 1, 0)
    assert rows == {1: 1, 2: 0, 3: 1}
    assert commits == 1
    if database_url.startswith("mysql"):  # a round trip for the four, one for the three
        assert [sql.count(";") for sql in executed] == [3, 2]
    else:  # a statement at a time: two, up to the clash, then three
        assert len(executed) == 5


def test_a_script_writes_its_rows_in_key_order_and_answers_in_request_order(database_url):
    by_row = counters.c.id == sa.bindparam("row")
    up = sa.update(counters).where(by_row).values(n=counters.c.n + sa.bindparam("by"))
    written = []

    def rows_of(connection, cursor, sql, parameters, *_):
        if sql.startswith("UPDATE"):  # a script's rows in its text; one statement's in its values
            written.extend(
                map(int, re.findall(r"id = (\d+)", sql)) if ";" in sql else [parameters[-1]]
            )

    async def run(group):
        event.listen(group.engine.sync_engine, "before_cursor_execute", rows_of)
        writes = [counted(up, row=row, by=by) for row, by in ((3, 1), (10, 1), (1, 2), (2, 3))]
        return await asyncio.gather(*(group.write(write) for write in writes))

    counts, rows, commits = in_group(database_url, run)
    assert counts == [1, 0, 1, 1]  # row 10 is not there
    assert rows == {1: 2, 2: 3, 3: 1}
    # The same order in every group; for integers, the index's (10 after 3,
    # as an UPDATE of a range locks them), not the text's (10 before 2).
    assert written == [1, 2, 3, 10]
    assert commits == 1


def test_a_group_chosen_as_a_deadlocks_victim_runs_again_whole(database_url):
    if not database_url.startswith("mysql"):
        pytest.skip("MariaDB's deadlocks")
    by_row = counters.c.id == sa.bindparam("row")
    up = sa.update(counters).where(by_row).values(n=counters.c.n + sa.bindparam("by"))

    async def run(group):
        other = create_async_engine(database_url)
        try:
            async with other.connect() as watch, other.connect() as rival:
                before = await deadlocks_counted(watch)
                await rival.begin()  # it writes rows 2 and 3: the heavier transaction
                await rival.execute(up, [{"row": 2, "by": 10}, {"row": 3, "by": 10}])
                writes = [counted(up, row=1, by=1), counted(up, row=2, by=1)]
                members = [asyncio.ensure_future(group.write(write)) for write in writes]
                await until_a_lock_wait(watch)  # the group, holding row 1, waits for row 2
                await rival.execute(up, {"row": 1, "by": 10})  # the cycle: the group is its victim
                await rival.commit()
                answers = await asyncio.gather(*members, return_exceptions=True)
                after = await deadlocks_counted(watch)
                return answers, after - before
        finally:
            await other.dispose()

    (answers, deadlocked), rows, commits = in_group(database_url, run)
    assert deadlocked == 1
    assert answers == [1, 1]  # each written once, in the group's second transaction
    assert rows == {1: 11, 2: 11, 3: 10}
    assert commits == 1


def test_a_write_whose_request_gives_up_before_the_commit_is_not_written(database_url):
    async def run(group):
        members = []

        def give_up(connection):  # its request's deadline passes while its group runs
            members[1].cancel()
            return count_up(2)(connection)

        writes = (count_up(1), give_up, count_up(3))
        members += [asyncio.ensure_future(group.write(write)) for write in writes]
        return await asyncio.gather(*members, return_exceptions=True)

    (first, gave_up, last), rows, _ = in_group(database_url, run)
    assert isinstance(gave_up, asyncio.CancelledError)
    assert (first, last) == (1, 1)
    assert rows == {1: 1, 2: 0, 3: 1}


def test_a_grouped_write_runs_when_its_transaction_votes_and_never_when_it_aborts(database_url):
    class Missed(Exception):
        pass

    def settle(matched):
        if matched != 1:
            raise Missed

    async def run(group):
        manager = transaction.TransactionManager(explicit=True)
        manager.begin()
        manager.get().join(GroupedWrite(manager, group, count_up(1), settle))
        manager.abort()
        manager.begin()
        manager.get().join(GroupedWrite(manager, group, count_up(2), settle))
        await run_in_greenlet(manager.commit)
        manager.begin()
        manager.get().join(GroupedWrite(manager, group, count_up(9), settle))
        with pytest.raises(Missed):  # its write matched no row: the transaction fails
            await run_in_greenlet(manager.commit)
        manager.abort()

    _, rows, _ = in_group(database_url, run)
    assert rows == {1: 0, 2: 1, 3: 0}


def test_of_concurrent_patches_with_one_etag_one_wins_and_the_others_are_412(http, server):
    url = create(http, data={"n": 0}).headers["location"]
    headers = {**WRITER, "If-Match": '"1"'}

    def patch(n):
        with httpx.Client(timeout=30) as client:
            return client.patch(url, json={"data": {"n": n}}, headers=headers)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(patch, range(8)))
    won = [r for r in responses if r.status_code == 200]
    assert len(won) == 1, [r.status_code for r in responses]
    for lost in (r for r in responses if r is not won[0]):
        assert assert_problem(lost, 412)["status"] == 412
        assert lost.headers["etag"] == '"2"'
    row = http.get(url).json()
    assert row == won[0].json()
    assert row["version"] == 2


# Each answer is made again from the row as stored: no body, the row, its selected columns.
ANSWERS = {
    "headers-only": ({"Prefer": "return=headers-only"}, {}, lambda row: b""),
    "representation": ({"Accept": "application/vnd.pgrst.object+json"}, {}, orjson.dumps),
    "select": ({}, {"select": "label"}, lambda row: orjson.dumps([{"label": row["label"]}])),
}


@pytest.mark.parametrize("answer", ANSWERS)
def test_concurrent_posts_each_answer_where_their_row_went_and_a_clash_is_409(
    http, server, answer
):
    taken = secrets.token_hex(4)
    assert http.post("/probe_coded/", json={"code": taken}, headers=WRITER).status_code == 201
    extra_headers, params, expected_body = ANSWERS[answer]
    headers = {**WRITER, **extra_headers}
    bodies = [{"code": secrets.token_hex(4), "label": f"grouped {n}"} for n in range(7)]
    bodies.insert(3, {"code": taken, "label": "clash"})

    def post(body):
        with httpx.Client(base_url=server.url, timeout=30) as client:
            return client.post("/probe_coded/", json=body, headers=headers, params=params)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(post, bodies))
    assert assert_problem(responses.pop(3), 409)["code"] == "23505"
    del bodies[3]
    assert [r.status_code for r in responses] == [201] * 7
    for body, response in zip(bodies, responses, strict=True):
        assert response.content == expected_body(body)
        if not response.content:  # nothing to type
            assert "content-type" not in response.headers
        assert response.headers["location"] == f"{server.url}/probe_coded/{body['code']}"
        stored = http.get(response.headers["location"])
        assert stored.json() == body
        assert stored.headers["etag"] == response.headers["etag"]
    assert http.get(f"/probe_coded/{taken}").json()["label"] is None


def test_of_concurrent_deletes_of_a_row_one_deletes_it_and_the_others_are_404(http, server):
    url = create(http).headers["location"]

    def delete(_):
        with httpx.Client(timeout=30) as client:
            return client.delete(url, headers=WRITER)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(delete, range(8)))
    assert sorted(r.status_code for r in responses) == [204] + [404] * 7
    assert_problem(http.get(url), 404)


def test_concurrent_posts_that_show_their_row_each_show_it_as_stored(http, server):
    headers = {**WRITER, "Accept": "application/vnd.pgrst.object+json"}

    def post(n):
        with httpx.Client(base_url=server.url, timeout=30) as client:
            return client.post("/mytable/", json={"name": f"shown {n}"}, headers=headers)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(post, range(8)))
    assert [r.status_code for r in responses] == [201] * 8
    for n, response in enumerate(responses):
        shown = response.json()
        assert shown["name"] == f"shown {n}"
        assert response.headers["location"].endswith(f"/mytable/{shown['id']}")
        stored = http.get(response.headers["location"])
        assert shown == stored.json()  # the id, version and stamps the database gave it
        assert response.headers["etag"] == stored.headers["etag"] == '"1"'


MINIMAL = {**WRITER, "Prefer": "return=minimal"}  # PostgREST's default, and supabase-js's


def test_concurrent_patches_by_filters_write_their_rows_and_a_clash_is_409(http, server):
    codes = [secrets.token_hex(4) for _ in range(8)]
    for code in codes:
        made = http.post("/probe_coded/", json={"code": code, "label": "before"}, headers=WRITER)
        assert made.status_code == 201
    bodies = [{"label": f"patched {n}"} for n in range(8)]
    bodies[3] = {"code": codes[0]}  # a key that is taken

    def patch(n):
        with httpx.Client(base_url=server.url, timeout=30) as client:
            params = {"code": f"eq.{codes[n]}"}
            return client.patch("/probe_coded/", params=params, json=bodies[n], headers=MINIMAL)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(patch, range(8)))
    assert assert_problem(responses[3], 409)["code"] == "23505"
    assert [r.status_code for n, r in enumerate(responses) if n != 3] == [204] * 7
    assert responses[0].headers["preference-applied"] == "return=minimal"
    stored = http.get("/probe_coded/", params={"code": f"in.({','.join(codes)})"}).json()
    labels = {row["code"]: row["label"] for row in stored}
    assert labels == {code: "before" if n == 3 else f"patched {n}" for n, code in enumerate(codes)}


def test_a_patch_in_its_own_session_onto_a_taken_key_is_409(http, server):
    # Without If-Match an item's PATCH has a session of its own, whose
    # UPDATE is the same CountedWrite a group runs: its error stays its own.
    taken, code = secrets.token_hex(4), secrets.token_hex(4)
    for made in (taken, code):
        assert http.post("/probe_coded/", json={"code": made}, headers=WRITER).status_code == 201
    clash = http.patch(f"/probe_coded/{code}", json={"code": taken}, headers=WRITER)
    assert assert_problem(clash, 409)["code"] == "23505"
    assert http.get(f"/probe_coded/{code}").status_code == 200


def test_a_patch_of_one_row_by_filter_counts_it_up_and_stamps_it(http, server):
    made = [create(http, name=f"row {n}").json() for n in range(2)]
    url = f"/mytable/?id=eq.{made[0]['id']}"
    assert http.patch(url, json={"name": "renamed"}, headers=MINIMAL).status_code == 204
    now = http.get(f"/mytable/{made[0]['id']}")
    assert now.json()["name"] == "renamed"
    assert now.headers["etag"] == '"2"'
    assert now.json()["updated_at"] > made[0]["updated_at"]
    assert http.get(f"/mytable/{made[1]['id']}").json() == made[1]
    nothing = http.patch("/mytable/?id=eq.-1", json={"name": "renamed"}, headers=MINIMAL)
    assert nothing.status_code == 204


def test_concurrent_patches_of_one_row_by_filter_each_show_the_row_as_they_left_it(http, server):
    row = create(http).json()
    answers = {  # what each asks to see: the rows, one object, a column
        "rows": ({}, lambda shown, stored: shown == [stored]),
        "object": (
            {"Accept": "application/vnd.pgrst.object+json"},
            lambda shown, stored: shown == stored,
        ),
        "column": ({"select": "name,version"}, None),
    }

    def patch(n):
        extra, _ = answers[list(answers)[n % 3]]
        params = {"id": f"eq.{row['id']}", **{k: v for k, v in extra.items() if k == "select"}}
        headers = {**WRITER, **{k: v for k, v in extra.items() if k != "select"}}
        with httpx.Client(base_url=server.url, timeout=30) as client:
            body = {"name": f"patched {n}"}
            return client.patch("/mytable/", params=params, json=body, headers=headers)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(patch, range(6)))
    assert [r.status_code for r in responses] == [200] * 6
    shown = [r.json() for r in responses]
    rows = [s[0] if isinstance(s, list) else s for s in shown]
    # Each UPDATE counted the version up once: each answer shows its own.
    assert sorted(r["version"] for r in rows) == [2, 3, 4, 5, 6, 7]
    for n, r in enumerate(rows):
        assert r["name"] == f"patched {n}"
    last = max(rows, key=lambda r: r["version"])
    stored = http.get(f"/mytable/{row['id']}").json()
    assert {"name": stored["name"], "version": stored["version"]} == {
        "name": last["name"],
        "version": last["version"],
    }
    if "updated_at" in last:  # the rows and the object show every column, as stored
        assert last == stored
    assert [set(rows[n]) for n in (2, 5)] == [{"name", "version"}] * 2


def test_a_patch_by_filter_that_shows_rows_and_matches_none_shows_none(http, server):
    url = "/mytable/?id=eq.-1"
    none = http.patch(url, json={"name": "x"}, headers=WRITER)
    assert (none.status_code, none.json()) == (200, [])
    singular = {**WRITER, "Accept": "application/vnd.pgrst.object+json"}
    assert_problem(http.patch(url, json={"name": "x"}, headers=singular), 406)
