"""Tables and metadata: the single source of truth for the schema.

Alembic migrations are generated from this metadata and reviewed by hand.
Adding a table means a Table here, a migration, and one ``add_collection``
line in ``includeme``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pyramid.config import Configurator
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT on MySQL/MariaDB; SQLite autoincrements only an INTEGER primary key.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(sa.TypeDecorator):
    """DATETIME(6) holding UTC.

    Aware datetimes are converted to UTC on the way in; values come back naive,
    meaning UTC, and every JSON writer adds the "Z" (``formats.ORJSON_OPTIONS``).
    Making them aware on the way out would cost a new object per value read.
    """

    impl = sa.DateTime
    cache_ok = True

    @property
    def python_type(self) -> type:
        return datetime

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(
        self, value: datetime | str | None, dialect: Dialect
    ) -> datetime | str | None:
        # Text is taken as UTC already, in the database's form (api.sql.grouped.new_row_stamps).
        if isinstance(value, datetime) and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


OWNED = {"server_owned": True}


mytable = sa.Table(
    "mytable",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, index=True),
    # A JSON null in a body is SQL NULL, so that data=is.null finds it.
    sa.Column("data", sa.JSON(none_as_null=True), nullable=True),
    # Server-owned columns: set by the API, refused in request bodies.
    sa.Column("version", sa.Integer, nullable=False, default=1, server_default="1", info=OWNED),
    sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow, info=OWNED),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=utcnow, info=OWNED),
)


def includeme(config: Configurator) -> None:
    if config.registry.api_settings.declared_tables:
        config.add_collection(mytable)
