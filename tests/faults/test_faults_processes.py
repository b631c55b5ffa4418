"""Processes killed or cut off from PostgreSQL while clients keep working.

- The fanout SIGKILLed and restarted on its port while a client polls: the old
  cursor gets ``resync``, then exactly the later events.
- The API SIGKILLed between commit and publish (it ran with the broker away): the
  restarted API's relay publishes the pending outbox rows; a polling client sees
  each seq once, in order.
- PostgreSQL away for the API (proxy stopped, then black-holed): writes and reads
  are 503 quickly with a JSON error, ``/readyz`` is not ready, and the API recovers
  by itself once the database is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp

from tests.faults.conftest import Stack
from tests.support.guests import guest
from tests.support.polling import poll_until
from tests.support.realtime import CHECKINS, Follower, Staff
from tests.support.tokens import bearer

logger = logging.getLogger(__name__)


async def test_a_sigkilled_fanout_restarted_gives_old_cursors_resync_then_later_events(
    stack: Stack, http: aiohttp.ClientSession, org: int
) -> None:
    api = await stack.api()
    fanout = await stack.fanout(api)
    staff = Staff(http, api, fanout, org)
    follower = Follower(staff, await staff.list_position())
    following = asyncio.create_task(follower.follow())
    await staff.until_waiting(1)
    for property_id in (11, 12):
        await staff.create(property_id)
    await poll_until(_at(follower, 2), "the follower at seq 2", 5.0)

    await asyncio.to_thread(fanout.kill)
    for property_id in (11, 12):
        await staff.create(property_id)  # while no fanout runs
    restarted = await stack.fanout(api, port=fanout.port)
    await poll_until(_at(follower, 4), "the follower resynced to seq 4", 10.0)
    await staff.until_waiting(1)
    await staff.create(11)
    await poll_until(_at(follower, 5), "the follower at seq 5", 5.0)
    following.cancel()
    await asyncio.gather(following, return_exceptions=True)

    assert follower.seqs() == [1, 2, 5]
    assert follower.resyncs == [(2, 4)]
    assert restarted.process is not None and restarted.process.poll() is None


def _at(follower: Follower, seq: int) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return follower.cursor >= seq

    return probe


async def test_events_committed_by_an_api_killed_before_publishing_arrive_once(
    stack: Stack, http: aiohttp.ClientSession, org: int
) -> None:
    broker_away, unreachable_amqp = await stack.proxy(
        stack.infra.amqp_url, started=False
    )
    api = await stack.api(amqp_url=unreachable_amqp)
    fanout = await stack.fanout(api)
    staff = Staff(http, api, fanout, org)
    follower = Follower(staff, await staff.list_position())
    following = asyncio.create_task(follower.follow())
    await staff.until_waiting(1)
    for property_id in (11, 12, 11):
        await staff.create(property_id)
    assert follower.seqs() == []

    await asyncio.to_thread(api.kill)
    restarted = await stack.api(port=api.port)
    await poll_until(_at(follower, 3), "the pending events delivered", 10.0)
    await staff.create(12)
    await poll_until(_at(follower, 4), "the next event delivered", 5.0)
    following.cancel()
    await asyncio.gather(following, return_exceptions=True)

    assert follower.seqs() == [1, 2, 3, 4]
    assert follower.resyncs == []
    assert restarted.process is not None and broker_away.port != 0


async def test_a_database_away_gives_503_quickly_and_the_api_recovers_by_itself(
    stack: Stack, http: aiohttp.ClientSession, org: int
) -> None:
    proxy, database_url = await stack.proxy(stack.database_url)
    api = await stack.api(database_url=database_url)
    headers = bearer(org)

    async def create() -> tuple[int, dict[str, object], float]:
        started = time.monotonic()
        async with http.post(
            api.url + CHECKINS, json=guest(11), headers=headers
        ) as answer:
            return answer.status, await answer.json(), time.monotonic() - started

    async def ready() -> int:
        async with http.get(api.url + "/readyz") as answer:
            return answer.status

    assert (await create())[0] == 201
    for outage in ("refused", "black hole"):
        await proxy.stop()
        if outage == "black hole":
            proxy.blackhole = True
            await proxy.start()
        answers = await asyncio.gather(*(create() for _ in range(10)))
        statuses = {status for status, _, _ in answers}
        assert statuses == {503}, (outage, answers)
        assert {body["error"] for _, body, _ in answers} == {"unavailable"}
        assert max(took for _, _, took in answers) < 7.0, (outage, answers)
        assert await ready() == 503

        await proxy.stop()
        proxy.blackhole = False
        await proxy.start()

        async def created() -> bool:
            return (await create())[0] == 201

        await poll_until(created, f"a 201 after the database ({outage}) is back", 15)
        assert await ready() == 200
    async with http.get(api.url + CHECKINS, headers=headers) as listed:
        assert listed.status == 200
        assert len((await listed.json())["items"]) == 3
