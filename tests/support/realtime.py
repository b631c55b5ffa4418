"""The check-in API and the fanout as processes, and a staff member who uses them.

Moved here from ``tests/e2e/test_e2e_fanout_flow.py`` so that the fault, hostile-input
and soak suites start the services and talk to them the same way: ``api_process`` and
``fanout_process`` build (not start) a ``ServiceProcess`` with the test tokens'
secret; ``Staff`` writes through the API and long-polls the fanout as one org.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import aiohttp

from tests.support.guests import guest
from tests.support.polling import poll_until
from tests.support.processes import ServiceProcess
from tests.support.tokens import AUTH_ENV, bearer

logger = logging.getLogger(__name__)

SUBSCRIBE = "/v1/guest-checkin/realtime/subscribe"
METRICS = "/v1/guest-checkin/realtime/metrics"
CHECKINS = "/v1/guest-checkins"


def api_process(
    database_url: str, amqp_url: str, exchange: str, **env: str
) -> ServiceProcess:
    """The check-in API on ``database_url``, publishing to ``exchange``."""
    return ServiceProcess(
        "checkin_api",
        {
            **AUTH_ENV,
            "DATABASE_URL": database_url,
            "AMQP_URL": amqp_url,
            "EVENTS_EXCHANGE": exchange,
            "RELAY_SWEEP_S": "1",
            **env,
        },
    )


def fanout_process(
    amqp_url: str, exchange: str, api_url: str, wait_s: float, **env: str
) -> ServiceProcess:
    """The fanout consuming ``exchange`` and asking ``api_url`` for positions."""
    return ServiceProcess(
        "realtime_fanout",
        {
            **AUTH_ENV,
            "AMQP_URL": amqp_url,
            "EVENTS_EXCHANGE": exchange,
            "CHECKIN_API_URL": api_url,
            "REALTIME_WAIT_S": str(wait_s),
            "AMQP_CONNECTION_NAME": f"fanout-test-{uuid.uuid4().hex[:8]}",
            **env,
        },
    )


def seqs(body: Any) -> list[int]:
    """The ``seq`` of every event of a poll's answer."""
    return [event["seq"] for event in body["events"]]


class Staff:
    """One staff member of an org talking to the API and the fanout."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        api: ServiceProcess,
        fanout: ServiceProcess,
        org: int,
        role: str = "ADMIN",
        property_ids: list[int] | None = None,
    ) -> None:
        self.http, self.api, self.fanout, self.org = http, api, fanout, org
        self.headers = bearer(org, role, property_ids=property_ids)

    async def create(self, property_id: int) -> int:
        """Check a guest in; the answer must be 201."""
        async with self.http.post(
            self.api.url + CHECKINS, json=guest(property_id), headers=self.headers
        ) as answer:
            assert answer.status == 201, await answer.text()
            return int((await answer.json())["id"])

    async def list_position(self) -> int:
        """The org's position as the list reports it."""
        async with self.http.get(
            self.api.url + CHECKINS, headers=self.headers
        ) as answer:
            assert answer.status == 200, await answer.text()
            return int((await answer.json())["position"])

    async def poll(self, **query: int | str) -> tuple[int, Any, float]:
        """One long-poll: status, JSON body and how long it took."""
        started = time.monotonic()
        params = {key: str(value) for key, value in query.items()}
        async with self.http.get(
            self.fanout.url + SUBSCRIBE, params=params, headers=self.headers
        ) as answer:
            body = await answer.json()
            return answer.status, body, time.monotonic() - started

    async def waiting(self) -> int:
        """Polls waiting on the fanout now (every org), from its JSON metrics."""
        async with self.http.get(
            self.fanout.url + METRICS, headers=self.headers
        ) as answer:
            return int((await answer.json())["subscribers"]["active_count"])

    async def until_waiting(self, count: int, timeout_s: float = 5.0) -> None:
        """Wait until exactly ``count`` polls are waiting on the fanout."""

        async def probe() -> bool:
            return await self.waiting() == count

        await poll_until(probe, f"{count} polls waiting on the fanout", timeout_s)


class Follower:
    """A browser's leader: polls with the cursor it got, resyncs when told to.

    It keeps what it saw as a timeline: the events of each answer, and each resync
    as the cursor it left and the list position it picked up from. ``check`` then
    proves that nothing was seen twice or out of order and that every seq it may see
    up to ``last`` arrived, except the runs a resync told it to refetch.
    """

    def __init__(
        self, staff: Staff, cursor: int, property_id: int | None = None
    ) -> None:
        self.staff = staff
        self.start = self.cursor = cursor
        self.property_id = property_id
        self.events: list[dict[str, Any]] = []
        self.resyncs: list[tuple[int, int]] = []
        self.failures: list[str] = []

    async def poll_once(self) -> None:
        """One poll and what follows from its answer; errors are noted, not raised."""
        query: dict[str, int | str] = {"lastEventId": self.cursor}
        if self.property_id is not None:
            query["propertyId"] = self.property_id
        try:
            status, body, _ = await self.staff.poll(**query)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.failures.append(f"{type(exc).__name__}")
            return
        if status != 200:
            self.failures.append(f"status {status}: {body}")
            return
        if body["resync"]:
            position = await self.staff.list_position()
            self.resyncs.append((self.cursor, position))
            self.cursor = position
            return
        self.events.extend(body["events"])
        self.cursor = int(body["lastEventId"])

    async def follow(self, until_seq: int | None = None) -> None:
        """Poll until the cursor reaches ``until_seq`` (forever when ``None``)."""
        while until_seq is None or self.cursor < until_seq:
            await self.poll_once()

    def seqs(self) -> list[int]:
        """The seqs received, in the order received."""
        return [event["seq"] for event in self.events]

    def check(self, last: int, visible: set[int] | None = None) -> None:
        """Assert once-in-order delivery of every seq in ``(start, last]`` it may see.

        ``visible`` is the set of seqs this follower may see (every seq when
        ``None``); a seq is excused only when a resync jumped over it.
        """
        received = self.seqs()
        assert received == sorted(set(received)), f"twice or out of order: {received}"
        excused = {
            seq for left, picked in self.resyncs for seq in range(left + 1, picked + 1)
        }
        wanted = set(range(self.start + 1, last + 1))
        if visible is not None:
            wanted &= visible
        missing = sorted(wanted - set(received) - excused)
        assert not missing, f"missing without resync: {missing}; got {received}"
        unexpected = sorted(set(received) - wanted) if visible is not None else []
        assert not unexpected, f"events it may not see: {unexpected}"
