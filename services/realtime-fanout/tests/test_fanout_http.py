"""The long-poll over HTTP, in process: answers, holds, filters, cursors, caps, logs."""

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from checkin_events import GuestEvent
from realtime_fanout.http import HUB_KEY
from realtime_fanout.waiters import Hub

from tests.support.polling import poll_until
from tests.support.tokens import bearer

SUBSCRIBE = "/v1/guest-checkin/realtime/subscribe"
METRICS = "/v1/guest-checkin/realtime/metrics"
Event = Callable[..., GuestEvent]
A_ADMIN = bearer(1)
A_MGR = bearer(1, "MANAGER", property_ids=[11])
B_ADMIN = bearer(2)


def hub_of(client: Any) -> Hub:
    hub: Hub = client.app[HUB_KEY]
    return hub


async def poll(
    client: Any, headers: dict[str, str], **query: int | str
) -> tuple[int, Any, float]:
    started = time.monotonic()
    params = {key: str(value) for key, value in query.items()}
    async with client.get(SUBSCRIBE, params=params, headers=headers) as answer:
        return answer.status, await answer.json(), time.monotonic() - started


def seqs(body: Any) -> list[int]:
    return [event["seq"] for event in body["events"]]


async def publish_soon(hub: Hub, *events: GuestEvent, delay_s: float = 0.1) -> None:
    await asyncio.sleep(delay_s)
    for item in events:
        hub.publish(item)


async def test_a_waiting_poll_gets_an_event_of_its_property_the_moment_it_arrives(
    fanout: Any, positions: Any, event: Event
) -> None:
    client = await fanout()
    positions.positions[1] = 5
    producer = asyncio.create_task(publish_soon(hub_of(client), event(6)))
    status, body, took = await poll(client, A_ADMIN, propertyId=11, lastEventId=5)
    await producer
    assert status == 200
    assert seqs(body) == [6]
    assert body["lastEventId"] == "6" and body["resync"] is False
    assert took < 1.0


async def test_a_poll_on_another_property_is_not_answered_by_the_event(
    fanout: Any, positions: Any, event: Event
) -> None:
    client = await fanout(realtime_wait_s=0.5)
    producer = asyncio.create_task(
        publish_soon(hub_of(client), event(1, property_id=11))
    )
    status, body, took = await poll(client, A_ADMIN, propertyId=12, lastEventId=0)
    await producer
    assert (status, body["events"], body["lastEventId"]) == (200, [], "1")
    assert took >= 0.45


async def test_a_manager_asking_for_a_property_not_theirs_is_forbidden(
    fanout: Any,
) -> None:
    client = await fanout()
    status, body, _ = await poll(client, A_MGR, propertyId=12)
    assert status == 403 and body["error"] == "forbidden"


async def test_a_manager_without_property_gets_only_their_properties(
    fanout: Any, event: Event
) -> None:
    client = await fanout()
    hub = hub_of(client)
    hub.publish(event(1, property_id=12))
    hub.publish(event(2, property_id=11))
    hub.publish(event(3, property_id=12))
    status, body, _ = await poll(client, A_MGR, lastEventId=0)
    assert (status, seqs(body), body["lastEventId"]) == (200, [2], "3")


@pytest.mark.parametrize("cursor", ["zzz", "-1", "1.5", "99999999999999999999"])
async def test_a_malformed_cursor_is_400_at_once(fanout: Any, cursor: str) -> None:
    client = await fanout()
    status, body, took = await poll(client, A_ADMIN, lastEventId=cursor)
    assert (status, body["error"]) == (400, "bad_request")
    assert took < 0.5


async def test_a_cursor_beyond_the_orgs_position_is_400_from_the_future(
    fanout: Any, positions: Any
) -> None:
    client = await fanout()
    positions.positions[1] = 3
    status, body, _ = await poll(client, A_ADMIN, lastEventId=50)
    assert status == 400 and body["detail"] == "cursor from the future"


async def test_a_cursor_the_api_knows_but_the_fanout_has_not_consumed_waits(
    fanout: Any, positions: Any, event: Event
) -> None:
    client = await fanout()
    hub = hub_of(client)
    hub.publish(event(1))
    positions.positions[1] = 2
    producer = asyncio.create_task(publish_soon(hub, event(2), event(3)))
    status, body, _ = await poll(client, A_ADMIN, lastEventId=2)
    await producer
    assert (status, seqs(body)) == (200, [3])


async def test_an_unknown_org_with_the_api_away_is_told_to_resync_at_once(
    fanout: Any, positions: Any
) -> None:
    client = await fanout()
    positions.available = False
    status, body, took = await poll(client, A_ADMIN, lastEventId=4)
    assert (status, body) == (200, {"events": [], "lastEventId": "4", "resync": True})
    assert took < 0.5


