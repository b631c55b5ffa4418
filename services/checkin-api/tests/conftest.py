"""Fixtures of the check-in API's tests: a database per module, in-process apps,
an event collector bound to the test's own exchange, and guest payloads."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from checkin_api.app import create_app
from checkin_api.settings import ApiSettings
from checkin_events import EventConsumer, GuestEvent

from tests.support.guests import guest
from tests.support.infra import Infra, fresh_database
from tests.support.tokens import TEST_AUTH

AppFactory = Callable[..., AbstractAsyncContextManager[TestClient[Any, Any]]]


@pytest.fixture(scope="module")
def api_database(infra: Infra) -> Iterator[str]:
    """A database of this test module alone."""
    with fresh_database(infra, "checkin_api") as url:
        yield url


@pytest.fixture
def api_settings(infra: Infra, api_database: str, exchange_name: str) -> ApiSettings:
    """Settings of an API on this module's database and this test's exchange."""
    return fast_settings(
        database_url=api_database,
        amqp_url=infra.amqp_url,
        events_exchange=exchange_name,
    )


def fast_settings(**values: Any) -> ApiSettings:
    """Settings with short timeouts and backoffs, so failures show up quickly."""
    defaults: dict[str, Any] = {
        "relay_sweep_s": 1.0,
        "relay_min_backoff_s": 0.05,
        "relay_max_backoff_s": 0.3,
        "db_connect_timeout_s": 1.0,
        "db_acquire_timeout_s": 1.0,
        "db_command_timeout_s": 1.0,
        "publish_timeout_s": 2.0,
    }
    return ApiSettings(**(defaults | values))


@pytest.fixture
def start_api() -> AppFactory:
    """Start an in-process API with the given settings; stopped on leaving."""

    @asynccontextmanager
    async def started(settings: ApiSettings) -> AsyncIterator[TestClient[Any, Any]]:
        client = TestClient(TestServer(create_app(settings, TEST_AUTH)))
        await client.start_server()
        try:
            yield client
        finally:
            await client.close()

    return started


@pytest.fixture
async def api(
    start_api: AppFactory, api_settings: ApiSettings
) -> AsyncIterator[TestClient[Any, Any]]:
    """An in-process API on this module's database and this test's exchange."""
    async with start_api(api_settings) as client:
        yield client


class EventLog:
    """Events received by a consumer bound to every key of the test's exchange."""

    def __init__(self) -> None:
        self.events: list[GuestEvent] = []
        self.arrived = asyncio.Event()

    async def handle(self, event: GuestEvent) -> None:
        self.events.append(event)
        self.arrived.set()

    def of_org(self, org_id: int) -> list[GuestEvent]:
        return [event for event in self.events if event.org_id == org_id]

    async def wait_for(self, org_id: int, count: int, timeout_s: float = 10.0) -> Any:
        """The org's events once at least ``count`` arrived, or fail with what came."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(self.of_org(org_id)) < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [(e.seq, e.event_type) for e in self.of_org(org_id)]
                raise AssertionError(f"expected {count} events of org {org_id}: {seen}")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                continue
        return self.of_org(org_id)


@pytest.fixture
async def event_log(infra: Infra, exchange_name: str) -> AsyncIterator[EventLog]:
    """Events published on this test's exchange, collected by a real consumer."""
    log = EventLog()
    consumer = EventConsumer(
        infra.amqp_url, log.handle, ["#"], exchange_name=exchange_name
    )
    await consumer.start()
    try:
        yield log
    finally:
        await consumer.stop()


@pytest.fixture
def org() -> int:
    """An org id no other test uses, so sequences and lists start empty."""
    return random.randint(10_000, 2**40)


@pytest.fixture
def other_org(org: int) -> int:
    return org + 1


@pytest.fixture
def make_guest() -> Callable[..., dict[str, Any]]:
    return guest
