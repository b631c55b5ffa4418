"""Bringing the database schema to the newest alembic revision.

The migrations live in ``services/checkin-api/migrations``; alembic drives them
through SQLAlchemy with the psycopg driver, so the asyncpg URL the service uses is
rewritten for it, with a connect timeout (``service_kit.database``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from service_kit.database import psycopg_url

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def upgrade_to_head(database_url: str, connect_timeout_s: float = 10.0) -> None:
    """Apply every migration not yet applied (blocking: run it in a thread)."""
    url = psycopg_url(database_url, connect_timeout_s)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")
    logger.info("database migrated revision=head")
