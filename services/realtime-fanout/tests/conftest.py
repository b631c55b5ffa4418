"""Fixtures of the fanout's tests: a settable clock, events, and in-process apps."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from checkin_events import GuestCreated, GuestEvent, GuestUpdated
from realtime_fanout.app import create_app
from realtime_fanout.buffer import BufferLimits, Buffers
from realtime_fanout.metrics import FanoutStats
from realtime_fanout.positions import PositionUnavailable
from realtime_fanout.settings import FanoutSettings
from realtime_fanout.waiters import Hub
from service_kit.auth import TokenVerifier

from tests.support.tokens import TEST_AUTH

_entity_ids = itertools.count(1)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_event(
    seq: int, org_id: int = 1, property_id: int = 11, updated: bool = False
) -> GuestEvent:
    """An event of an org at a seq; ``updated`` makes a guest_updated."""
    if updated:
        return GuestUpdated(
            org_id=org_id,
            property_id=property_id,
            seq=seq,
            entity_id=next(_entity_ids),
            actor_user_id="staff-1",
            metadata={"changed_fields": ["roomNumber"]},  # type: ignore[arg-type]
        )
    return GuestCreated(
        org_id=org_id,
        property_id=property_id,
        seq=seq,
        entity_id=next(_entity_ids),
        actor_user_id="staff-1",
    )


class FakePositions:
    """The check-in API's position endpoint, as a dict the test fills."""

    def __init__(self) -> None:
        self.positions: dict[int, int] = {}
        self.available = True
        self.asked = 0

    async def position(self, org_id: int, authorization: str) -> int:
        self.asked += 1
        if not self.available:
            raise PositionUnavailable("api away (test)")
        return self.positions.get(org_id, 0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def hub(clock: FakeClock) -> Hub:
    limits = BufferLimits(max_events=5, ttl_s=25.0, idle_evict_s=120.0, gap_grace_s=1.0)
    return Hub(Buffers(limits, clock), max_waiters_per_org=3, stats=FanoutStats())


@pytest.fixture
def positions() -> FakePositions:
    return FakePositions()


@pytest.fixture
async def fanout(
    positions: FakePositions,
) -> AsyncIterator[Callable[..., Any]]:
    """Start in-process fanouts: without a broker (the test feeds the hub) or, with
    ``consume=True``, consuming the exchange named in the settings."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def start(
        consume: bool = False, **overrides: Any
    ) -> TestClient[web.Request, web.Application]:
        values: dict[str, Any] = {"realtime_wait_s": 2.0, "max_waiters_per_org": 50}
        values.update(overrides)
        app = create_app(
            FanoutSettings(**values),
            verifier=TokenVerifier(TEST_AUTH),
            position_source=positions,
            consume_events=consume,
        )
        client = TestClient(TestServer(app))
        try:
            await client.start_server()
        except BaseException:
            await client.close()
            raise
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
def event() -> Callable[..., GuestEvent]:
    """Build events: ``event(seq, org_id=1, property_id=11, updated=False)``."""
    return make_event
