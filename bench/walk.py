"""Random walks of PostgREST's query language and of writes over Sakila, as production serves it.

    python -m bench.walk [--requests N] [--seed N]

schemathesis (``bench.fuzz``) draws requests from the OpenAPI document,
which does not spell selects: no casts, aggregates, embeds, spreads or
their own filters. This walks them. It loads Sakila into a fresh MariaDB
database (at TEST_MARIADB_URL), starts ``pserve production.ini`` on it with
every table and aggregates on, finds each table's columns (the OpenAPI
document) and related tables (asking the API to embed each in each), then
sends ``--requests`` reads and as many writes:

- reads: selects of columns with aliases and casts, aggregates, embeds
  (hinted, spread, ``!inner``, nested) with their own filters, order, limit
  and offset; filters of every operator with odd values; orders, by a
  related row's column too; limits, offsets, counts, CSV, NDJSON and the
  singular object; and the next page, where there is one;
- writes: ``POST``, ``PATCH``, ``PUT`` and ``DELETE`` with bodies drawn from
  the rows and from odd values, selects and ``Prefer`` headers, every one
  with ``tx=rollback``, so that Sakila stays as loaded.

It prints what statuses came back, each 5xx and each request that got no
answer within 30 s (the walk goes on), and exits non-zero on any of them.
About a minute for the default 3,000 of each.
"""

import argparse
import collections
import random
import re
import sys
from typing import Any

import httpx

from bench.run import sakila_server

TOKEN = "walk-token"
AUTHORIZED = {"Authorization": f"Bearer {TOKEN}"}
CASTS = ("", "", "", "::text", "::integer", "::numeric", "::date", "::timestamp", "::time")
AGGREGATES = ("count()", "{c}.max()", "{c}.min()", "{c}.sum()", "{c}.avg()", "{c}::numeric.avg()")
OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "is", "in", "cs", "cd")
OPERATORS += ("ov", "match", "imatch", "fts", "isdistinct")
ODD_TEXTS = ("1", "0", "-1", "a*", "*", "null", "true", "2006-02-15", "2006-02-15T04:34:33Z")
ODD_TEXTS += ("(1,2)", "{a}", "{}", "PG", "Trailers", "12:00:00", "1.5", "9" * 22, "é", "(")
ODD_TEXTS += ("'", "\\", "2006", "1e5", "NaN")
ODD_VALUES = (1, 0, -1, "a", "", None, True, 1.5, "2006-02-15T04:34:33Z", "2006-02-15")
ODD_VALUES += ("12:00:00", [], {}, ["Trailers"], "PG", 2**63, "x" * 300, "é", 2006)


class Schema:
    """What the API serves: each table's columns, a few of its rows, and
    what each embeds (a name, with its hint where one is needed)."""

    def __init__(self, client: httpx.Client) -> None:
        document = client.get("/openapi.json").json()
        self.columns: dict[str, list[str]] = {}
        for name, schema in document["components"]["schemas"].items():
            if name.endswith("Row") and schema.get("properties"):
                self.columns[name[: -len("Row")]] = list(schema["properties"])
        self.rows = {t: client.get(f"/{t}/", params={"limit": "3"}).json() for t in self.columns}
        self.embeds = {t: self._embeds(client, t) for t in self.columns}

    def _embeds(self, client: httpx.Client, table: str) -> list[tuple[str, str]]:
        """(what to write in a select, the embedded table) for each relation."""
        found = []
        for other in self.columns:
            answer = client.get(f"/{table}/", params={"select": f"{other}(*)", "limit": "0"})
            if answer.status_code == 200:
                found.append((other, other))
            elif answer.status_code == 300:  # ambiguous: the problem names each hint
                hinted = set(re.findall(rf"\b{other}!\w+", answer.json()["detail"]))
                found += [(spelled, other) for spelled in sorted(hinted)]
        return found


def _select_item(walk: random.Random, columns: list[str]) -> str:
    alias = walk.choice(("", "", "a:", "b:"))
    return f"{alias}{walk.choice(columns)}{walk.choice(CASTS)}"


