"""create mytable

Revision ID: 1dad91fcc3d5
Revises:
Create Date: 2026-11-25 12:50:25.166774

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "1dad91fcc3d5"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from api.models, so that this migration
# keeps meaning what it meant when the models change.
BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DATETIME_UTC = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "mytable",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", DATETIME_UTC, nullable=False),
        sa.Column("updated_at", DATETIME_UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mytable")),
    )
    op.create_index(op.f("ix_mytable_name"), "mytable", ["name"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_mytable_name"), table_name="mytable")
    op.drop_table("mytable")
