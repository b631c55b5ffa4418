"""What was acknowledged is stored: on SIGTERM, with the database away, when full.

The service answers 202 only for events it will store. When it cannot take more
(queue full, database failing) it answers 503 with ``Retry-After``, never 500, and
keeps retrying what it already acknowledged until the database is back.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from telemetry_ingest.http import WRITER_KEY
from telemetry_ingest.store import EventRow

from tests.support.polling import poll_until
from tests.support.processes import ServiceProcess
from tests.support.tcp_proxy import TcpProxy
from tests.support.tokens import AUTH_ENV, bearer

AppFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
EventFactory = Callable[..., dict[str, Any]]
RowReader = Callable[[], Awaitable[list[Any]]]


def numbered(event: EventFactory, first: int, count: int) -> dict[str, Any]:
    """A batch whose events carry ``attrs.n`` = first .. first+count-1."""
    return {
        "events": [
            event("poll_error", attrs={"n": n}) for n in range(first, first + count)
        ]
    }


def numbers(rows: list[Any]) -> list[int]:
    return sorted(json.loads(row["attrs"])["n"] for row in rows)


async def test_sigterm_flushes_every_accepted_event_before_exit(
    database_url: str, event: EventFactory, stored_rows: RowReader
) -> None:
    service = ServiceProcess(
        "telemetry_ingest",
        {
            **AUTH_ENV,
            "DATABASE_URL": database_url,
            "FLUSH_INTERVAL_S": "60",
            "FLUSH_BATCH_MAX": "100000",
            "RATE_LIMIT_PER_MINUTE": "100000",
            "RATE_LIMIT_PER_IP_PER_MINUTE": "100000",
        },
    )
    await asyncio.to_thread(service.start)
    accepted: list[int] = []
    try:
        async with aiohttp.ClientSession(service.url, headers=bearer(1)) as http:
            for first in range(0, 1000, 50):
                answer = await http.post(
                    "/telemetry/client", json=numbered(event, first, 50)
                )
                assert answer.status == 202
                accepted.extend(range(first, first + 50))
        assert await stored_rows() == [], "nothing is written before the interval"

        exit_code = await asyncio.to_thread(service.terminate)
    finally:
        await asyncio.to_thread(service.kill)

    assert exit_code == 0, service.logs()
    assert numbers(await stored_rows()) == accepted
    assert "drain complete" in service.logs()


async def test_sigterm_while_batches_arrive_loses_nothing_acknowledged(
    database_url: str, event: EventFactory, stored_rows: RowReader
) -> None:
    service = ServiceProcess(
        "telemetry_ingest",
        {
            **AUTH_ENV,
            "DATABASE_URL": database_url,
            "FLUSH_INTERVAL_S": "0.2",
            "RATE_LIMIT_PER_MINUTE": "100000",
            "RATE_LIMIT_PER_IP_PER_MINUTE": "100000",
        },
    )
    await asyncio.to_thread(service.start)
    accepted: list[int] = []
    stop_sending = asyncio.Event()

    async def send(http: aiohttp.ClientSession, sender: int) -> None:
        first = sender * 1_000_000
        while not stop_sending.is_set():
            try:
                answer = await http.post(
                    "/telemetry/client", json=numbered(event, first, 10)
                )
            except aiohttp.ClientError:
                return
            if answer.status == 202:
                accepted.extend(range(first, first + 10))
            else:
                assert answer.status == 503, await answer.text()
            first += 10

    try:
        async with aiohttp.ClientSession(service.url, headers=bearer(1)) as http:
            senders = [asyncio.create_task(send(http, n)) for n in range(4)]
            await poll_until(lambda: _at_least(accepted, 200), "200 accepted events")
            exit_code = await asyncio.to_thread(service.terminate)
            stop_sending.set()
            await asyncio.gather(*senders)
    finally:
        await asyncio.to_thread(service.kill)

    assert exit_code == 0, service.logs()
    stored = set(numbers(await stored_rows()))
    assert set(accepted) <= stored, f"lost {len(set(accepted) - stored)} events"


async def _at_least(items: list[int], count: int) -> bool:
    return len(items) >= count


@pytest.mark.parametrize("outage", ["refused", "hanging"])
async def test_database_away_answers_503_and_keeps_what_it_acknowledged(
    database_proxy: tuple[TcpProxy, str],
    telemetry_app: AppFactory,
    event: EventFactory,
    stored_rows: RowReader,
    outage: str,
) -> None:
    proxy, proxied_url = database_proxy
    client = await telemetry_app(database_url=proxied_url, database_timeout_s=2.0)
    first = await client.post(
        "/telemetry/client", json=numbered(event, 0, 5), headers=bearer(1)
    )
    assert first.status == 202
    await poll_until(stored_rows, "the first batch to be stored")

    if outage == "refused":
        await proxy.stop()
    else:
        proxy.blackhole = True
        proxy.cut()
    statuses: list[int] = []
    slowest_s = 0.0
    accepted = list(range(5))

    async def refused() -> aiohttp.ClientResponse | None:
        nonlocal slowest_s
        start = 100 * (len(statuses) + 1)
        started = time.monotonic()
        answer = await client.post(
            "/telemetry/client", json=numbered(event, start, 5), headers=bearer(1)
        )
        slowest_s = max(slowest_s, time.monotonic() - started)
        statuses.append(answer.status)
        if answer.status == 202:
            accepted.extend(range(start, start + 5))
        return answer if answer.status == 503 else None

    answer = await poll_until(refused, "a 503 while the database is away")
    assert answer is not None
    assert set(statuses) <= {202, 503}, statuses
    assert slowest_s < 1.0, "a batch is answered without waiting for the database"
    assert int(answer.headers["Retry-After"]) >= 1
    assert (await answer.json())["error"] == "unavailable"
    assert (await client.get("/readyz")).status == 503
    assert client.app[WRITER_KEY].depth == len(accepted) - 5

    proxy.blackhole = False
    if outage == "refused":
        await proxy.start()

    async def all_stored() -> bool:
        return numbers(await stored_rows()) == accepted

    await poll_until(all_stored, "every acknowledged event stored", timeout_s=10)
    await poll_until(
        lambda: _status(client, "/readyz", 200), "ready again after the outage"
    )
    again = await client.post(
        "/telemetry/client", json=numbered(event, 9000, 1), headers=bearer(1)
    )
    assert again.status == 202
    accepted.append(9000)
    await poll_until(all_stored, "the batch after the outage stored")


async def _status(client: TestClient[Any, Any], path: str, expected: int) -> bool:
    return (await client.get(path)).status == expected


async def test_full_queue_answers_503_with_retry_after_and_keeps_the_queue(
    telemetry_app: AppFactory, event: EventFactory, stored_rows: RowReader
) -> None:
    client = await telemetry_app(queue_max=5, flush_interval_s=60)

    fits = await client.post(
        "/telemetry/client", json=numbered(event, 0, 3), headers=bearer(1)
    )
    overflows = await client.post(
        "/telemetry/client", json=numbered(event, 3, 3), headers=bearer(1)
    )

    assert fits.status == 202
    assert overflows.status == 503
    assert (await overflows.json())["detail"] == "queue full"
    assert int(overflows.headers["Retry-After"]) >= 1
    assert await client.app[WRITER_KEY].flush()
    assert numbers(await stored_rows()) == [0, 1, 2]


async def test_retention_job_deletes_events_older_than_retention_days(
    telemetry_app: AppFactory, database_url: str, stored_rows: RowReader
) -> None:
    await telemetry_app(retention_days=30, retention_interval_s=0.1)
    now = datetime.now(UTC)
    connection = await asyncpg.connect(database_url)
    try:
        await connection.executemany(
            "INSERT INTO telemetry.client_events"
            " (org_id, user_id, type, ts, session_id, tab_id, attrs)"
            " VALUES (1, 'u', 'resync', $1, 's', 't', $2)",
            [
                (now - timedelta(days=31), '{"age": "old"}'),
                (now - timedelta(days=29), '{"age": "recent"}'),
            ],
        )
    finally:
        await connection.close()

    async def only_recent_left() -> bool:
        rows = await stored_rows()
        return [json.loads(r["attrs"])["age"] for r in rows] == ["recent"]

    await poll_until(only_recent_left, "the old event to be deleted", timeout_s=5)


async def test_migrations_keep_their_version_table_in_the_telemetry_schema(
    telemetry_app: AppFactory, database_url: str
) -> None:
    await telemetry_app()
    await telemetry_app()

    connection = await asyncpg.connect(database_url)
    try:
        tables = await connection.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_name IN ('alembic_version', 'client_events')"
        )
        version = await connection.fetchval(
            "SELECT version_num FROM telemetry.alembic_version"
        )
    finally:
        await connection.close()

    assert sorted(tuple(t) for t in tables) == [
        ("telemetry", "alembic_version"),
        ("telemetry", "client_events"),
    ]
    assert version == "0001"


async def test_a_row_postgres_refuses_is_dropped_without_blocking_the_queue(
    telemetry_app: AppFactory, stored_rows: RowReader
) -> None:
    client = await telemetry_app(flush_interval_s=60)
    writer = client.app[WRITER_KEY]
    now = datetime.now(UTC)

    def row(n: int, note: str = "ok") -> EventRow:
        return EventRow(1, "u", "resync", now, "s", "t", {"n": n, "note": note})

    writer.accept([row(0), row(1, "nul \u0000 byte"), row(2)])

    assert await writer.flush()
    assert numbers(await stored_rows()) == [0, 2]
    assert not writer.failing
    assert writer.depth == 0
