"""Session fixtures every test suite shares: the broker and the database server."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.support.infra import Infra, delete_exchange_topology, provide_infra

logger = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """RabbitMQ and PostgreSQL: containers when Docker runs, else the local ones."""
    with provide_infra() as found:
        yield found


@pytest_asyncio.fixture
async def exchange_name(infra: Infra) -> AsyncIterator[str]:
    """An exchange of this test alone, so tests never see each other's events.

    The exchange and its dead-letter exchange and queue are deleted afterwards, so
    test runs leave nothing behind in the broker.
    """
    name = f"test.events.{uuid.uuid4().hex[:12]}"
    yield name
    try:
        await delete_exchange_topology(infra.amqp_url, name)
    except Exception:  # the broker may be away after a fault test; not a failure
        logger.warning("could not delete test exchange %s", name, exc_info=True)


def pytest_report_header(config: pytest.Config) -> str:
    from tests.support.infra import docker_engine_answers

    if docker_engine_answers():
        return "infra: testcontainers (a Docker engine answers)"
    return "infra: services named by AMQP_URL and DATABASE_URL (no Docker engine)"
