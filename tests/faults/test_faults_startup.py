"""Each service started while a dependency it needs is away, on the real processes.

The dependency (RabbitMQ or PostgreSQL) sits behind a ``TcpProxy`` that is not
listening when the service starts, so every connection is refused. The service
must start and stay up (``/healthz`` 200), say it is not ready (``/readyz`` 503),
answer its requests 503 with ``Retry-After`` and a JSON ``{error, detail}`` body at
once, retry with one warning line per attempt and no traceback, and become ready by
itself once the proxy listens: no restart, a real request then succeeds.

- the fanout without the broker: a guest created through the API reaches a poll;
- the API without the database: migrated once it answers, writes 201, the relay
  publishes;
- the API without the broker: writes 201 meanwhile, published once it answers;
- telemetry-ingest without the database: batches 503 (nothing accepted that could
  not be stored), then 202 and stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from checkin_events import EventConsumer, GuestEvent

from tests.faults.conftest import Stack
from tests.support.guests import guest
from tests.support.outbox import none_unpublished, unpublished
from tests.support.polling import poll_until
from tests.support.processes import ServiceProcess
from tests.support.realtime import CHECKINS, SUBSCRIBE, Staff
from tests.support.tokens import AUTH_ENV, bearer

logger = logging.getLogger(__name__)

FAST_RETRIES = {"CONNECT_RETRY_MIN_S": "0.2", "CONNECT_RETRY_MAX_S": "1"}
QUICK_S = 1.0
"""A refusal while a dependency is away must come at least this fast."""


async def answer(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any, dict[str, str], float]:
    """Status, JSON body, headers and how long the request took."""
    started = time.monotonic()
    async with http.request(method, url, **kwargs) as response:
        body = await response.json(content_type=None)
        return response.status, body, dict(response.headers), time.monotonic() - started


def assert_unavailable(
    outcome: tuple[int, Any, dict[str, str], float], mentions: str
) -> None:
    """A quick 503 with ``Retry-After`` and a JSON error naming the cause."""
    status, body, headers, took = outcome
    assert status == 503, outcome
    assert body["error"] == "unavailable", body
    assert mentions in body["detail"], body
    assert int(headers["Retry-After"]) > 0, headers
    assert took < QUICK_S, outcome


async def not_ready_because(
    http: aiohttp.ClientSession, process: ServiceProcess, check: str
) -> str:
    """``/healthz`` is 200 and ``/readyz`` 503; the reason ``check`` gives."""
    status, _, _, _ = await answer(http, "GET", process.url + "/healthz")
    assert status == 200
    status, body, _, _ = await answer(http, "GET", process.url + "/readyz")
    assert status == 503, body
    return str(body["checks"][check])


async def until_ready(
    http: aiohttp.ClientSession, process: ServiceProcess, timeout_s: float = 20.0
) -> None:
    async def ready() -> bool:
        status, _, _, _ = await answer(http, "GET", process.url + "/readyz")
        return status == 200

    await poll_until(ready, f"{process.module} ready", timeout_s)


def assert_rode_it_out(process: ServiceProcess, dependency: str) -> None:
    """Still the same process; it warned about each attempt, with no traceback."""
    assert process.process is not None and process.process.poll() is None
    logs = process.logs()
    assert f"{dependency} not answering attempt=" in logs, logs
    assert "Traceback" not in logs, logs


async def test_the_fanout_starts_without_the_broker_and_attaches_when_it_answers(
    stack: Stack, http: aiohttp.ClientSession, org: int
) -> None:
    api = await stack.api()
    broker, amqp_url = await stack.proxy(stack.infra.amqp_url, started=False)
    fanout = await stack.fanout(
        api, amqp_url=amqp_url, ready="/healthz", **FAST_RETRIES
    )

    reason = await not_ready_because(http, fanout, "consumer")
    assert "consumer not attached" in reason
    headers = bearer(org)
    refused = await answer(
        http,
        "GET",
        fanout.url + SUBSCRIBE,
        params={"lastEventId": "0"},
        headers=headers,
    )
    assert_unavailable(refused, "broker")

    await poll_until(
        lambda: _logged(fanout, "broker not answering attempt=3"),
        "the fanout retrying the broker",
    )
    await broker.start()
    await until_ready(http, fanout)

    staff = Staff(http, api, fanout, org)
    position = await staff.list_position()
    polling = asyncio.create_task(staff.poll(lastEventId=position))
    await staff.until_waiting(1)
    await staff.create(11)
    status, body, _ = await asyncio.wait_for(polling, 10)
    assert status == 200, body
    assert [event["seq"] for event in body["events"]] == [position + 1]
    assert body["events"][0]["eventType"] == "guest_created"
    assert_rode_it_out(fanout, "broker")


async def test_the_api_starts_without_the_database_and_migrates_when_it_answers(
    stack: Stack, http: aiohttp.ClientSession, org: int
) -> None:
    database, database_url = await stack.proxy(stack.database_url, started=False)
    api = await stack.api(database_url=database_url, **FAST_RETRIES)
    headers = bearer(org)

    assert "not answered" in await not_ready_because(http, api, "database")
    create = answer(http, "POST", api.url + CHECKINS, json=guest(11), headers=headers)
    listing = answer(http, "GET", api.url + CHECKINS, headers=headers)
    for outcome in await asyncio.gather(create, listing):
        assert_unavailable(outcome, "database")

    await poll_until(
        lambda: _logged(api, "database not answering attempt=3"),
        "the API retrying the database",
    )
    await database.start()
    await until_ready(http, api)

    status, body, _, _ = await answer(
        http, "POST", api.url + CHECKINS, json=guest(11), headers=headers
    )
    assert status == 201, body
    status, body, _, _ = await answer(http, "GET", api.url + CHECKINS, headers=headers)
    assert status == 200, body
    assert [item["id"] for item in body["items"]] == [1] and body["position"] == 1
    await poll_until(
        lambda: none_unpublished(stack.database_url), "the relay published the write"
    )
    assert_rode_it_out(api, "database")


@pytest.fixture
async def events_on_the_broker(
    stack: Stack,
) -> AsyncIterator[list[GuestEvent]]:
    """Every event published on the test's exchange, consumed from the real broker."""
    received: list[GuestEvent] = []

    async def keep(event: GuestEvent) -> None:
        received.append(event)

    consumer = EventConsumer(
        stack.infra.amqp_url, keep, ["#"], exchange_name=stack.exchange
    )
    await consumer.start()
    try:
        yield received
    finally:
        await consumer.stop()


