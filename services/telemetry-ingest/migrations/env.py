"""Alembic environment of telemetry-ingest: everything lives in schema ``telemetry``.

The version table is ``telemetry.alembic_version`` so that this service never touches
the check-in API's alembic table when both share one database. An advisory lock
keeps two instances starting at once from migrating side by side.
"""

from __future__ import annotations

import logging

from alembic import context
from sqlalchemy import create_engine, text

logger = logging.getLogger(__name__)

SCHEMA = "telemetry"
MIGRATION_LOCK_ID = 0x7E1E_0001


def run_migrations_online() -> None:
    """Upgrade the database named by ``sqlalchemy.url`` under an advisory lock."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None, "sqlalchemy.url must be set by the caller"
    engine = create_engine(url)
    with engine.connect() as connection:
        lock = {"id": MIGRATION_LOCK_ID}
        connection.execute(text("SELECT pg_advisory_lock(:id)"), lock)
        try:
            connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            connection.commit()
            context.configure(
                connection=connection,
                version_table_schema=SCHEMA,
                include_schemas=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), lock)
            connection.commit()
    engine.dispose()


run_migrations_online()
