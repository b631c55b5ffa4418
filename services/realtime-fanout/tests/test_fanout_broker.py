"""The fanout consuming the real broker: events published with ``EventPublisher``
onto this test's own exchange reach waiting polls; the API is a fake position."""

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from checkin_events import EventPublisher, GuestEvent
from realtime_fanout.http import HUB_KEY
from realtime_fanout.waiters import Hub

from tests.support.infra import Infra
from tests.support.polling import poll_until
from tests.support.tokens import bearer

SUBSCRIBE = "/v1/guest-checkin/realtime/subscribe"
A_ADMIN = bearer(1)
Event = Callable[..., GuestEvent]


@pytest.fixture
async def publisher(infra: Infra, exchange_name: str) -> AsyncIterator[EventPublisher]:
    async with EventPublisher(infra.amqp_url, exchange_name) as events:
        yield events


@pytest.fixture
async def consuming(fanout: Any, infra: Infra, exchange_name: str) -> Any:
    return await consuming_fanout(fanout, infra, exchange_name)


async def consuming_fanout(
    fanout: Any, infra: Infra, exchange_name: str, **settings: Any
) -> Any:
    name = f"fanout-test-{uuid.uuid4().hex[:10]}"
    client = await fanout(
        consume=True,
        amqp_url=infra.amqp_url,
        events_exchange=exchange_name,
        amqp_connection_name=name,
        gap_grace_s=0.3,
        **settings,
    )
    client.connection_name = name
    return client


def hub_of(client: Any) -> Hub:
    hub: Hub = client.app[HUB_KEY]
    return hub


async def poll(client: Any, **query: int) -> tuple[int, Any]:
    params = {key: str(value) for key, value in query.items()}
    async with client.get(SUBSCRIBE, params=params, headers=A_ADMIN) as answer:
        return answer.status, await answer.json()


def seqs(body: Any) -> list[int]:
    return [event["seq"] for event in body["events"]]


async def test_a_published_event_wakes_the_poll_of_its_property_only(
    consuming: Any, publisher: EventPublisher, positions: Any, event: Event
) -> None:
    hub = hub_of(consuming)
    on_11 = asyncio.create_task(poll(consuming, propertyId=11, lastEventId=0))
    on_12 = asyncio.create_task(poll(consuming, propertyId=12, lastEventId=0))
    await poll_until(
        lambda: asyncio.sleep(0, hub.waiter_count(1) == 2), "two waiting polls"
    )
    await publisher.publish(event(1, property_id=11))
    status, body = await asyncio.wait_for(on_11, timeout=1.0)
    assert (status, seqs(body), body["events"][0]["propertyId"]) == (200, [1], 11)
    assert not on_12.done()
    assert (await on_12)[1]["events"] == []


async def test_duplicates_and_reordering_on_the_wire_reach_the_client_once_in_order(
    consuming: Any, publisher: EventPublisher, event: Event
) -> None:
    first, second, third = event(1), event(2), event(3)
    for item in (first, third, first, second, third):
        await publisher.publish(item)
    await poll_until(
        lambda: asyncio.sleep(0, hub_of(consuming).stats.published_total == 3),
        "three events consumed",
    )
    status, body = await poll(consuming, lastEventId=0)
    assert (status, seqs(body)) == (200, [1, 2, 3])
    assert hub_of(consuming).stats.dropped_total == 2


async def test_a_hole_that_never_fills_gives_resync_not_a_silent_skip(
    consuming: Any, publisher: EventPublisher, event: Event
) -> None:
    await publisher.publish(event(1))
    await poll_until(
        lambda: asyncio.sleep(0, hub_of(consuming).head(1) == 1), "event 1 consumed"
    )
    waiting = asyncio.create_task(poll(consuming, lastEventId=1))
    await publisher.publish(event(3))
    status, body = await asyncio.wait_for(waiting, timeout=2.0)
    assert (status, body["resync"], body["lastEventId"]) == (200, True, "3")