def _aggregate(walk: random.Random, columns: list[str]) -> str:
    return walk.choice(AGGREGATES).format(c=walk.choice(columns))


def _embed(walk: random.Random, schema: Schema, table: str, params: dict, depth: int = 0) -> str:
    """An embed of one of ``table``'s relations, and its own parameters in ``params``."""
    spelled, other = walk.choice(schema.embeds[table])
    columns = schema.columns[other]
    inside = [_select_item(walk, columns) for _ in range(walk.randint(1, 2))]
    if walk.random() < 0.2:
        inside.append(_aggregate(walk, columns))
    if depth == 0 and schema.embeds[other] and walk.random() < 0.3:
        inside.append(_embed(walk, schema, other, {}, depth + 1))
    alias = walk.choice(("", "", "e:", "f:"))
    key = alias[:-1] or spelled.split("!")[0]
    inner = "!inner" if walk.random() < 0.15 else ""
    spread = "..." if walk.random() < 0.2 else ""
    if walk.random() < 0.3:
        column = walk.choice(columns)
        params[f"{key}.{column}"] = _filter_text(walk, _held(walk, schema, other, column))
    if walk.random() < 0.2:
        params[f"{key}.order"] = walk.choice(columns) + walk.choice(("", ".desc", ".nullsfirst"))
    if walk.random() < 0.2:
        params[f"{key}.limit"] = str(walk.randint(0, 3))
    if walk.random() < 0.1:
        params[f"{key}.offset"] = str(walk.randint(0, 3))
    if walk.random() < 0.05:
        params[key] = walk.choice(("is.null", "not.is.null"))
    return f"{spread}{alias}{spelled}{inner}({','.join(inside)})"


def _filter_text(walk: random.Random, value: object = None) -> str:
    """A filter's text: of a value the column holds (``value``), half the
    time where there is one, so that more reads get past parsing; else odd."""
    negated = walk.choice(("", "", "not."))
    if isinstance(value, str | int | float) and walk.random() < 0.5:
        return f"{negated}{walk.choice(('eq', 'neq', 'gt', 'lte'))}.{value}"
    return f"{negated}{walk.choice(OPERATORS)}.{walk.choice(ODD_TEXTS)}"


def _held(walk: random.Random, schema: Schema, table: str, column: str) -> object:
    """A value ``column`` holds in one of ``table``'s first rows, if any."""
    rows = schema.rows[table]
    return walk.choice(rows).get(column) if rows else None


def read(walk: random.Random, schema: Schema) -> tuple[str, dict, dict]:
    table = walk.choice(list(schema.columns))
    columns = schema.columns[table]
    params: dict[str, str] = {}
    items = [_select_item(walk, columns) for _ in range(walk.randint(0, 3))]
    if walk.random() < 0.25:
        items.append(_aggregate(walk, columns))
    if schema.embeds[table]:
        items += [_embed(walk, schema, table, params) for _ in range(walk.randint(0, 2))]
    if items:
        params["select"] = ",".join(items)
    for _ in range(walk.randint(0, 2)):
        column = walk.choice(columns)
        params[column] = _filter_text(walk, _held(walk, schema, table, column))
    if walk.random() < 0.3:
        related = [
            f"{spelled}({schema.columns[other][0]})" for spelled, other in schema.embeds[table]
        ]
        params["order"] = walk.choice(columns + related) + walk.choice(
            ("", ".desc", ".nullsfirst")
        )
    if walk.random() < 0.3:
        params["limit"] = str(walk.randint(0, 5))
    if walk.random() < 0.2:
        params["offset"] = str(walk.randint(0, 5))
    headers = {}
    if walk.random() < 0.2:
        headers["Prefer"] = f"count={walk.choice(('exact', 'planned', 'estimated'))}"
    if walk.random() < 0.2:
        headers["Accept"] = walk.choice(
            ("text/csv", "application/x-ndjson", "application/vnd.pgrst.object+json")
        )
    return table, params, headers


