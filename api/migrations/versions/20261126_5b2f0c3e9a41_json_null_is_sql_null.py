"""JSON null in mytable.data becomes SQL NULL

The API now stores a JSON null sent for a JSON column as SQL NULL (so that
``data=is.null`` finds it); rows written before hold the JSON text ``null``.

Revision ID: 5b2f0c3e9a41
Revises: 1dad91fcc3d5
Create Date: 2026-11-26 18:45:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b2f0c3e9a41"
down_revision: str | Sequence[str] | None = "1dad91fcc3d5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The JSON text is stored as written ("null"): the same test on MariaDB and SQLite.
    op.execute(sa.text("UPDATE mytable SET data = NULL WHERE data = 'null'"))


def downgrade() -> None:
    pass  # which NULLs were JSON nulls is not known any more; both read as null