async def test_holds_ending_as_a_hole_is_lost_never_skip_it_without_resync(
    fanout: Any,
    infra: Infra,
    exchange_name: str,
    publisher: EventPublisher,
    event: Event,
) -> None:
    # Sixty polls at the head, started over 0.6 s with a 1 s hold, so that their
    # holds end in the sweeps around the one that declares the hole at seq 2 lost.
    consuming = await consuming_fanout(
        fanout, infra, exchange_name, realtime_wait_s=1.0, max_waiters_per_org=100
    )
    await publisher.publish(event(1))
    await poll_until(
        lambda: asyncio.sleep(0, hub_of(consuming).head(1) == 1), "event 1 consumed"
    )

    async def poll_later(delay_s: float) -> tuple[int, Any]:
        await asyncio.sleep(delay_s)
        return await poll(consuming, lastEventId=1)

    polls = [asyncio.create_task(poll_later(i * 0.01)) for i in range(60)]
    await asyncio.sleep(0.75)  # the hole is lost (0.3 s grace) as the holds end
    await publisher.publish(event(3))  # seq 2 never comes
    await publisher.publish(event(4))
    answers = [body for _, body in await asyncio.gather(*polls)]

    outcomes = {(body["lastEventId"], body["resync"]) for body in answers}
    assert outcomes <= {("1", False), ("4", True)}, outcomes
    assert all(body["events"] == [] for body in answers)


def _broker_connection_pid(name: str) -> str | None:
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    ).stdout
    for line in listing.splitlines():
        if f'{{"connection_name","{name}"}}' in line:
            return line.split("\t", 1)[0]
    return None


async def _ready(client: Any) -> int:
    async with client.get("/readyz") as answer:
        return int(answer.status)


async def test_after_the_broker_drops_its_connection_the_fanout_consumes_again(
    fanout: Any,
    infra: Infra,
    exchange_name: str,
    publisher: EventPublisher,
    positions: Any,
    event: Event,
) -> None:
    consuming = await consuming_fanout(fanout, infra, exchange_name, realtime_wait_s=30)
    hub = hub_of(consuming)
    await publisher.publish(event(1))
    await poll_until(lambda: asyncio.sleep(0, hub.head(1) == 1), "event 1 consumed")
    waiting = asyncio.create_task(poll(consuming, lastEventId=1))
    await poll_until(lambda: asyncio.sleep(0, hub.waiter_count(1) == 1), "waiting")

    pid = await asyncio.to_thread(_broker_connection_pid, consuming.connection_name)
    assert pid is not None, "the fanout's connection is not listed by the broker"
    await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "-q", "close_connection", pid, "test closes the fanout"],
        check=True,
        timeout=20,
    )
    await poll_until(lambda: _not(_ready(consuming)), "readyz not ready", 5.0)
    await publisher.publish(event(2))  # published while the fanout is away: lost
    await poll_until(lambda: _is(_ready(consuming), 200), "readyz ready", 15.0)
    released = await asyncio.wait_for(waiting, timeout=1.0)
    assert released[1] == {"events": [], "lastEventId": "1", "resync": False}

    positions.positions[1] = 2
    status, stale = await poll(consuming, lastEventId=1)
    assert (status, stale["resync"], stale["lastEventId"]) == (200, True, "2")
    after = asyncio.create_task(poll(consuming, lastEventId=2))
    await poll_until(lambda: asyncio.sleep(0, hub.waiter_count(1) == 1), "waiting")
    await publisher.publish(event(3))
    await publisher.publish(event(4))
    status, body = await asyncio.wait_for(after, timeout=2.0)
    received = seqs(body)
    if received == [3]:
        _, rest = await poll(consuming, lastEventId=int(body["lastEventId"]))
        received += seqs(rest)
    assert (status, received) == (200, [3, 4])


async def _not(status: Any) -> bool:
    return await status != 200


async def _is(status: Any, expected: int) -> bool:
    return await status == expected


async def test_readiness_reports_the_consumer_attached(consuming: Any) -> None:
    async with consuming.get("/readyz") as answer:
        assert answer.status == 200


async def test_a_fanout_that_cannot_reach_the_broker_starts_and_refuses_polls(
    fanout: Any, exchange_name: str
) -> None:
    client = await fanout(
        consume=True,
        amqp_url="amqp://guest:guest@127.0.0.1:1/",
        events_exchange=exchange_name,
        connect_retry_min_s=0.05,
        connect_retry_max_s=0.2,
    )
    async with client.get("/healthz") as answer:
        assert answer.status == 200
    async with client.get("/readyz") as answer:
        assert answer.status == 503
        assert "consumer not attached" in (await answer.json())["checks"]["consumer"]
    async with client.get(SUBSCRIBE, headers=A_ADMIN) as answer:
        assert answer.status == 503
        assert answer.headers["Retry-After"] == "5"
        body = await answer.json()
        assert body["error"] == "unavailable" and "broker" in body["detail"]
