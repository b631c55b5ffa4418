"""Soak: hundreds of browsers long-poll while writes stream in; nothing lost or doubled.

``just soak`` (or ``PYTHONPATH=. uv run python scripts/soak.py --duration 180``)
starts the check-in API and the fanout as processes on loopback against the local
RabbitMQ and PostgreSQL (a throwaway database, an exchange of its own), then:

- opens ``--browsers`` simulated browsers (each one leader polling the fanout, as
  ``tests.support.realtime.Follower``), over ``--orgs`` orgs; about a third are
  MANAGERs limited to one property;
- writes at ``--rate`` per second through the API (creates and updates, spread over
  the orgs and properties);
- drops polls mid-wait at random (``--disconnect`` of the polls), as browsers that
  navigate or lose the network do, and re-polls with the same cursor.

At the end it waits until every browser has caught up with its org's position and
checks, against the API's records, that each browser saw every event it may see
exactly once and in order (runs a ``resync`` told it to refetch excepted), that no
request failed, and prints the figures with each service's RSS at start and end.
The exit status is 1 when any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.infra import (
    DEFAULT_AMQP_URL,
    DEFAULT_DATABASE_URL,
    Infra,
    delete_exchange_topology,
    fresh_database,
)
from tests.support.polling import poll_until
from tests.support.processes import ServiceProcess
from tests.support.realtime import (
    CHECKINS,
    Follower,
    Staff,
    api_process,
    fanout_process,
    guest,
)

logger = logging.getLogger("soak")

PROPERTIES = (11, 12, 13)


@dataclass
class Browser:
    """One simulated browser: its follower, its scope and its disconnect count."""

    follower: Follower
    org: int
    property_id: int | None
    disconnects: int = 0
    polls: int = 0


@dataclass
class Writes:
    """What the writer did, and what went wrong."""

    created: dict[int, list[int]] = field(default_factory=dict)
    updates: int = 0
    failures: list[str] = field(default_factory=list)


def rss_mb(process: ServiceProcess) -> float:
    """Resident memory of a service process in MB."""
    assert process.process is not None
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def cpu_s(process: ServiceProcess) -> float:
    """CPU seconds (user and system) a service process used so far."""
    assert process.process is not None
    fields = Path(f"/proc/{process.process.pid}/stat").read_text().rsplit(")", 1)[1]
    user, system = fields.split()[11:13]
    return (int(user) + int(system)) / os.sysconf("SC_CLK_TCK")


async def browse(browser: Browser, disconnect: float, stop: asyncio.Event) -> None:
    """Poll until stopped; now and then drop a poll mid-wait and poll again."""
    while not stop.is_set():
        browser.polls += 1
        if random.random() < disconnect:
            try:
                await asyncio.wait_for(
                    browser.follower.poll_once(), timeout=random.uniform(0.05, 2.0)
                )
            except TimeoutError:
                browser.disconnects += 1
        else:
            await browser.follower.poll_once()


async def write(
    http: aiohttp.ClientSession,
    api: ServiceProcess,
    orgs: list[int],
    rate: float,
    stop: asyncio.Event,
    writes: Writes,
) -> None:
    """Creates and updates at ``rate`` per second until stopped."""
    interval = 1.0 / rate
    next_at = time.monotonic()
    while not stop.is_set():
        org = random.choice(orgs)
        staff = Staff(http, api, api, org)
        mine = writes.created.setdefault(org, [])
        try:
            if mine and random.random() < 0.3:
                async with http.patch(
                    f"{api.url}{CHECKINS}/{random.choice(mine)}",
                    json={"roomNumber": str(random.randint(100, 999))},
                    headers=staff.headers,
                ) as answer:
                    if answer.status != 200:
                        writes.failures.append(f"update {answer.status}")
                    writes.updates += 1
            else:
                async with http.post(
                    api.url + CHECKINS,
                    json=guest(random.choice(PROPERTIES)),
                    headers=staff.headers,
                ) as answer:
                    if answer.status != 201:
                        writes.failures.append(f"create {answer.status}")
                    else:
                        mine.append(int((await answer.json())["id"]))
        except (aiohttp.ClientError, TimeoutError) as exc:
            writes.failures.append(f"write {type(exc).__name__}")
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def delivery_latency(
    http: aiohttp.ClientSession, fanout: ServiceProcess
) -> dict[str, str]:
    """The fanout's delivery latency p50 and p99, as histogram bucket bounds."""
    async with http.get(fanout.url + "/metrics") as answer:
        text = await answer.text()
    prefix = 'fanout_delivery_latency_seconds_bucket{le="'
    buckets = [
        (line[len(prefix) :].split('"')[0], float(line.split()[-1]))
        for line in text.splitlines()
        if line.startswith(prefix)
    ]
    total = buckets[-1][1] if buckets else 0.0
    found = {}
    for name, share in (("p50", 0.5), ("p99", 0.99)):
        bound = next((le for le, count in buckets if count >= share * total), "-")
        found[name] = f"<={bound}s"
    return found


