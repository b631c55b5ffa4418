"""The real services behind the container gateway, the fanout as two shard sets.

As compose and Kubernetes run them: the check-in API, a fanout consuming shards 0-7
and one consuming shards 8-15, telemetry-ingest, and nginx with the gateway config in
front. Everything goes through the gateway, on the real RabbitMQ (an exchange of this
module) and throwaway PostgreSQL databases. A write by an org of either shard set
reaches that org's waiting poll, and only the fanout of its shard set consumes it.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from checkin_events import shard_for

from tests.deploy import deploy_files
from tests.deploy.gateway_runner import MISSING_REASON, gateway_missing, running_gateway
from tests.support.guests import guest
from tests.support.infra import Infra, fresh_database
from tests.support.polling import poll_until
from tests.support.processes import ServiceProcess
from tests.support.tokens import AUTH_ENV, bearer

pytestmark = pytest.mark.skipif(gateway_missing(), reason=MISSING_REASON)

SUBSCRIBE = "/v1/guest-checkin/realtime/subscribe"
HOLD_S = 2.0
SHARD_SETS = ("realtime-fanout-shards-0-7", "realtime-fanout-shards-8-15")


def _compose_shards(service: str) -> str:
    """The SHARDS a fanout service gets in compose (the same as in Kubernetes)."""
    return str(deploy_files.compose()["services"][service]["environment"]["SHARDS"])


@pytest.fixture(scope="module")
def services(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    """The API, both fanout shard sets and telemetry-ingest, started and stopped."""
    exchange = f"test.events.deploy.{uuid.uuid4().hex[:10]}"
    common = {**AUTH_ENV, "EVENTS_EXCHANGE": exchange, "AMQP_URL": infra.amqp_url}
    with (
        fresh_database(infra, "deploy_api") as api_database,
        fresh_database(infra, "deploy_telemetry") as telemetry_database,
    ):
        api = ServiceProcess(
            "checkin_api",
            {**common, "DATABASE_URL": api_database, "RELAY_SWEEP_S": "1"},
        )
        processes = {"checkin-api": api}
        for name in SHARD_SETS:
            processes[name] = ServiceProcess(
                "realtime_fanout",
                {
                    **common,
                    "CHECKIN_API_URL": api.url,
                    "REALTIME_WAIT_S": str(HOLD_S),
                    "SHARDS": _compose_shards(name),
                    "AMQP_CONNECTION_NAME": f"deploy-{name}-{uuid.uuid4().hex[:6]}",
                },
            )
        processes["telemetry-ingest"] = ServiceProcess(
            "telemetry_ingest", {**AUTH_ENV, "DATABASE_URL": telemetry_database}
        )
        try:
            # Started side by side: none needs another to answer before it starts.
            with ThreadPoolExecutor(len(processes)) as pool:
                starts = [
                    pool.submit(process.start, "/readyz", 40.0)
                    for process in processes.values()
                ]
                for start in starts:
                    start.result()
            yield processes
        finally:
            with ThreadPoolExecutor(len(processes)) as pool:
                list(pool.map(lambda process: process.terminate(), processes.values()))


@pytest.fixture(scope="module")
def gateway(
    services: dict[str, ServiceProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    ports = {name: process.port for name, process in services.items()}
    web_root = Path(deploy_files.REPO / "clients" / "web")
    with running_gateway(tmp_path_factory.mktemp("gw"), ports, web_root) as base:
        yield base


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        yield session


def _org_in(shard_set: str) -> int:
    """A fresh org (its sequence starts at 0) whose shard the given set consumes."""
    wanted = deploy_files.shards_of(_compose_shards(shard_set))
    while True:
        org = random.randint(10_000, 2**40)
        if shard_for(org) in wanted:
            return org


async def _waiting_polls(
    http: aiohttp.ClientSession, fanout: ServiceProcess, headers: dict[str, str]
) -> bool:
    async with http.get(
        fanout.url + "/v1/guest-checkin/realtime/metrics", headers=headers
    ) as answer:
        body = await answer.json()
    return bool(body["subscribers"]["active_count"] == 1)


async def _events_consumed(http: aiohttp.ClientSession, fanout: ServiceProcess) -> int:
    async with http.get(fanout.url + "/metrics") as answer:
        text = await answer.text()
    found = re.search(r"^fanout_events_total (\S+)$", text, re.M)
    assert found is not None, "the fanout exports no fanout_events_total"
    return int(float(found.group(1)))


@pytest.mark.parametrize("shard_set", SHARD_SETS)
async def test_a_write_reaches_the_waiting_poll_through_the_gateway(
    gateway: str,
    services: dict[str, ServiceProcess],
    http: aiohttp.ClientSession,
    shard_set: str,
) -> None:
    org = _org_in(shard_set)
    headers = bearer(org)
    other = next(name for name in SHARD_SETS if name != shard_set)
    consumed_before = {
        name: await _events_consumed(http, services[name]) for name in SHARD_SETS
    }
    async with http.get(gateway + "/v1/guest-checkins", headers=headers) as answer:
        assert answer.status == 200
        position = (await answer.json())["position"]

    async def poll() -> tuple[int, dict[str, Any], dict[str, str]]:
        async with http.get(
            gateway + SUBSCRIBE,
            params={"lastEventId": str(position)},
            headers=headers,
        ) as answer:
            return answer.status, await answer.json(), dict(answer.headers)

    waiting = asyncio.create_task(poll())
    await poll_until(
        lambda: _waiting_polls(http, services[shard_set], headers),
        f"the poll of org {org} waiting on {shard_set}",
    )
    started = time.monotonic()
    async with http.post(
        gateway + "/v1/guest-checkins", json=guest(11), headers=headers
    ) as answer:
        assert answer.status == 201, await answer.text()
    status, body, answer_headers = await waiting
    elapsed = time.monotonic() - started

    assert status == 200
    assert [e["seq"] for e in body["events"]] == [position + 1]
    assert body["events"][0]["orgId"] == org
    assert answer_headers["X-Fanout-Shard"] == str(shard_for(org))
    assert elapsed < HOLD_S
    assert await _events_consumed(http, services[shard_set]) == (
        consumed_before[shard_set] + 1
    )
    assert await _events_consumed(http, services[other]) == consumed_before[other]


async def test_an_empty_hold_ends_with_200_through_the_gateway(
    gateway: str, http: aiohttp.ClientSession
) -> None:
    org = _org_in(SHARD_SETS[1])
    started = time.monotonic()
    async with http.get(
        gateway + SUBSCRIBE, params={"lastEventId": "0"}, headers=bearer(org)
    ) as answer:
        status, body = answer.status, await answer.json()

    assert status == 200
    assert body["events"] == []
    assert time.monotonic() - started >= HOLD_S * 0.9


async def test_a_hundred_consecutive_empty_holds_end_with_200_through_the_gateway(
    gateway: str, http: aiohttp.ClientSession
) -> None:
    # Ten clients, ten holds each, one after another on kept-alive connections: the
    # gateway's timeouts outlast the hold and a re-used upstream connection never
    # turns into a 502 or 504.
    org = _org_in(SHARD_SETS[0])

    async def consecutive_holds() -> list[tuple[int, list[Any], float]]:
        outcomes = []
        cursor = "0"
        for _ in range(10):
            started = time.monotonic()
            async with http.get(
                gateway + SUBSCRIBE, params={"lastEventId": cursor}, headers=bearer(org)
            ) as answer:
                body = await answer.json()
            outcomes.append((answer.status, body["events"], time.monotonic() - started))
            cursor = body["lastEventId"]
        return outcomes

    clients = await asyncio.gather(*(consecutive_holds() for _ in range(10)))

    outcomes = [outcome for client in clients for outcome in client]
    assert len(outcomes) == 100
    assert {(status, len(events)) for status, events, _ in outcomes} == {(200, 0)}
    assert min(took for _, _, took in outcomes) >= HOLD_S * 0.9


async def test_telemetry_reaches_the_service_on_the_same_origin(
    gateway: str, http: aiohttp.ClientSession
) -> None:
    event = {
        "type": "leader_acquired",
        "ts": datetime.now(UTC).isoformat(),
        "sessionId": "session-1",
        "tabId": "tab-1",
        "attrs": {},
    }
    async with http.post(
        gateway + "/telemetry/client",
        data=json.dumps({"events": [event]}),
        headers={**bearer(_org_in(SHARD_SETS[0])), "Content-Type": "text/plain"},
    ) as answer:
        status, body = answer.status, await answer.json()

    assert status == 202, body
    assert body == {"accepted": 1}


async def test_the_gateway_serves_the_demo_page_and_its_modules(
    gateway: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(gateway + "/") as page:
        status, html = page.status, await page.text()
    async with http.get(gateway + "/app.js") as module:
        module_status, module_type = module.status, module.content_type

    assert status == 200
    assert "<html" in html.lower()
    assert module_status == 200
    assert module_type in {"text/javascript", "application/javascript"}
