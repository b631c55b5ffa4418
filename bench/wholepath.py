"""The whole path: check-in API write -> outbox -> RabbitMQ -> fanout -> waiting poll.

Runs the real check-in API on a throwaway database, the fanout asking that API for
positions, and the gateway (``deploy/gateway``) in front of both when its config
exists. Two measurements: the API's writes per second with the outbox (and how soon
the relay has delivered all of their events to the fanout), and the latency from a
write to the answer of each poll of that org waiting through the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bench.fanout import AMQP_URL, FanoutServer, fanout_poll_spec, wait_for
from bench.harness import ClientPool, cpu_s, summary_ms
from tests.support.infra import Infra, fresh_database
from tests.support.processes import ServiceProcess, free_port
from tests.support.tokens import AUTH_ENV, token

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
GATEWAY_DIR = REPO / "deploy" / "gateway"
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def guest_body(property_id: int, number: int) -> dict[str, Any]:
    """A valid check-in body; the bench's guests are fictional."""
    return {
        "propertyId": property_id,
        "fullName": f"Bench Guest {number}",
        "email": f"guest{number}@example.com",
        "phone": "+44 20 7946 0000",
        "address": "1 Bench Street",
        "guestType": "domestic",
        "nationality": "GB",
        "idType": "passport",
        "idNumber": f"P{number:07d}",
        "roomNumber": str(100 + number % 400),
        "numberOfGuests": 1,
        "checkInDate": "2026-12-03",
        "expectedCheckoutDate": "2026-12-05",
    }


@contextmanager
def checkin_api(exchange: str) -> Iterator[ServiceProcess]:
    """The real check-in API on a fresh database, on the bench's exchange."""
    infra = Infra(amqp_url=AMQP_URL, database_url=DATABASE_URL, source="bench")
    with fresh_database(infra, "bench") as database_url:
        api = ServiceProcess(
            "checkin_api",
            {
                **AUTH_ENV,
                "DATABASE_URL": database_url,
                "AMQP_URL": AMQP_URL,
                "EVENTS_EXCHANGE": exchange,
                "DB_POOL_MAX_SIZE": "20",
                "LOG_LEVEL": "WARNING",
            },
        )
        api.start(timeout_s=60)
        try:
            yield api
        finally:
            api.terminate()


