"""Fixtures of the telemetry-ingest suite: a fresh database, the app, a DB proxy.

Each test gets its own database on the real PostgreSQL. ``telemetry_app`` starts the
application in-process against it; ``database_proxy`` (the shared ``TcpProxy``) sits
between the service and PostgreSQL so a test can take the database away or make it
hang, and bring it back, without touching the server the other suites share.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from telemetry_ingest.app import create_app
from telemetry_ingest.settings import TelemetrySettings

from tests.support.infra import Infra, fresh_database
from tests.support.tcp_proxy import TcpProxy
from tests.support.tokens import TEST_AUTH

AppFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def database_url(infra: Infra) -> Iterator[str]:
    with fresh_database(infra, "telemetry") as url:
        yield url


def _event(
    type_: str = "fast_empty",
    *,
    ts: datetime | None = None,
    session_id: str = "session-1",
    tab_id: str = "tab-1",
    attrs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One client event as the browser sends it."""
    return {
        "type": type_,
        "ts": (ts or datetime.now(UTC)).isoformat(),
        "sessionId": session_id,
        "tabId": tab_id,
        "attrs": attrs if attrs is not None else {"durationMs": 12},
    }


async def read_rows(database_url: str) -> list[asyncpg.Record]:
    """Every row of ``telemetry.client_events``, oldest id first."""
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetch(
            "SELECT * FROM telemetry.client_events ORDER BY id"
        )
    finally:
        await connection.close()


@pytest.fixture
def event() -> Callable[..., dict[str, Any]]:
    """Builds a client event: ``event("fast_empty", attrs={...})``."""
    return _event


@pytest.fixture
def stored_rows(
    database_url: str,
) -> Callable[[], Awaitable[list[asyncpg.Record]]]:
    """Reads every stored event row of the test's database."""
    return lambda: read_rows(database_url)


@pytest.fixture
async def telemetry_app(database_url: str) -> AsyncIterator[AppFactory]:
    """Start the app in-process with settings overrides; closed after the test."""
    clients: list[TestClient[Any, Any]] = []

    async def start(**overrides: Any) -> TestClient[Any, Any]:
        values: dict[str, Any] = {
            "database_url": database_url,
            "flush_interval_s": 0.05,
            "cors_origins": ["http://demo.example"],
            **overrides,
        }
        settings = TelemetrySettings(**values)
        client = TestClient(TestServer(create_app(settings, TEST_AUTH)))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def database_proxy(database_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A proxy to the test's database and the URL that reaches it through it."""
    parts = urlsplit(database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    credentials, _, _ = parts.netloc.rpartition("@")
    netloc = f"{credentials}@127.0.0.1:{proxy.port}".lstrip("@")
    yield proxy, urlunsplit(parts._replace(netloc=netloc))
    await proxy.stop()
