"""The outbox relay: publishes stored events to RabbitMQ, in order, after the fact.

One relay per API process runs as a background task, but only the one holding a
PostgreSQL advisory lock publishes; the others wait as standbys and take over when
the leader's connection ends. The leader is woken by LISTEN/NOTIFY when a write adds
an outbox row, and sweeps periodically in case a notification was missed.

Rows go out in id order (per org that is ``seq`` order), a batch at a time: all of
a batch's publishes are sent on the one confirming channel before their confirms are
gathered, and the confirmed rows are marked in one UPDATE. A row is marked published
only after the broker confirmed it and every row before it; a failure in a batch
or a crash between the confirm and the mark sends those events again on the next
run, so delivery is at least once and consumers drop duplicates by
``eventId``/``seq``. While the broker is away, the relay retries with
exponential backoff and the writes keep succeeding: the outbox holds their events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from typing import Any

import asyncpg
from checkin_events import EventPublisher, PublishFailed, parse_event
from opentelemetry import context, propagate

from checkin_api import metrics
from checkin_api.outbox import NOTIFY_CHANNEL
from checkin_api.settings import ApiSettings

logger = logging.getLogger(__name__)

RELAY_LOCK_KEY = 7_305_202_602
"""The advisory lock that makes one relay per database the publishing leader."""

_PENDING = """
SELECT id, payload, trace_context FROM outbox
WHERE published_at IS NULL ORDER BY id LIMIT $1
"""
_MARK_PUBLISHED = """
UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])
"""
_BACKLOG = """
SELECT count(*) AS pending,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS lag
FROM outbox WHERE published_at IS NULL
"""


class OutboxRelay:
    """Moves outbox rows to the broker; run ``run()`` as a task, cancel to stop."""

    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings
        self._wake = asyncio.Event()
        self._publisher: EventPublisher | None = None
        self.is_leader = False

    @property
    def broker_state(self) -> str:
        """``connected``, or ``disconnected`` while the broker cannot be reached."""
        if self._publisher is not None and self._publisher.is_ready:
            return "connected"
        return "disconnected"

    async def run(self) -> None:
        """Lead (or wait to lead) until cancelled, reconnecting to the database."""
        backoff = _Backoff(self._settings)
        try:
            while True:
                try:
                    await self._lead(backoff)
                except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                    delay = backoff.next()
                    logger.warning(
                        "relay database unavailable error=%r retry_in_s=%.2f",
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
                except asyncpg.InterfaceError as exc:
                    delay = backoff.next()
                    logger.warning(
                        "relay connection lost error=%r retry_in_s=%.2f", exc, delay
                    )
                    await asyncio.sleep(delay)
        finally:
            await self._close_publisher()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _lead(self, backoff: _Backoff) -> None:
        connection = await asyncpg.connect(
            self._settings.database_url,
            timeout=self._settings.db_connect_timeout_s,
            command_timeout=self._settings.db_command_timeout_s,
        )
        try:
            await connection.add_listener(NOTIFY_CHANNEL, self._on_notify)
            while not await connection.fetchval(
                "SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY
            ):
                self._wake.clear()
                await self._sleep_until_woken(self._settings.relay_sweep_s)
            self.is_leader = True
            logger.info("relay leading")
            backoff.reset()
            while True:
                self._wake.clear()
                try:
                    await self._publish_pending(connection)
                except PublishFailed as exc:
                    await self._refresh_backlog(connection)
                    delay = backoff.next()
                    logger.warning(
                        "relay cannot publish error=%s retry_in_s=%.2f", exc, delay
                    )
                    await asyncio.sleep(delay)
                    continue
                backoff.reset()
                await self._refresh_backlog(connection)
                await self._sleep_until_woken(self._settings.relay_sweep_s)
        finally:
            self.is_leader = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=2)
            if not connection.is_closed():
                connection.terminate()

    async def _sleep_until_woken(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=timeout_s)

    async def _publish_pending(self, connection: Any) -> None:
        """Publish pending rows batch by batch; mark each confirmed run in one UPDATE.

        A batch's publishes are all started before their confirms are awaited. On a
        failure only the rows before the first failed one are marked; the rest stay
        pending and go out again, in id order, on the next attempt (consumers drop
        what the broker had already taken).
        """
        publisher = await self._connected_publisher()
        while True:
            rows = await connection.fetch(_PENDING, self._settings.relay_batch_size)
            if not rows:
                return
            outcome = await publisher.publish_batch(
                [parse_event(row["payload"]) for row in rows],
                [_write_context(row["trace_context"]) for row in rows],
            )
            if outcome.confirmed:
                await connection.execute(
                    _MARK_PUBLISHED, [row["id"] for row in rows[: outcome.confirmed]]
                )
                metrics.RELAY_PUBLISHED.inc(outcome.confirmed)
            if outcome.error is not None:
                logger.warning(
                    "relay batch cut short confirmed=%s of=%s",
                    outcome.confirmed,
                    len(rows),
                )
                raise outcome.error
            if len(rows) < self._settings.relay_batch_size:
                return

    async def _connected_publisher(self) -> EventPublisher:
        if self._publisher is not None:
            if not self._publisher.is_ready:
                raise PublishFailed("broker connection is being re-established")
            return self._publisher
        publisher = EventPublisher(
            self._settings.amqp_url,
            exchange_name=self._settings.events_exchange,
            shard_count=self._settings.shard_count,
            timeout_s=self._settings.publish_timeout_s,
        )
        # Shielded: a connection cancelled half-way (the API shutting down) would
        # otherwise be left to aio-pika's reconnect loop, which outlives the task.
        connecting = asyncio.ensure_future(publisher.connect())
        try:
            await asyncio.shield(connecting)
        except asyncio.CancelledError:
            # Let the attempt end by itself (it is bounded by its own timeout),
            # then close what it opened.
            await asyncio.wait({connecting}, timeout=self._settings.publish_timeout_s)
            with contextlib.suppress(Exception):
                await publisher.close()
            raise
        except Exception as exc:
            with contextlib.suppress(Exception):
                await publisher.close()
            raise PublishFailed(f"cannot connect: {type(exc).__name__}: {exc}") from exc
        self._publisher = publisher
        return publisher

    async def _refresh_backlog(self, connection: Any) -> None:
        row = await connection.fetchrow(_BACKLOG)
        metrics.OUTBOX_PENDING.set(row["pending"])
        metrics.OUTBOX_LAG.set(row["lag"])

    async def _close_publisher(self) -> None:
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.close()
            self._publisher = None


class _Backoff:
    """Exponential delays with jitter between the configured minimum and maximum."""

    def __init__(self, settings: ApiSettings) -> None:
        self._minimum = settings.relay_min_backoff_s
        self._maximum = settings.relay_max_backoff_s
        self._current = self._minimum

    def next(self) -> float:
        delay = self._current
        self._current = min(self._maximum, self._current * 2)
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._current = self._minimum


def _write_context(trace_context: str | None) -> context.Context | None:
    """The trace context of the request that wrote the event, if it kept one."""
    if not trace_context:
        return None
    return propagate.extract(json.loads(trace_context))
