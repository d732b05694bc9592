"""``api-seed CONFIG [COUNT]``: load demo rows into the configured database."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pyramid.paster import get_app, setup_logging
from pyramid.registry import Registry

from api.bridge import await_
from api.models import mytable


def demo_rows(count: int) -> Iterator[dict[str, Any]]:
    now = datetime.now(UTC)
    for n in range(1, count + 1):
        yield {
            "name": f"demo {n}",
            "data": {"n": n, "tags": ["demo", "even" if n % 2 == 0 else "odd"]},
            "created_at": now,
            "updated_at": now,
        }


def seed(registry: Registry, count: int) -> int:
    """Insert ``count`` demo rows unless the table has rows already; return how many."""
    engine = registry.api_engines.current()

    async def insert() -> int:
        async with engine.begin() as connection:
            existing = await connection.scalar(sa.select(sa.func.count()).select_from(mytable))
            if existing:
                return 0
            await connection.execute(sa.insert(mytable), list(demo_rows(count)))
            return count

    return await_(insert())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="api-seed",
        description="Load demo rows into mytable of the configured database, if it is empty.",
    )
    parser.add_argument("config_uri", help="the ini file, e.g. development.ini")
    parser.add_argument(
        "count", nargs="?", type=int, default=100, help="how many rows (default: 100)"
    )
    arguments = parser.parse_args(argv)
    setup_logging(arguments.config_uri)
    app = get_app(arguments.config_uri)
    try:
        inserted = app.run(seed, app.registry, arguments.count)
    finally:
        app.close()
    print(f"inserted {inserted} demo rows" if inserted else "table has rows already; left as is")
    return 0


if __name__ == "__main__":
    sys.exit(main())
