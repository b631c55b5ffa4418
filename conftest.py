"""Session fixtures every test suite shares: the broker and the database server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.infra import Infra, provide_infra


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """RabbitMQ and PostgreSQL: containers when Docker runs, else the local ones."""
    with provide_infra() as found:
        yield found


@pytest.fixture
def exchange_name() -> str:
    """An exchange of this test alone, so tests never see each other's events."""
    return f"test.events.{uuid.uuid4().hex[:12]}"


def pytest_report_header(config: pytest.Config) -> str:
    from tests.support.infra import docker_engine_answers

    if docker_engine_answers():
        return "infra: testcontainers (a Docker engine answers)"
    return "infra: services named by AMQP_URL and DATABASE_URL (no Docker engine)"
