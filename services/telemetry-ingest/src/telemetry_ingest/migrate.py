"""Run the service's alembic migrations, at start-up or by hand.

``python -m telemetry_ingest.migrate`` upgrades the database named by
``DATABASE_URL``; the service does the same at start-up, again and again while the
database does not answer, before it takes events. The scripts live in
``services/telemetry-ingest/migrations``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from service_kit.database import psycopg_url

from telemetry_ingest.settings import TelemetrySettings

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def upgrade_to_head(database_url: str, connect_timeout_s: float = 10.0) -> None:
    """Bring the ``telemetry`` schema of the database to the newest revision."""
    url = psycopg_url(database_url, connect_timeout_s)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")
    logger.info("migrations upgraded schema=telemetry revision=head")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    upgrade_to_head(TelemetrySettings().database_url)
