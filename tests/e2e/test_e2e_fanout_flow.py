"""End to end: the check-in API and the realtime fanout as real processes.

Both run against the real RabbitMQ (on an exchange of this module alone) and the API on
a throwaway PostgreSQL database. Writes go through the API; long-polls go to the
fanout, which learns org positions from the API with the caller's token.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from tests.support.guests import guest
from tests.support.infra import Infra, fresh_database
from tests.support.polling import poll_until
from tests.support.processes import ServiceProcess
from tests.support.realtime import api_process, fanout_process
from tests.support.tokens import bearer

SUBSCRIBE = "/v1/guest-checkin/realtime/subscribe"
METRICS = "/v1/guest-checkin/realtime/metrics"
WAIT_S = 2.0


@pytest.fixture(scope="module")
def events_exchange() -> str:
    return f"test.events.e2e-fanout.{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def api(infra: Infra, events_exchange: str) -> Iterator[ServiceProcess]:
    """The check-in API on its own database, publishing to this module's exchange."""
    with fresh_database(infra, "e2e_fanout") as database_url:
        process = api_process(database_url, infra.amqp_url, events_exchange)
        process.start(timeout_s=30)
        try:
            yield process
        finally:
            process.terminate()


StartFanout = Callable[..., ServiceProcess]


@pytest.fixture
def start_fanout(
    infra: Infra, events_exchange: str, api: ServiceProcess
) -> Iterator[StartFanout]:
    """Start fanout processes (stopped at the end), with settings overridden."""
    started: list[ServiceProcess] = []

    def start(**env: str) -> ServiceProcess:
        process = fanout_process(
            infra.amqp_url, events_exchange, api.url, WAIT_S, **env
        )
        process.start(ready_path="/readyz")
        started.append(process)
        return process

    yield start
    for process in started:
        process.terminate()


@pytest.fixture
def org() -> int:
    """An org no other test uses: its sequence starts at 0."""
    return random.randint(10_000, 2**40)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=30),
    ) as session:
        yield session