async def test_the_api_starts_without_the_broker_and_publishes_when_it_answers(
    stack: Stack,
    http: aiohttp.ClientSession,
    org: int,
    events_on_the_broker: list[GuestEvent],
) -> None:
    broker, amqp_url = await stack.proxy(stack.infra.amqp_url, started=False)
    api = await stack.api(amqp_url=amqp_url, RELAY_MAX_BACKOFF_S="1")
    staff = Staff(http, api, api, org)

    status, body, _, _ = await answer(http, "GET", api.url + "/readyz")
    assert status == 200, body
    assert body["info"]["broker"].startswith("disconnected"), body
    for property_id in (11, 12, 11):
        started = time.monotonic()
        await staff.create(property_id)
        assert time.monotonic() - started < 2.0
    assert await unpublished(stack.database_url) == 3

    await broker.start()

    async def all_three_published() -> bool:
        return len([e for e in events_on_the_broker if e.org_id == org]) >= 3

    await poll_until(all_three_published, "the three writes on the broker", 20)
    seqs = [event.seq for event in events_on_the_broker if event.org_id == org]
    assert seqs == [1, 2, 3]
    # The broker confirms (and the consumer sees) a batch before the relay marks it.
    await poll_until(
        lambda: none_unpublished(stack.database_url), "the relay marked the writes"
    )
    assert api.process is not None and api.process.poll() is None


async def test_telemetry_starts_without_the_database_and_stores_once_it_answers(
    stack: Stack, http: aiohttp.ClientSession, org: int
) -> None:
    database, database_url = await stack.proxy(stack.database_url, started=False)
    telemetry = await stack.start(
        ServiceProcess(
            "telemetry_ingest",
            {
                **AUTH_ENV,
                **FAST_RETRIES,
                "DATABASE_URL": database_url,
                "FLUSH_INTERVAL_S": "0.1",
            },
        ),
        "/healthz",
    )
    headers = bearer(org)
    batch = {
        "events": [
            {
                "type": "leader_acquired",
                "ts": datetime.now(UTC).isoformat(),
                "sessionId": "s-1",
                "tabId": "t-1",
                "attrs": {"visible": True},
            }
        ]
    }
    client_events = telemetry.url + "/telemetry/client"
    summary = telemetry.url + "/telemetry/summary"

    assert "not answered" in await not_ready_because(http, telemetry, "database")
    assert_unavailable(
        await answer(http, "POST", client_events, json=batch, headers=headers),
        "database",
    )
    assert_unavailable(await answer(http, "GET", summary, headers=headers), "database")

    await poll_until(
        lambda: _logged(telemetry, "database not answering attempt=3"),
        "telemetry retrying the database",
    )
    await database.start()
    await until_ready(http, telemetry)

    status, body, _, _ = await answer(
        http, "POST", client_events, json=batch, headers=headers
    )
    assert (status, body) == (202, {"accepted": 1})

    async def stored() -> bool:
        status, body, _, _ = await answer(http, "GET", summary, headers=headers)
        return status == 200 and body["counts"]["leader_acquired"] == 1

    await poll_until(stored, "the accepted event stored and summarised")
    assert_rode_it_out(telemetry, "database")


async def _logged(process: ServiceProcess, text: str) -> bool:
    return text in process.logs()