async def test_a_restarted_fanout_resyncs_a_cursor_older_than_the_api_position(
    fanout: Any, positions: Any
) -> None:
    client = await fanout()
    positions.positions[1] = 9
    status, body, took = await poll(client, A_ADMIN, lastEventId=7)
    assert (status, body["resync"], body["lastEventId"]) == (200, True, "9")
    assert took < 0.5


async def test_a_poll_racing_an_unseen_orgs_next_event_gets_it_not_resync(
    fanout: Any, positions: Any, event: Event
) -> None:
    # The API has committed seq 8 and says so; its event is still on its way from
    # the broker when the first poll of the org since the fanout started arrives.
    client = await fanout()
    positions.positions[1] = 8

    async def consumed_late() -> None:
        await asyncio.sleep(0.05)
        hub_of(client).publish(event(8))

    late = asyncio.create_task(consumed_late())
    status, body, _ = await poll(client, A_ADMIN, lastEventId=7)
    await late
    assert (status, seqs(body), body["resync"]) == (200, [8], False)


async def test_a_poll_without_cursor_after_an_empty_hold_carries_a_usable_cursor(
    fanout: Any, positions: Any, event: Event
) -> None:
    client = await fanout(realtime_wait_s=0.3)
    positions.positions[1] = 4
    _, empty, _ = await poll(client, A_ADMIN)
    assert empty == {"events": [], "lastEventId": "4", "resync": False}
    hub_of(client).publish(event(5))
    status, body, took = await poll(client, A_ADMIN, lastEventId=empty["lastEventId"])
    assert (status, seqs(body)) == (200, [5])
    assert took < 0.2


async def test_two_events_30ms_apart_reach_a_repolling_client_once_in_order(
    fanout: Any, event: Event
) -> None:
    client = await fanout()
    hub = hub_of(client)
    hub.publish(event(1))

    async def produce() -> None:
        await asyncio.sleep(0.1)
        hub.publish(event(2))
        await asyncio.sleep(0.03)
        hub.publish(event(3))

    producer = asyncio.create_task(produce())
    _, first, _ = await poll(client, A_ADMIN, lastEventId=1)
    await producer
    _, second, took = await poll(client, A_ADMIN, lastEventId=first["lastEventId"])
    assert seqs(first) + seqs(second) == [2, 3]
    assert took < 0.2


async def test_an_event_right_after_an_answer_makes_the_next_poll_immediate(
    fanout: Any, event: Event
) -> None:
    client = await fanout()
    hub = hub_of(client)
    hub.publish(event(1))
    waiting = asyncio.create_task(poll(client, A_ADMIN, lastEventId=1))
    await poll_until(
        lambda: asyncio.sleep(0, hub.waiter_count(1) == 1), "the poll waiting"
    )
    hub.publish(event(2))
    hub.publish(event(3))
    _, first, _ = await waiting
    _, second, took = await poll(client, A_ADMIN, lastEventId=first["lastEventId"])
    assert seqs(first) == [2]
    assert seqs(second) == [3]
    assert took < 0.2


async def test_ten_events_in_100ms_reach_a_repolling_client_once_in_order(
    fanout: Any, event: Event
) -> None:
    client = await fanout(realtime_wait_s=0.5)
    hub = hub_of(client)
    hub.publish(event(1))

    async def produce() -> None:
        for seq in range(2, 12):
            await asyncio.sleep(0.01)
            hub.publish(event(seq, property_id=11 + seq % 2))

    producer = asyncio.create_task(produce())
    received: list[int] = []
    cursor = "1"
    while len(received) < 10:
        status, body, _ = await poll(client, A_ADMIN, lastEventId=cursor)
        assert status == 200 and not body["resync"]
        received += seqs(body)
        cursor = body["lastEventId"]
    await producer
    assert received == list(range(2, 12))
    _, after, took = await poll(client, A_ADMIN, lastEventId=cursor)
    assert after["events"] == [] and took >= 0.45


async def test_the_waiter_cap_answers_429_with_retry_after_while_others_are_served(
    fanout: Any, event: Event
) -> None:
    client = await fanout(max_waiters_per_org=3)
    hub = hub_of(client)
    hub.publish(event(1))
    hub.publish(event(1, org_id=2, property_id=21))
    held = [asyncio.create_task(poll(client, A_ADMIN, lastEventId=1)) for _ in range(3)]
    await poll_until(
        lambda: asyncio.sleep(0, hub.waiter_count(1) == 3), "three waiters"
    )
    async with client.get(
        SUBSCRIBE, params={"lastEventId": "1"}, headers=A_ADMIN
    ) as refused:
        assert refused.status == 429
        assert refused.headers["Retry-After"] == "5"
    other = asyncio.create_task(poll(client, B_ADMIN, lastEventId=1))
    await poll_until(lambda: asyncio.sleep(0, hub.waiter_count(2) == 1), "org 2")
    hub.publish(event(2))
    hub.publish(event(2, org_id=2, property_id=21))
    answers = await asyncio.gather(*held, other)
    assert [seqs(body) for _, body, _ in answers] == [[2]] * 4