def write(walk: random.Random, schema: Schema) -> tuple[str, str, dict, dict, object]:
    table = walk.choice(list(schema.columns))
    columns, rows = schema.columns[table], schema.rows[table]
    method = walk.choice(("POST", "POST", "PATCH", "PUT", "DELETE"))
    prefer = ["tx=rollback"]
    for chance, preference in (
        (0.7, "return=representation"),
        (0.2, walk.choice(("resolution=merge-duplicates", "resolution=ignore-duplicates"))),
        (0.2, "count=exact"),
        (0.2, "missing=default"),
    ):
        if walk.random() < chance:
            prefer.append(preference)
    params: dict[str, str] = {}
    if walk.random() < 0.4:
        params["select"] = ",".join(_select_item(walk, columns) for _ in range(walk.randint(1, 3)))

    def odd_row() -> dict:
        return {walk.choice(columns): walk.choice(ODD_VALUES) for _ in range(walk.randint(1, 4))}

    body: object = odd_row()
    if rows and walk.random() < 0.5:  # a real row, some of its values made odd
        body = {
            k: walk.choice(ODD_VALUES) if walk.random() < 0.3 else v
            for k, v in walk.choice(rows).items()
        }
    if method == "POST" and walk.random() < 0.3:
        body = [body, odd_row()]
    if method != "POST" and rows:
        column = walk.choice(columns)
        value = walk.choice(rows).get(column)
        params[column] = (
            "is.null" if isinstance(value, dict | list) or value is None else f"eq.{value}"
        )
    return (
        method,
        table,
        params,
        {"Prefer": ",".join(prefer)},
        None if method == "DELETE" else body,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="reads, and as many writes")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    walk = random.Random(args.seed)
    with (
        sakila_server(TOKEN) as server,
        httpx.Client(base_url=server.url, headers=AUTHORIZED, timeout=30) as client,
    ):
        schema = Schema(client)
        relations = sum(map(len, schema.embeds.values()))
        print(f"{len(schema.columns)} tables, {relations} relations")
        failed = walk_requests(walk, schema, client, args.requests)
    sys.exit(1 if failed else 0)


def walk_requests(walk: random.Random, schema: Schema, client: httpx.Client, requests: int) -> int:
    """Send the requests; print the statuses and each 5xx; the count of 5xx."""
    statuses: dict[str, collections.Counter] = {
        kind: collections.Counter() for kind in ("read", "next", "write")
    }
    failed = 0

    def sent(
        kind: str, what: object, method: str, url: str, **sending: Any
    ) -> httpx.Response | None:
        """The answer, counted; a 5xx or no answer in time printed and failed."""
        nonlocal failed
        try:
            answer = client.request(method, url, **sending)
        except httpx.TimeoutException:
            failed += 1
            statuses[kind]["no answer"] += 1
            print(f"no answer in {client.timeout.read} s, {kind}: {what}")
            return None
        statuses[kind][answer.status_code] += 1
        if answer.status_code >= 500:
            failed += 1
            print(f"5xx {kind}: {what} -> {answer.status_code} {answer.text[:200]}")
        return answer

    for _ in range(requests):
        table, params, headers = read(walk, schema)
        answer = sent(
            "read", (table, params, headers), "GET", f"/{table}/", params=params, headers=headers
        )
        link = (
            re.match(r"<([^>]*)>", answer.headers.get("link", "")) if answer is not None else None
        )
        if link:
            sent("next", link.group(1), "GET", link.group(1), headers=headers)
        method, table, params, headers, body = write(walk, schema)
        what = (method, table, params, headers, body)
        sent("write", what, method, f"/{table}/", params=params, headers=headers, json=body)
    for kind, counted in statuses.items():
        print(
            f"{kind:>5}: "
            + ", ".join(f"{status} x{n}" for status, n in sorted(counted.items(), key=str))
        )
    return failed


if __name__ == "__main__":
    main()
