"""Our side of the bench: the fanout process, a position stub, and event publishing.

The fanout (``python -m realtime_fanout``) runs as its own process on a bench-only
exchange, with the bench's JWT secret. It learns an org's starting position from
``CHECKIN_API_URL``; unless the real check-in API runs, ``PositionStub`` answers
``{"position": 0}`` for every org from inside the bench process. Events are published
with ``checkin_events.EventPublisher`` (publisher confirms), so a measured latency
includes the broker hop, as it does in production.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import aio_pika
from aiohttp import web
from checkin_events import EventPublisher, GuestCreated

from tests.support.processes import free_port
from tests.support.tokens import AUTH_ENV, token

logger = logging.getLogger(__name__)

SUBSCRIBE_PATH = "/v1/guest-checkin/realtime/subscribe"
UVLOOP_ENV = "BENCH_FANOUT_UVLOOP"
UVLOOP_MAIN = (
    "import uvloop; uvloop.install(); from realtime_fanout.__main__ import main; main()"
)
EXTRA_ENV = "BENCH_FANOUT_ENV"
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def bench_exchange() -> str:
    """A fresh exchange name, so the bench never sees anyone else's events."""
    return f"bench.{uuid.uuid4().hex[:12]}"


class PositionStub:
    """Answers ``GET /v1/guest-checkins/position`` with position 0, for any org."""

    def __init__(self) -> None:
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        async def position(_: web.Request) -> web.Response:
            return web.json_response({"position": 0})

        app = web.Application()
        app.router.add_get("/v1/guest-checkins/position", position)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class FanoutServer:
    """One fanout process on a loopback port, on the bench's own exchange."""

    def __init__(self, exchange: str, api_url: str, extra_env: dict[str, str]) -> None:
        self.port = free_port()
        self.exchange = exchange
        self.log_path = Path(tempfile.mkstemp(prefix="bench-fanout-", suffix=".log")[1])
        self.env = {
            **os.environ,
            **AUTH_ENV,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "AMQP_URL": AMQP_URL,
            "CHECKIN_API_URL": api_url,
            "EVENTS_EXCHANGE": exchange,
            "MAX_WAITERS_PER_ORG": "25000",
            "LOG_LEVEL": "INFO",
            **json.loads(os.environ.get(EXTRA_ENV, "{}")),
            **extra_env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.module_args = ["-m", "realtime_fanout"]
        if os.environ.get(UVLOOP_ENV) == "1":
            # The unchanged service on uvloop: an experiment, not a fork.
            self.module_args = ["-c", UVLOOP_MAIN]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout_s: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, *self.module_args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=raise_files_limit,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("fanout exited:\n" + self.logs())
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("fanout not ready:\n" + self.logs())

    def metric(self, name: str, tries: int = 6) -> float:
        """One unlabelled sample of the fanout's Prometheus text.

        A fanout busy accepting thousands of polls may answer late: a timed-out
        read is tried again (``tries`` times, 5 s each) before it fails.
        """
        for attempt in range(tries):
            try:
                with urllib.request.urlopen(self.url + "/metrics", timeout=5) as answer:
                    text = answer.read().decode()
                break
            except (TimeoutError, urllib.error.URLError):
                if attempt == tries - 1:
                    raise
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        self.log_path.unlink(missing_ok=True)


def raise_files_limit() -> None:
    """In the child: RLIMIT_NOFILE up to the hard limit, as a deployment would."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def fanout_poll_spec(org: int) -> dict[str, object]:
    """A load-client poll of one org with an ADMIN token (sees every property)."""
    return {"kind": "fanout", "path": SUBSCRIBE_PATH, "org": org, "token": token(org)}


class BenchPublisher:
    """Publishes guest-created events with contiguous seq per org."""

    def __init__(self, exchange: str) -> None:
        self.publisher = EventPublisher(AMQP_URL, exchange)
        self.next_seq: dict[int, int] = {}

    async def connect(self) -> None:
        await self.publisher.connect()

    def event(self, org: int) -> GuestCreated:
        """The next event of ``org`` (seq 1, 2, 3, ...)."""
        seq = self.next_seq.get(org, 0) + 1
        self.next_seq[org] = seq
        return GuestCreated(
            org_id=org,
            property_id=org * 10 + 1,
            seq=seq,
            entity_id=seq,
            actor_user_id="bench",
        )

    async def publish(self, event: GuestCreated) -> int:
        """Publish and wait for the confirm; return the monotonic ns of the send."""
        sent = time.monotonic_ns()
        await self.publisher.publish(event)
        return sent

    async def close(self) -> None:
        await self.publisher.close()


async def delete_exchange(exchange: str) -> None:
    """Remove the bench's exchange and its dead-letter queue from the broker."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        for queue in (f"{exchange}.dead",):
            try:
                await channel.queue_delete(queue)
            except aio_pika.exceptions.AMQPError:
                channel = await connection.channel()
        for name in (exchange, f"{exchange}.dead", f"{exchange}.dlx"):
            try:
                await channel.exchange_delete(name)
            except aio_pika.exceptions.AMQPError:
                channel = await connection.channel()
    finally:
        await connection.close()


async def wait_for(probe: object, timeout_s: float) -> bool:
    """Poll a synchronous ``probe() -> bool`` every 50 ms until true or deadline."""
    assert callable(probe)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():
            return True
        await asyncio.sleep(0.05)
    return False
