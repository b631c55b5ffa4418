"""Alembic environment of the check-in API: plain SQL migrations, online only.

Several API instances may start at once; an advisory lock held for the migration's
transaction makes them take turns, so the second finds the schema already at head.
"""

from __future__ import annotations

import logging
import os

from alembic import context
from sqlalchemy import create_engine, text

logger = logging.getLogger(__name__)

MIGRATION_LOCK_KEY = 7_305_202_601


def _url() -> str:
    configured = context.config.get_main_option("sqlalchemy.url")
    if configured:
        return configured
    from service_kit.database import psycopg_url

    return psycopg_url(os.environ["DATABASE_URL"])


def run_migrations_online() -> None:
    engine = create_engine(_url())
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, transaction_per_migration=False)
            with context.begin_transaction():
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": MIGRATION_LOCK_KEY},
                )
                context.run_migrations()
    finally:
        engine.dispose()


run_migrations_online()
