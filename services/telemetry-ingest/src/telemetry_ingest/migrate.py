"""Run the service's alembic migrations, at start-up or by hand.

``python -m telemetry_ingest.migrate`` upgrades the database named by
``DATABASE_URL``; the service does the same at start-up, again and again while the
database does not answer, before it takes events. The scripts live in
``services/telemetry-ingest/migrations``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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


def with_connect_timeout(url: str, timeout_s: float) -> str:
    """``url`` with libpq's ``connect_timeout`` (whole seconds, at least 2) unless set.

    A database that accepts connections but never answers must fail the attempt,
    not hold the service's start-up forever.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "connect_timeout" for key, _ in query):
        return url
    query.append(("connect_timeout", str(max(2, math.ceil(timeout_s)))))
    return urlunsplit(parts._replace(query=urlencode(query)))


def upgrade_to_head(database_url: str, connect_timeout_s: float = 10.0) -> None:
    """Bring the ``telemetry`` schema of the database to the newest revision."""
    url = with_connect_timeout(sqlalchemy_url(database_url), connect_timeout_s)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")
    logger.info("migrations upgraded schema=telemetry revision=head")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    upgrade_to_head(TelemetrySettings().database_url)
