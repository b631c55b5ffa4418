"""The database URL as SQLAlchemy and alembic need it, from a service's own.

Services keep one ``postgresql://`` URL (asyncpg reads it as it is); their alembic
migrations run through SQLAlchemy with the psycopg 3 driver, so the scheme is
rewritten, and libpq's ``connect_timeout`` is added: a database that accepts TCP but
never answers must fail the attempt, not hold the service's start-up forever.
"""

from __future__ import annotations

import math
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SCHEMES = frozenset({"postgres", "postgresql", "postgresql+psycopg"})


def psycopg_url(database_url: str, connect_timeout_s: float | None = None) -> str:
    """The SQLAlchemy URL (psycopg 3) of a ``postgresql://`` URL.

    With ``connect_timeout_s``, libpq's ``connect_timeout`` (whole seconds, at least
    2) is added unless the URL sets one.
    """
    scheme, separator, rest = database_url.partition("://")
    if not separator or scheme not in SCHEMES:
        raise ValueError("DATABASE_URL must be a postgresql:// URL")
    url = f"postgresql+psycopg://{rest}"
    if connect_timeout_s is None:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "connect_timeout" for key, _ in query):
        return url
    query.append(("connect_timeout", str(max(2, math.ceil(connect_timeout_s)))))
    return urlunsplit(parts._replace(query=urlencode(query)))
