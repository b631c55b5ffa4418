"""Bringing the database schema to the newest alembic revision.

The migrations live in ``services/checkin-api/migrations``; alembic drives them
through SQLAlchemy with the psycopg driver, so the asyncpg URL the service uses is
rewritten for it, with a connect timeout so that a database that never answers
fails the attempt instead of holding it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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


def with_connect_timeout(url: str, timeout_s: float) -> str:
    """``url`` with libpq's ``connect_timeout`` (whole seconds, at least 2) unless set.

    Without it a database that accepts TCP but never answers would hold the
    migration, and so the service's start-up, forever.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "connect_timeout" for key, _ in query):
        return url
    query.append(("connect_timeout", str(max(2, math.ceil(timeout_s)))))
    return urlunsplit(parts._replace(query=urlencode(query)))


def upgrade_to_head(database_url: str, connect_timeout_s: float = 10.0) -> None:
    """Apply every migration not yet applied (blocking: run it in a thread)."""
    url = with_connect_timeout(psycopg_url(database_url), connect_timeout_s)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")
    logger.info("database migrated revision=head")