async def test_a_client_that_goes_away_frees_its_waiter_at_once(
    fanout: Any, event: Event
) -> None:
    client = await fanout(max_waiters_per_org=2, realtime_wait_s=10)
    hub = hub_of(client)
    hub.publish(event(1))
    for _ in range(3):
        dropped = [
            asyncio.create_task(poll(client, A_ADMIN, lastEventId=1)) for _ in range(2)
        ]
        await poll_until(lambda: asyncio.sleep(0, hub.waiter_count(1) == 2), "held")
        for task in dropped:
            task.cancel()
        await poll_until(
            lambda: asyncio.sleep(0, hub.waiter_count() == 0), "waiters freed", 2.0
        )
    assert hub.stats.waiters == 0


async def test_a_token_expiring_during_the_hold_ends_the_poll_with_401(
    fanout: Any, positions: Any
) -> None:
    client = await fanout(realtime_wait_s=5)
    short = bearer(1, ttl_s=1)
    started = time.monotonic()
    async with client.get(SUBSCRIBE, headers=short) as answer:
        took = time.monotonic() - started
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert (await answer.json())["error"] == "invalid_token"
    assert 0.0 < took < 2.0


async def test_shutdown_answers_open_polls_at_once_and_refuses_new_ones(
    fanout: Any, event: Event
) -> None:
    client = await fanout(realtime_wait_s=10)
    hub = hub_of(client)
    hub.publish(event(1))
    held = [asyncio.create_task(poll(client, A_ADMIN, lastEventId=1)) for _ in range(5)]
    await poll_until(lambda: asyncio.sleep(0, hub.waiter_count(1) == 5), "held")
    hub.drain()
    answers = await asyncio.wait_for(asyncio.gather(*held), timeout=1.0)
    assert {(status, body["lastEventId"]) for status, body, _ in answers} == {
        (200, "1")
    }
    status, body, _ = await poll(client, A_ADMIN, lastEventId=1)
    assert (status, body["error"]) == (503, "unavailable")


async def test_metrics_show_the_design_note_shape_without_org_ids(
    fanout: Any, event: Event
) -> None:
    client = await fanout()
    hub = hub_of(client)
    hub.publish(event(1, org_id=1))
    hub.publish(event(1, org_id=777, property_id=5))
    hub.publish(event(1, org_id=1))
    await poll(client, A_ADMIN, lastEventId=0)
    async with client.get(METRICS, headers=A_MGR) as answer:
        assert answer.status == 200
        summary = await answer.json()
        text = await answer.text()
    assert summary == {
        "orgs": {"total": 2, "active_last_5m": 2},
        "events": {"published_total": 2, "delivered_total": 1, "dropped_total": 1},
        "buffers": {"total_size": 2, "avg_per_org": 1.0},
        "subscribers": {"active_count": 0},
    }
    assert "777" not in text
    async with client.get(METRICS) as anonymous:
        assert anonymous.status == 401


async def test_prometheus_text_has_the_fanout_series(fanout: Any) -> None:
    client = await fanout()
    async with client.get("/metrics") as answer:
        text = await answer.text()
    for series in (
        "fanout_waiters",
        "fanout_poll_duration_seconds",
        "fanout_delivery_latency_seconds",
        "fanout_events_total",
        "fanout_resync_total",
        "fanout_duplicates_total",
    ):
        assert series in text


async def test_every_poll_leaves_one_key_value_log_line(
    fanout: Any, event: Event, caplog: pytest.LogCaptureFixture
) -> None:
    client = await fanout()
    hub_of(client).publish(event(1))
    caplog.set_level(logging.INFO, logger="realtime_fanout.http.poll")
    async with client.get(
        SUBSCRIBE,
        params={"propertyId": "11", "lastEventId": "0"},
        headers={**A_ADMIN, "Origin": "http://demo", "User-Agent": 'agent "x"'},
    ):
        pass
    [line] = [r.getMessage() for r in caplog.records if r.name.endswith(".poll")]
    assert re.fullmatch(
        r"poll completed orgId=1 userId=user-1-admin propertyId=11 events=1 "
        r"durationMs=\d+ outcome=events origin=http://demo ua=\"agent 'x'\"",
        line,
    ), line