async def sample_outbox_lag(
    http: aiohttp.ClientSession, api: ServiceProcess, samples: list[float]
) -> None:
    """Every second, the age of the API's oldest unpublished outbox event."""
    while True:
        async with http.get(api.url + "/metrics") as answer:
            for line in (await answer.text()).splitlines():
                if line.startswith("checkin_outbox_lag_seconds "):
                    samples.append(float(line.split()[1]))
        await asyncio.sleep(1.0)


async def records_of(http: aiohttp.ClientSession, api: ServiceProcess, org: int) -> Any:
    """Every record of the org and the list's position, page by page."""
    staff = Staff(http, api, api, org)
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    position = None
    while True:
        params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
        async with http.get(
            api.url + CHECKINS, params=params, headers=staff.headers
        ) as answer:
            page = await answer.json()
        position = page["position"] if position is None else position
        items.extend(page["items"])
        cursor = page["nextCursor"]
        if not cursor:
            return position, {item["id"]: item for item in items}


def verify(
    browsers: list[Browser], org: int, position: int, records: dict[int, Any]
) -> list[str]:
    """The problems of one org's browsers, checked against the API's records."""
    problems: list[str] = []
    admins = [b for b in browsers if b.org == org and b.property_id is None]
    reference = next((b for b in admins if not b.follower.resyncs), None)
    if reference is None:
        return [f"org {org}: no ADMIN browser without resync to take as reference"]
    events = reference.follower.events
    created = {e["entityId"] for e in events if e["eventType"] == "guest_created"}
    if created != set(records):
        problems.append(f"org {org}: created events do not match the API's records")
    for event in events:
        record = records.get(event["entityId"])
        if record is None or record["propertyId"] != event["propertyId"]:
            problems.append(f"org {org}: event {event['seq']} names no such record")
    property_of = {event["seq"]: event["propertyId"] for event in events}
    for browser in (b for b in browsers if b.org == org):
        visible = None
        if browser.property_id is not None:
            visible = {s for s, p in property_of.items() if p == browser.property_id}
        try:
            browser.follower.check(position, visible)
        except AssertionError as exc:
            problems.append(f"org {org} browser: {str(exc)[:300]}")
        problems.extend(
            f"org {org} browser: {failure}" for failure in browser.follower.failures
        )
    return problems


async def soak(args: argparse.Namespace) -> int:
    infra = Infra(DEFAULT_AMQP_URL, DEFAULT_DATABASE_URL, "local")
    exchange = f"soak.events.{uuid.uuid4().hex[:10]}"
    with fresh_database(infra, "soak") as database_url:
        api = api_process(database_url, infra.amqp_url, exchange)
        await asyncio.to_thread(api.start, "/healthz", 30.0)
        fanout = fanout_process(
            infra.amqp_url, exchange, api.url, args.wait, MAX_WAITERS_PER_ORG="5000"
        )
        try:
            await asyncio.to_thread(fanout.start, "/readyz", 30.0)
            return await run(args, api, fanout)
        finally:
            await asyncio.to_thread(fanout.terminate)
            await asyncio.to_thread(api.terminate)
            await delete_exchange_topology(infra.amqp_url, exchange)


