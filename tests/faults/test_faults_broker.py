"""RabbitMQ away while guests are created (FC-4, FC-5), on the real processes.

The API and the fanout reach the broker through one TCP proxy; stopping the proxy
cuts their connections and refuses new ones, which is what a broker restart looks
like to a client. A second test restarts the real broker with ``rabbitmqctl
stop_app``/``start_app``: other suites share that broker, so it runs only when
``FAULTS_RESTART_BROKER=1`` and keeps the outage to a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.faults.conftest import Stack
from tests.support.outbox import none_unpublished
from tests.support.polling import poll_until
from tests.support.processes import ServiceProcess
from tests.support.realtime import Follower, Staff

logger = logging.getLogger(__name__)

WRITES_DURING_OUTAGE = 5


async def status_of(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as answer:
        return answer.status


async def timed_create(staff: Staff, property_id: int) -> float:
    started = time.monotonic()
    await staff.create(property_id)
    return time.monotonic() - started


async def ride_out_outage(
    stack: Stack,
    http: aiohttp.ClientSession,
    org: int,
    api: ServiceProcess,
    fanout: ServiceProcess,
    take_away: contextlib.AbstractAsyncContextManager[None],
) -> None:
    """Writes during an outage succeed; afterwards clients get them or resync."""
    staff = Staff(http, api, fanout, org)
    await staff.create(11)
    follower = Follower(staff, await staff.list_position())
    following = asyncio.create_task(follower.follow())
    await staff.until_waiting(1)

    async with take_away:

        async def fanout_not_ready() -> bool:
            return await status_of(http, fanout.url + "/readyz") == 503

        await poll_until(fanout_not_ready, "fanout /readyz not ready", 10.0)
        took = [await timed_create(staff, 11 + n % 2) for n in range(5)]
        assert max(took) < 2.0, f"writes during the outage took {took}"

    async def fanout_ready() -> bool:
        return await status_of(http, fanout.url + "/readyz") == 200

    await poll_until(fanout_ready, "fanout consuming again", 30.0)
    await poll_until(
        lambda: none_unpublished(stack.database_url), "outbox drained", 30.0
    )

    # The two creates come once the client has caught up with the outage (by its
    # events or a resync) and waits again, as a browser would be by then.
    async def caught_up() -> bool:
        return follower.cursor >= 1 + WRITES_DURING_OUTAGE

    await poll_until(caught_up, "the follower past the outage's writes", 10.0)
    await staff.until_waiting(1)
    for property_id in (11, 12):
        await staff.create(property_id)
    last = await staff.list_position()
    assert last == 1 + WRITES_DURING_OUTAGE + 2

    async def reached_last() -> bool:
        return follower.cursor >= last

    await poll_until(reached_last, f"the follower at seq {last}", 10.0)
    following.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await following
    follower.check(last)
    logger.info(
        "outage ridden out seqs=%s resyncs=%s", follower.seqs(), follower.resyncs
    )
    assert set(follower.seqs()) >= {last - 1, last}, follower.seqs()
    assert api.process is not None and api.process.poll() is None
    assert fanout.process is not None and fanout.process.poll() is None


async def test_writes_during_a_broker_cut_succeed_and_reach_pollers_once_or_resync(
    stack: Stack, http: aiohttp.ClientSession, org: int
) -> None:
    proxy, amqp_url = await stack.proxy(stack.infra.amqp_url)
    api = await stack.api(amqp_url=amqp_url, RELAY_MAX_BACKOFF_S="1")
    fanout = await stack.fanout(api, amqp_url=amqp_url)

    @contextlib.asynccontextmanager
    async def proxy_away() -> AsyncIterator[None]:
        await proxy.stop()
        yield
        await proxy.start()

    await ride_out_outage(stack, http, org, api, fanout, proxy_away())


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.mark.skipif(
    os.environ.get("FAULTS_RESTART_BROKER") != "1" or not shutil.which("rabbitmqctl"),
    reason="restarts the shared RabbitMQ: set FAULTS_RESTART_BROKER=1 to run",
)
async def test_writes_during_a_real_broker_restart_reach_pollers_once_or_resync(
    stack: Stack, http: aiohttp.ClientSession, org: int
) -> None:
    api = await stack.api(RELAY_MAX_BACKOFF_S="1")
    fanout = await stack.fanout(api)

    @contextlib.asynccontextmanager
    async def broker_stopped() -> AsyncIterator[None]:
        await asyncio.to_thread(_rabbitmqctl, "stop_app")
        try:
            yield
        finally:
            await asyncio.to_thread(_rabbitmqctl, "start_app")

    await ride_out_outage(stack, http, org, api, fanout, broker_stopped())