class Gateway:
    """The project's own gateway config, rendered into a temp prefix and run."""

    def __init__(self, api_port: int, fanout_port: int) -> None:
        self.port = free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
        self.env = {
            **os.environ,
            "GATEWAY_PORT": str(self.port),
            "CHECKIN_API_PORT": str(api_port),
            "FANOUT_PORT": str(fanout_port),
            "TELEMETRY_PORT": str(free_port()),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return (GATEWAY_DIR / "render.sh").exists() and shutil.which(
            "nginx"
        ) is not None

    def start(self) -> None:
        conf = subprocess.run(
            ["bash", str(GATEWAY_DIR / "render.sh"), str(self.prefix)],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        self.process = subprocess.Popen(
            [
                "nginx",
                "-c",
                conf,
                "-p",
                str(self.prefix),
                "-e",
                str(self.prefix / "error.log"),
                "-g",
                "daemon off;",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.prefix, ignore_errors=True)


async def api_writes(
    api: ServiceProcess,
    fanout: FanoutServer,
    seconds: float,
    concurrency: int,
) -> dict[str, Any]:
    """Writes/s the API takes with the outbox, and when the fanout had them all."""
    assert api.process is not None
    orgs = list(range(900_000, 900_000 + 50))
    consumed_before = fanout.metric("fanout_events_total")
    cpu_before = cpu_s(api.process.pid)
    statuses: dict[int, int] = {}
    started = time.monotonic()
    deadline = started + seconds
    headers = {org: {"Authorization": "Bearer " + token(org)} for org in orgs}
    counter = iter(range(10**9))

    async def writer(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            org = random.choice(orgs)
            async with session.post(
                api.url + "/v1/guest-checkins",
                json=guest_body(org * 10 + 1, next(counter)),
                headers=headers[org],
            ) as answer:
                await answer.read()
                statuses[answer.status] = statuses.get(answer.status, 0) + 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(writer(session) for _ in range(concurrency)))
    written_s = time.monotonic() - started
    created = statuses.get(201, 0)
    cpu = cpu_s(api.process.pid) - cpu_before
    await wait_for(
        lambda: fanout.metric("fanout_events_total") - consumed_before >= created,
        timeout_s=60,
    )
    drained_s = time.monotonic() - started
    result = {
        "scenario": "throughput_api",
        "target": "fanout",
        "concurrency": concurrency,
        "writes": created,
        "statuses": {str(k): v for k, v in statuses.items()},
        "writes_per_s": round(created / written_s),
        "events_at_fanout": int(fanout.metric("fanout_events_total") - consumed_before),
        "outbox_drained_s": round(drained_s, 2),
        "relay_events_per_s": round(created / drained_s),
        "api_cpu_per_write_us": round(1e6 * cpu / max(1, created)),
    }
    logger.info("result %s", result)
    return result


async def whole_path(
    api: ServiceProcess,
    fanout: FanoutServer,
    entry_port: int,
    via: str,
    polls: int,
    orgs: int,
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    """Writes at a steady rate; latency from a write to each waiting poll's answer."""
    org_ids = list(range(800_000, 800_000 + orgs))
    pool = await ClientPool.start(polls)
    sent_at: dict[tuple[int, int], int] = {}
    statuses: dict[int, int] = {}
    try:
        specs = [fanout_poll_spec(org_ids[i % orgs]) for i in range(polls)]
        await pool.open("127.0.0.1", entry_port, specs)
        await wait_for(lambda: fanout.metric("fanout_waiters") >= polls, timeout_s=30)
        client_before = await pool.stats()
        rng = random.Random(11)
        total = int(rate * seconds)
        headers = {org: {"Authorization": "Bearer " + token(org)} for org in org_ids}

        async def write(session: aiohttp.ClientSession, number: int) -> None:
            org = rng.choice(org_ids)
            sent = time.monotonic_ns()
            async with session.post(
                f"http://127.0.0.1:{entry_port}/v1/guest-checkins",
                json=guest_body(org * 10 + 1, number),
                headers=headers[org],
            ) as answer:
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
                if answer.status == 201:
                    record = await answer.json()
                    sent_at[(org, int(record["id"]))] = sent

        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            tasks = []
            for number in range(total):
                await asyncio.sleep(
                    max(0.0, started + number / rate - time.monotonic())
                )
                tasks.append(asyncio.create_task(write(session, number)))
            await asyncio.gather(*tasks)
        expected = sum(polls // orgs for _ in sent_at)
        answers = []
        delivered = 0
        deadline = time.monotonic() + 10
        while delivered < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            batch = await pool.collect()
            answers.extend(batch)
            delivered += sum(len(a[4]) for _, a in batch)
        client_after = await pool.stats()
    finally:
        await pool.close()
    latencies = []
    for _, answer in answers:
        for org, _, entity in answer[4]:
            if (org, entity) in sent_at:
                latencies.append(answer[0] - sent_at[(org, entity)])
    result = {
        "scenario": "whole_path",
        "target": "fanout",
        "via": via,
        "polls": polls,
        "orgs": orgs,
        "writes": len(sent_at),
        "rate_per_s": rate,
        "statuses": {str(k): v for k, v in statuses.items()},
        **summary_ms(latencies),
        "expected_deliveries": expected,
        "missed": expected - len(latencies),
        "client_cpu_s": round(client_after["cpu_s"] - client_before["cpu_s"], 3),
        "errors": client_after["errors"],
    }
    logger.info("result %s", result)
    return result
