"""Publishing events to the topic exchange with publisher confirms.

``EventPublisher.publish`` returns only once the broker has confirmed the message, so
a caller that marks an event as sent after it returns never loses one. Messages are
persistent, carry the ``eventId`` as their AMQP message id (for de-duplication by any
consumer) and the W3C trace context of the current span in their headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from checkin_events.closing import CLOSE_TIMEOUT_S, close_within
from checkin_events.models import GuestEvent
from checkin_events.routing import DEFAULT_EXCHANGE, declare_exchange, routing_key

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


class PublishFailed(RuntimeError):
    """The broker did not confirm the message (nack, closed channel, no broker)."""


def build_message(event: GuestEvent) -> aio_pika.Message:
    """The AMQP message of one event: persistent, JSON, traced, id = eventId."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return aio_pika.Message(
        body=event.to_json(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(event.event_id),
        type=event.event_type,
        timestamp=event.timestamp,
        headers={**headers, "seq": event.seq, "org-id": event.org_id},
    )


@dataclass(frozen=True)
class BatchOutcome:
    """What became of a batch: the leading events the broker confirmed, in order.

    ``confirmed`` counts the events before the first one that failed; events after
    a failure may have reached the broker too, but only the leading run is safe to
    mark as sent. ``error`` is that first failure, ``None`` when all were confirmed.
    """

    confirmed: int
    error: PublishFailed | None


class EventPublisher:
    """Publishes events on one confirming channel of a robust connection."""

    def __init__(
        self,
        amqp_url: str,
        exchange_name: str = DEFAULT_EXCHANGE,
        shard_count: int = 16,
        timeout_s: float = 5.0,
    ) -> None:
        self._amqp_url = amqp_url
        self._exchange_name = exchange_name
        self._shard_count = shard_count
        self._timeout_s = timeout_s
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    async def connect(self) -> None:
        """Open the connection and declare the exchange (idempotent)."""
        self._connection = await aio_pika.connect_robust(
            self._amqp_url, timeout=self._timeout_s
        )
        self._channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await declare_exchange(self._channel, self._exchange_name)
        logger.info("publisher connected exchange=%s", self._exchange_name)

    @property
    def is_ready(self) -> bool:
        """True while the connection is open and the exchange is declared."""
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
            and self._exchange is not None
        )

    async def publish(self, event: GuestEvent) -> None:
        """Publish one event and wait for the broker's confirm.

        Raises ``PublishFailed`` when the broker is away, nacks or does not confirm
        within the timeout; the caller keeps the event and tries again later.
        """
        if self._exchange is None or not self.is_ready:
            raise PublishFailed("not connected to the broker")
        key = routing_key(
            event.org_id, event.property_id, event.event_type, self._shard_count
        )
        with tracer.start_as_current_span(
            "events.publish",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.destination.name": self._exchange_name,
                "messaging.rabbitmq.destination.routing_key": key,
                "messaging.message.id": str(event.event_id),
                "checkin.org_id": event.org_id,
                "checkin.seq": event.seq,
            },
        ):
            try:
                await self._exchange.publish(
                    build_message(event), routing_key=key, timeout=self._timeout_s
                )
            except Exception as exc:
                raise PublishFailed(f"{type(exc).__name__}: {exc}") from exc

    async def publish_batch(
        self,
        events: Sequence[GuestEvent],
        parents: Sequence[otel_context.Context | None] | None = None,
    ) -> BatchOutcome:
        """Publish events in order on the one channel and gather their confirms.

        Every publish is started before any confirm is awaited, so a batch costs one
        broker round trip instead of one per event. The channel writes the messages
        in the order they were started (its publish lock is first come, first
        served), so per org the broker sees them in ``seq`` order. ``parents`` gives
        each event the trace context to publish in (e.g. that of the write that
        stored it).
        """
        publishes: list[asyncio.Task[None]] = []
        for index, event in enumerate(events):
            parent = parents[index] if parents is not None else None
            token = otel_context.attach(parent) if parent is not None else None
            try:
                # A task copies the current context: the span is that of ``parent``.
                publishes.append(asyncio.ensure_future(self.publish(event)))
            finally:
                if token is not None:
                    otel_context.detach(token)
        results = await asyncio.gather(*publishes, return_exceptions=True)
        confirmed = 0
        for result in results:
            if result is not None:
                break
            confirmed += 1
        if confirmed == len(results):
            return BatchOutcome(confirmed=confirmed, error=None)
        failure = results[confirmed]
        if not isinstance(failure, PublishFailed):
            failure = PublishFailed(f"{type(failure).__name__}: {failure}")
        return BatchOutcome(confirmed=confirmed, error=failure)

    async def close(self) -> None:
        """Close the channel and the connection."""
        if self._connection is not None:
            await close_within(self._connection, CLOSE_TIMEOUT_S)
        self._connection = self._channel = self._exchange = None

    async def __aenter__(self) -> EventPublisher:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