class Staff:
    """One staff member of an org talking to the API and the fanout."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        api: ServiceProcess,
        fanout: ServiceProcess,
        org: int,
    ) -> None:
        self.http, self.api, self.fanout, self.org = http, api, fanout, org
        self.headers = bearer(org)

    async def create(self, property_id: int) -> int:
        async with self.http.post(
            self.api.url + "/v1/guest-checkins",
            json=guest(property_id),
            headers=self.headers,
        ) as answer:
            assert answer.status == 201, await answer.text()
            return int((await answer.json())["id"])

    async def update(self, checkin_id: int, room: str) -> None:
        async with self.http.patch(
            f"{self.api.url}/v1/guest-checkins/{checkin_id}",
            json={"roomNumber": room},
            headers=self.headers,
        ) as answer:
            assert answer.status == 200, await answer.text()

    async def check_out(self, checkin_id: int) -> None:
        async with self.http.post(
            f"{self.api.url}/v1/guest-checkins/{checkin_id}/checkout",
            headers=self.headers,
        ) as answer:
            assert answer.status == 200, await answer.text()

    async def list_position(self) -> int:
        async with self.http.get(
            self.api.url + "/v1/guest-checkins", headers=self.headers
        ) as answer:
            assert answer.status == 200, await answer.text()
            return int((await answer.json())["position"])

    async def poll(self, **query: int | str) -> tuple[int, Any, float]:
        started = time.monotonic()
        params = {key: str(value) for key, value in query.items()}
        async with self.http.get(
            self.fanout.url + SUBSCRIBE, params=params, headers=self.headers
        ) as answer:
            body = await answer.json()
            return answer.status, body, time.monotonic() - started

    async def waiting(self) -> int:
        async with self.http.get(
            self.fanout.url + METRICS, headers=self.headers
        ) as answer:
            return int((await answer.json())["subscribers"]["active_count"])

    async def until_waiting(self, count: int) -> None:
        async def probe() -> bool:
            return await self.waiting() == count

        await poll_until(probe, f"{count} polls waiting on the fanout", 5.0)


def seqs(body: Any) -> list[int]:
    return [event["seq"] for event in body["events"]]


async def test_a_create_for_property_11_reaches_a_poll_on_11_and_not_one_on_12(
    api: ServiceProcess,
    start_fanout: StartFanout,
    http: aiohttp.ClientSession,
    org: int,
) -> None:
    staff = Staff(http, api, start_fanout(), org)
    position = await staff.list_position()
    on_11 = asyncio.create_task(staff.poll(propertyId=11, lastEventId=position))
    on_12 = asyncio.create_task(staff.poll(propertyId=12, lastEventId=position))
    await staff.until_waiting(2)

    created = await staff.create(11)
    status, body, took = await asyncio.wait_for(on_11, timeout=3.0)
    assert status == 200
    [delivered] = body["events"]
    assert delivered["eventType"] == "guest_created"
    assert (delivered["entityId"], delivered["propertyId"]) == (created, 11)
    assert not on_12.done()
    status, empty, took = await on_12
    assert (status, empty["events"], empty["resync"]) == (200, [], False)
    assert took >= WAIT_S - 0.2


async def test_polling_from_the_list_position_gets_every_later_change_once_in_order(
    api: ServiceProcess,
    start_fanout: StartFanout,
    http: aiohttp.ClientSession,
    org: int,
) -> None:
    staff = Staff(http, api, start_fanout(), org)
    first = await staff.create(11)
    position = await staff.list_position()
    received: list[dict[str, Any]] = []
    expected_changes = 12

    async def follow() -> None:
        cursor: int | str = position
        while len(received) < expected_changes:
            status, body, _ = await staff.poll(lastEventId=cursor)
            assert status == 200 and not body["resync"], body
            received.extend(body["events"])
            cursor = body["lastEventId"]

    follower = asyncio.create_task(follow())
    await staff.until_waiting(1)
    made: list[str] = []
    for round_number in range(3):
        created = await staff.create(11 + round_number % 2)
        await staff.update(created, f"2{round_number}0")
        await staff.update(first, f"3{round_number}0")
        await staff.check_out(created)
        made += ["guest_created", "guest_updated", "guest_updated", "guest_checked_out"]
    await asyncio.wait_for(follower, timeout=10.0)

    assert [event["seq"] for event in received] == list(
        range(position + 1, position + expected_changes + 1)
    )
    assert [event["eventType"] for event in received] == made
    assert len({event["eventId"] for event in received}) == expected_changes


async def test_after_a_fanout_restart_a_stale_cursor_gets_resync(
    api: ServiceProcess,
    start_fanout: StartFanout,
    http: aiohttp.ClientSession,
    org: int,
) -> None:
    fanout = start_fanout()
    staff = Staff(http, api, fanout, org)
    await staff.create(11)
    stale = await staff.list_position()
    fanout.terminate()
    await staff.create(11)  # happens while no fanout consumes
    current = await staff.list_position()

    staff.fanout = start_fanout()
    status, body, took = await staff.poll(lastEventId=stale)
    assert (status, body["resync"], body["lastEventId"]) == (200, True, str(current))
    assert took < 1.0

    following = asyncio.create_task(staff.poll(lastEventId=current))
    await staff.until_waiting(1)
    await staff.create(12)
    status, body, _ = await asyncio.wait_for(following, timeout=3.0)
    assert (status, seqs(body), body["resync"]) == (200, [current + 1], False)


async def test_polls_above_the_waiter_cap_get_429_with_retry_after(
    api: ServiceProcess,
    start_fanout: StartFanout,
    http: aiohttp.ClientSession,
    org: int,
) -> None:
    staff = Staff(http, api, start_fanout(MAX_WAITERS_PER_ORG="3"), org)
    held = [asyncio.create_task(staff.poll()) for _ in range(3)]
    await staff.until_waiting(3)
    started = time.monotonic()
    async with http.get(staff.fanout.url + SUBSCRIBE, headers=staff.headers) as refused:
        assert refused.status == 429
        assert (await refused.json())["error"] == "too_many_requests"
        assert refused.headers["Retry-After"].isdigit()
    assert time.monotonic() - started < 1.0
    other = Staff(http, api, staff.fanout, org + 1)
    other_poll = asyncio.create_task(other.poll())
    await other.until_waiting(4)  # the count is global: 3 of org, 1 of the other
    await asyncio.gather(*held, other_poll)


async def test_clients_that_go_away_free_their_waiters(
    api: ServiceProcess,
    start_fanout: StartFanout,
    http: aiohttp.ClientSession,
    org: int,
) -> None:
    staff = Staff(http, api, start_fanout(MAX_WAITERS_PER_ORG="20"), org)
    for _ in range(3):
        dropped = [asyncio.create_task(staff.poll()) for _ in range(20)]
        await staff.until_waiting(20)
        for task in dropped:
            task.cancel()
        await asyncio.gather(*dropped, return_exceptions=True)
        await staff.until_waiting(0)
    position = await staff.list_position()
    live = asyncio.create_task(staff.poll(lastEventId=position))
    await staff.until_waiting(1)
    await staff.create(11)
    status, body, _ = await asyncio.wait_for(live, timeout=3.0)
    assert (status, seqs(body)) == (200, [position + 1])


async def test_sigterm_answers_every_open_poll_at_once_and_exits(
    api: ServiceProcess,
    start_fanout: StartFanout,
    http: aiohttp.ClientSession,
    org: int,
) -> None:
    fanout = start_fanout(REALTIME_WAIT_S="20")
    staff = Staff(http, api, fanout, org)
    position = await staff.list_position()
    held = [asyncio.create_task(staff.poll(lastEventId=position)) for _ in range(200)]
    await staff.until_waiting(200)

    started = time.monotonic()
    exit_code = await asyncio.to_thread(fanout.terminate, 10.0)
    took = time.monotonic() - started
    answers = await asyncio.wait_for(asyncio.gather(*held), timeout=2.0)

    assert exit_code == 0, fanout.logs()
    assert took < 3.0
    assert {(status, body["lastEventId"]) for status, body, _ in answers} == {
        (200, str(position))
    }
    assert max(elapsed for _, _, elapsed in answers) < 5.0
