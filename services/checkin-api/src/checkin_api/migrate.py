"""Bringing the database schema to the newest alembic revision.

The migrations live in ``services/checkin-api/migrations``; alembic drives them
through SQLAlchemy with the psycopg driver, so the asyncpg URL the service uses is
rewritten for it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def psycopg_url(database_url: str) -> str:
    """The SQLAlchemy URL (psycopg 3 driver) of a ``postgresql://`` URL."""
    scheme, separator, rest = database_url.partition("://")
    if not separator or scheme not in {"postgres", "postgresql", "postgresql+psycopg"}:
        raise ValueError("DATABASE_URL must be a postgresql:// URL")
    return f"postgresql+psycopg://{rest}"


def upgrade_to_head(database_url: str) -> None:
    """Apply every migration not yet applied (blocking: run it in a thread)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option(
        "sqlalchemy.url", psycopg_url(database_url).replace("%", "%%")
    )
    command.upgrade(config, "head")
    logger.info("database migrated revision=head")
