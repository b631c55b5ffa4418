"""Create the local databases named by the environment when they are missing."""

from __future__ import annotations

import os

import psycopg


def ensure_database(url: str) -> None:
    """Create the database of ``url`` on its server when it does not exist."""
    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def main() -> None:
    """Prepare the database of each service that has one."""
    ensure_database(os.environ["DATABASE_URL"])
    ensure_database(os.environ["TELEMETRY_DATABASE_URL"])


if __name__ == "__main__":
    main()
