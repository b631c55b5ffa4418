"""Vanished and slow clients of the fanout (FC-3), on the real processes.

The waiter cap is set to 2,000 per org through ``MAX_WAITERS_PER_ORG`` (production
default 5,000) so that one test process can fill it quickly; the behaviour at the cap
is the same. A client that sends hundreds of pipelined polls and never reads its
socket fills its own connection's buffers and stalls only itself.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.faults.conftest import Stack
from tests.support.processes import ServiceProcess
from tests.support.realtime import SUBSCRIBE, Staff, seqs

logger = logging.getLogger(__name__)

CAP = 2000
Poll = asyncio.Task[tuple[int, Any, float]]
ROUNDS = 3


def rss_mb(process: ServiceProcess) -> float:
    assert process.process is not None
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    kilobytes = next(line for line in status.splitlines() if line.startswith("VmRSS"))
    return int(kilobytes.split()[1]) / 1024


async def open_polls(staff: Staff, count: int, **query: int) -> list[Poll]:
    return [asyncio.create_task(staff.poll(**query)) for _ in range(count)]


async def drop(polls: list[Poll]) -> None:
    for task in polls:
        task.cancel()
    await asyncio.gather(*polls, return_exceptions=True)


async def test_2000_vanished_polls_leave_no_waiters_and_do_not_count_against_the_cap(
    stack: Stack,
    http: aiohttp.ClientSession,
    org: int,
    record_property: Callable[[str, object], None],
) -> None:
    api = await stack.api()
    fanout = await stack.fanout(api, MAX_WAITERS_PER_ORG=str(CAP), REALTIME_WAIT_S="20")
    staff = Staff(http, api, fanout, org)
    position = await staff.list_position()
    rss = []
    for _ in range(ROUNDS):
        vanishing = await open_polls(staff, CAP, lastEventId=position)
        await staff.until_waiting(CAP, timeout_s=30.0)
        await drop(vanishing)
        await staff.until_waiting(0, timeout_s=5.0)
        rss.append(rss_mb(fanout))
    record_property("fanout_rss_mb_after_rounds", rss)
    logger.info("fanout rss after rounds of %s dropped polls: %s", CAP, rss)
    assert rss[-1] - rss[0] < 15.0, rss

    fresh = await open_polls(staff, 100, lastEventId=position)
    await staff.until_waiting(100)
    await staff.create(11)
    started = time.monotonic()
    answers = await asyncio.wait_for(asyncio.gather(*fresh), timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert {(status, tuple(seqs(body))) for status, body, _ in answers} == {
        (200, (position + 1,))
    }
    assert "Traceback" not in fanout.logs()


async def test_with_the_cap_of_live_polls_the_next_is_429_while_another_org_is_served(
    stack: Stack, http: aiohttp.ClientSession, org: int
) -> None:
    api = await stack.api()
    fanout = await stack.fanout(api, MAX_WAITERS_PER_ORG=str(CAP), REALTIME_WAIT_S="20")
    staff = Staff(http, api, fanout, org)
    other = Staff(http, api, fanout, org + 1)
    position = await staff.list_position()
    live = await open_polls(staff, CAP, lastEventId=position)
    await staff.until_waiting(CAP, timeout_s=30.0)

    started = time.monotonic()
    async with http.get(fanout.url + SUBSCRIBE, headers=staff.headers) as refused:
        assert refused.status == 429
        assert int(refused.headers["Retry-After"]) > 0
        assert (await refused.json())["error"] == "too_many_requests"
    assert time.monotonic() - started < 1.0

    served = asyncio.create_task(other.poll(lastEventId=0))
    await staff.until_waiting(CAP + 1)
    await other.create(21)
    status, body, _ = await asyncio.wait_for(served, timeout=2.0)
    assert (status, seqs(body), body["events"][0]["orgId"]) == (200, [1], org + 1)
    await drop(live)
    await staff.until_waiting(0)


def pipelined_polls(port: int, authorization: str, count: int) -> socket.socket:
    """A client that sends ``count`` polls on one connection and never reads."""
    client = socket.create_connection(("127.0.0.1", port))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = (
        f"GET {SUBSCRIBE}?lastEventId=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {authorization}\r\n\r\n"
    ).encode()
    client.sendall(request * count)
    return client


async def test_a_client_that_never_reads_its_socket_does_not_stall_others(
    stack: Stack, http: aiohttp.ClientSession, org: int
) -> None:
    api = await stack.api()
    fanout = await stack.fanout(api)
    staff = Staff(http, api, fanout, org)
    learned = asyncio.create_task(staff.poll(lastEventId=0))
    await staff.until_waiting(1)
    for number in range(40):
        await staff.create(11 + number % 2)
    await learned

    stuck = await asyncio.to_thread(
        pipelined_polls, fanout.port, staff.headers["Authorization"], 400
    )
    try:
        following = asyncio.create_task(staff.poll(lastEventId=40))
        await staff.until_waiting(1)
        await staff.create(12)
        status, body, _ = await asyncio.wait_for(following, timeout=2.0)
        assert (status, seqs(body)) == (200, [41])
        async with http.get(fanout.url + "/healthz") as health:
            assert health.status == 200
    finally:
        stuck.close()
    await staff.until_waiting(0)
    assert "Traceback" not in fanout.logs()