async def run(
    args: argparse.Namespace, api: ServiceProcess, fanout: ServiceProcess
) -> int:
    base = random.randint(10_000, 2**40)
    orgs = [base + n for n in range(args.orgs)]
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=args.wait + 15)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        browsers = []
        for number in range(args.browsers):
            org = orgs[number % len(orgs)]
            manager = number % 3 == 2 and number >= len(orgs)
            property_id = random.choice(PROPERTIES) if manager else None
            staff = Staff(
                http,
                api,
                fanout,
                org,
                role="MANAGER" if manager else "ADMIN",
                property_ids=[property_id] if property_id else None,
            )
            browsers.append(Browser(Follower(staff, 0), org, property_id))
        stop = asyncio.Event()
        polling = [
            asyncio.create_task(browse(b, args.disconnect, stop)) for b in browsers
        ]
        await asyncio.sleep(2.0)
        rss_start = {"checkin-api": rss_mb(api), "realtime-fanout": rss_mb(fanout)}
        cpu_start = {"checkin-api": cpu_s(api), "realtime-fanout": cpu_s(fanout)}
        soak_cpu_start = time.process_time()
        writes = Writes()
        started = time.monotonic()
        outbox_lag: list[float] = []
        sampler = asyncio.create_task(sample_outbox_lag(http, api, outbox_lag))
        stop_writes = asyncio.Event()
        writer = asyncio.create_task(
            write(http, api, orgs, args.rate, stop_writes, writes)
        )
        await asyncio.sleep(args.duration)
        stop_writes.set()
        await writer
        wrote_for = time.monotonic() - started

        finals = {org: await records_of(http, api, org) for org in orgs}

        async def caught_up() -> bool:
            return all(b.follower.cursor >= finals[b.org][0] for b in browsers)

        catching_up = time.monotonic()
        with contextlib.suppress(AssertionError):  # the checks below name who lags
            await poll_until(caught_up, "every browser caught up", args.wait + 30)
        catch_up_s = time.monotonic() - catching_up
        latency = await delivery_latency(http, fanout)
        stop.set()
        sampler.cancel()
        for task in polling:
            task.cancel()
        await asyncio.gather(*polling, return_exceptions=True)
        rss_end = {"checkin-api": rss_mb(api), "realtime-fanout": rss_mb(fanout)}
        cpu_end = {"checkin-api": cpu_s(api), "realtime-fanout": cpu_s(fanout)}
        soak_cpu = time.process_time() - soak_cpu_start

    problems = list(writes.failures)
    for org in orgs:
        position, records = finals[org]
        problems.extend(verify(browsers, org, position, records))
    events = sum(position for position, _ in finals.values())
    delivered = sum(len(b.follower.events) for b in browsers)
    report = {
        "duration_s": round(wrote_for, 1),
        "browsers": len(browsers),
        "orgs": len(orgs),
        "writes": events,
        "creates": sum(len(ids) for ids in writes.created.values()),
        "updates": writes.updates,
        "write_rate_per_s": round(events / wrote_for, 1),
        "polls": sum(b.polls for b in browsers),
        "disconnects": sum(b.disconnects for b in browsers),
        "resyncs": sum(len(b.follower.resyncs) for b in browsers),
        "events_delivered": delivered,
        "catch_up_s": round(catch_up_s, 1),
        "delivery_latency_p50": latency["p50"],
        "delivery_latency_p99": latency["p99"],
        "outbox_lag_max_s": round(max(outbox_lag, default=0.0), 2),
        "problems": len(problems),
    }
    for name, value in report.items():
        print(f"{name}={value}")
    for service in rss_start:
        print(
            f"rss_mb service={service} start={rss_start[service]:.1f} "
            f"end={rss_end[service]:.1f} "
            f"cpu_s={cpu_end[service] - cpu_start[service]:.1f}"
        )
    print(f"cpu_s service=soak-client {soak_cpu:.1f}")
    print("load_average=" + " ".join(f"{load:.2f}" for load in os.getloadavg()))
    for problem in problems[:20]:
        print(f"problem: {problem}")
    return 1 if problems else 0


def main() -> None:
    """Parse the options and run the soak; exit 1 when a check fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds")
    parser.add_argument("--browsers", type=int, default=300)
    parser.add_argument("--orgs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=20.0, help="writes per second")
    parser.add_argument("--disconnect", type=float, default=0.05)
    parser.add_argument("--wait", type=float, default=10.0, help="REALTIME_WAIT_S")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
