"""Session fixtures every test suite shares: the broker and the database server."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

import aio_pika
import pytest

from tests.support.infra import Infra, provide_infra


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """RabbitMQ and PostgreSQL: containers when Docker runs, else the local ones."""
    with provide_infra() as found:
        yield found


logger = logging.getLogger(__name__)


@pytest.fixture
def exchange_name(infra: Infra) -> Iterator[str]:
    """An exchange of this test alone, so tests never see each other's events.

    The exchange and its dead-letter exchange and queue are deleted afterwards, so
    test runs leave nothing behind in the broker.
    """
    name = f"test.events.{uuid.uuid4().hex[:12]}"
    yield name
    try:
        asyncio.run(_delete_topology(infra.amqp_url, name))
    except Exception:  # the broker may be away after a fault test; not a failure
        logger.warning("could not delete test exchange %s", name, exc_info=True)


async def _delete_topology(amqp_url: str, name: str) -> None:
    connection = await aio_pika.connect(amqp_url, timeout=5)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(f"{name}.dead")
        await channel.exchange_delete(f"{name}.dead")
        await channel.exchange_delete(name)


def pytest_report_header(config: pytest.Config) -> str:
    from tests.support.infra import docker_engine_answers

    if docker_engine_answers():
        return "infra: testcontainers (a Docker engine answers)"
    return "infra: services named by AMQP_URL and DATABASE_URL (no Docker engine)"
