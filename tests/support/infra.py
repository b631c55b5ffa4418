"""Where the tests find RabbitMQ and PostgreSQL.

When a Docker engine answers, both are started with testcontainers for the test
session. Otherwise the tests use the services named by ``AMQP_URL`` and
``DATABASE_URL`` (by default the ones this machine runs on 127.0.0.1). Which path ran
is reported in the pytest header and in ``Infra.source``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg

logger = logging.getLogger(__name__)

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Infra:
    """Connection URLs of the broker and the database server the tests use."""

    amqp_url: str
    database_url: str
    source: str

    def database_url_for(self, name: str) -> str:
        """The URL of another database on the same server."""
        base, _, _ = self.database_url.rpartition("/")
        return f"{base}/{name}"


def docker_engine_answers() -> bool:
    """True when a Docker engine is reachable (the client alone is not enough)."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def provide_infra() -> Iterator[Infra]:
    """Start containers when Docker is there, else use the configured services."""
    if os.environ.get("TESTS_USE_CONTAINERS", "auto") != "never" and (
        docker_engine_answers()
    ):
        from testcontainers.postgres import PostgresContainer
        from testcontainers.rabbitmq import RabbitMqContainer

        with (
            RabbitMqContainer("rabbitmq:3.13-alpine") as rabbit,
            PostgresContainer("postgres:16-alpine", driver=None) as postgres,
        ):
            host = rabbit.get_container_host_ip()
            port = rabbit.get_exposed_port(5672)
            yield Infra(
                amqp_url=f"amqp://guest:guest@{host}:{port}/",
                database_url=postgres.get_connection_url(),
                source="testcontainers",
            )
        return
    yield Infra(
        amqp_url=os.environ.get("AMQP_URL", DEFAULT_AMQP_URL),
        database_url=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        source="environment (AMQP_URL, DATABASE_URL)",
    )


@contextlib.contextmanager
def fresh_database(infra: Infra, prefix: str) -> Iterator[str]:
    """Create an empty database for one test module or session, drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(infra.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield infra.database_url_for(name)
    finally:
        with psycopg.connect(infra.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def delete_exchange_topology(amqp_url: str, name: str) -> None:
    """Delete an events exchange and the dead-letter exchange and queue beside it."""
    import aio_pika

    connection = await aio_pika.connect(amqp_url, timeout=5)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(f"{name}.dead")
        await channel.exchange_delete(f"{name}.dead")
        await channel.exchange_delete(name)
