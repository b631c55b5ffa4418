"""Run the service's alembic migrations, at start-up or by hand.

``python -m telemetry_ingest.migrate`` upgrades the database named by
``DATABASE_URL``; the service does the same before it opens its pool. The scripts
live in ``services/telemetry-ingest/migrations``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

from telemetry_ingest.settings import TelemetrySettings

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def sqlalchemy_url(database_url: str) -> str:
    """The SQLAlchemy URL (psycopg driver) of a plain ``postgresql://`` URL."""
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme not in {"postgres", "postgresql"}:
        raise ValueError("DATABASE_URL must be a postgresql:// URL")
    return f"postgresql+psycopg://{rest}"


def upgrade_to_head(database_url: str) -> None:
    """Bring the ``telemetry`` schema of the database to the newest revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url))
    command.upgrade(config, "head")
    logger.info("migrations upgraded schema=telemetry revision=head")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    upgrade_to_head(TelemetrySettings().database_url)
