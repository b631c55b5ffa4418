"""End to end, FC-3: polls of vanished clients never count against the waiter cap.

Rounds of polls of one org, as many as the waiter cap, are opened on a real fanout
process (a 429 with ``Retry-After`` proves the cap is full while another org is still
served), then dropped by the client; 100 new polls must all be accepted and receive
the next event within a second, the waiter gauge falls back to the live count, and
the fanout's memory does not keep growing from round to round. The suite runs 3
rounds of 1,000 polls; ``FC3_POLLS=5000 FC3_ROUNDS=20`` is the field case's full run.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from checkin_events import EventPublisher, GuestCreated

from tests.support.infra import Infra
from tests.support.polling import poll_until
from tests.support.processes import ServiceProcess
from tests.support.tokens import AUTH_ENV, bearer

SUBSCRIBE = "/v1/guest-checkin/realtime/subscribe"
METRICS = "/v1/guest-checkin/realtime/metrics"
CAP = int(os.environ.get("FC3_POLLS", "1000"))
ROUNDS = int(os.environ.get("FC3_ROUNDS", "3"))


class FixedPosition:
    """A stand-in for the API's position endpoint: every org stands at 0."""

    async def handle(self, _: web.Request) -> web.Response:
        return web.json_response({"position": 0})


@pytest.fixture
async def position_api() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/v1/guest-checkins/position", FixedPosition().handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def fanout(infra: Infra, position_api: str) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        "realtime_fanout",
        {
            **AUTH_ENV,
            "AMQP_URL": infra.amqp_url,
            "EVENTS_EXCHANGE": f"test.events.fc3.{uuid.uuid4().hex[:10]}",
            "CHECKIN_API_URL": position_api,
            "REALTIME_WAIT_S": "25",
            "MAX_WAITERS_PER_ORG": str(CAP),
            "LOG_LEVEL": "WARNING",
        },
    )
    process.start(ready_path="/readyz")
    try:
        yield process
    finally:
        process.terminate()


def rss_mib(process: ServiceProcess) -> float:
    assert process.process is not None
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    [line] = [row for row in status.splitlines() if row.startswith("VmRSS:")]
    return int(line.split()[1]) / 1024


async def test_dropped_polls_free_their_places_and_memory_stays_flat(
    fanout: ServiceProcess, infra: Infra
) -> None:
    org = random.randint(10_000, 2**40)
    headers = bearer(org)
    other = bearer(org + 1)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as http,
        EventPublisher(infra.amqp_url, fanout.env["EVENTS_EXCHANGE"]) as publisher,
    ):

        async def waiting() -> int:
            async with http.get(fanout.url + METRICS, headers=headers) as answer:
                return int((await answer.json())["subscribers"]["active_count"])

        async def poll(token: dict[str, str], cursor: int) -> tuple[int, Any, float]:
            started = time.monotonic()
            async with http.get(
                fanout.url + SUBSCRIBE,
                params={"lastEventId": str(cursor)},
                headers=token,
            ) as answer:
                return answer.status, await answer.json(), time.monotonic() - started

        async def until_waiting(count: int, timeout_s: float) -> None:
            seen: list[int] = []

            async def probe() -> bool:
                seen.append(await waiting())
                return seen[-1] == count

            try:
                await poll_until(probe, f"{count} waiters", timeout_s)
            except AssertionError as exc:
                raise AssertionError(
                    f"{exc}; counts seen {seen[-5:]}; fanout log:\n"
                    + fanout.logs()[-3000:]
                ) from exc

        memory: list[float] = []
        for seq in range(1, ROUNDS + 1):
            dropped = [asyncio.create_task(poll(headers, seq - 1)) for _ in range(CAP)]
            await until_waiting(CAP, max(15.0, CAP / 40))
            async with http.get(
                fanout.url + SUBSCRIBE,
                params={"lastEventId": str(seq - 1)},
                headers=headers,
            ) as refused:
                assert refused.status == 429 and "Retry-After" in refused.headers
            other_org = asyncio.create_task(poll(other, 0))
            for task in dropped:
                task.cancel()
            await asyncio.gather(*dropped, return_exceptions=True)
            await until_waiting(1, 5.0)
            other_org.cancel()
            await asyncio.gather(other_org, return_exceptions=True)

            live = [asyncio.create_task(poll(headers, seq - 1)) for _ in range(100)]
            await until_waiting(100, 5.0)
            published = time.monotonic()
            await publisher.publish(
                GuestCreated(
                    org_id=org,
                    property_id=11,
                    seq=seq,
                    entity_id=seq,
                    actor_user_id="staff-1",
                )
            )
            answers = await asyncio.wait_for(asyncio.gather(*live), timeout=5.0)
            assert all(status == 200 for status, _, _ in answers)
            assert {len(body["events"]) for _, body, _ in answers} == {1}
            assert time.monotonic() - published < 1.0
            memory.append(rss_mib(fanout))

    print(f"fc3 rss_mib per round: {[round(value, 1) for value in memory]}")
    if ROUNDS >= 3:
        assert memory[-1] - memory[1] < 20.0, memory
