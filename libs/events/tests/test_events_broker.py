"""Publisher and consumer on the real RabbitMQ: confirms, headers, trace context,
and what becomes of a message whose handler fails."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from checkin_events import (
    EventConsumer,
    EventPublisher,
    GuestCreated,
    GuestEvent,
    PublishFailed,
)
from checkin_events.consumer import dead_letter_name
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from tests.support.infra import Infra
from tests.support.polling import poll_until
from tests.support.processes import free_port

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7


def created(seq: int, org_id: int = 5, property_id: int = 51) -> GuestCreated:
    return GuestCreated(
        org_id=org_id,
        property_id=property_id,
        seq=seq,
        entity_id=100 + seq,
        actor_user_id="user-5",
    )


class Received:
    """What a handler saw: the events and the trace id current while handling."""

    def __init__(self) -> None:
        self.events: list[GuestEvent] = []
        self.trace_ids: list[int] = []

    async def handle(self, event: GuestEvent) -> None:
        self.events.append(event)
        self.trace_ids.append(trace.get_current_span().get_span_context().trace_id)


@pytest.fixture
async def dead_letters(infra: Infra, exchange_name: str) -> AsyncIterator[Any]:
    """The dead-letter queue of the test's exchange; deleted after the test."""
    connection = await aio_pika.connect(infra.amqp_url)
    channel = await connection.channel()
    yield channel
    name = dead_letter_name(exchange_name)
    for delete in (channel.queue_delete, channel.exchange_delete):
        try:
            await delete(name)
        except Exception:
            logging.getLogger(__name__).debug("cleanup failed", exc_info=True)
    await channel.exchange_delete(exchange_name)
    await connection.close()


async def test_published_events_are_consumed_in_order_with_the_trace_context(
    infra: Infra, exchange_name: str, dead_letters: Any
) -> None:
    received = Received()
    consumer = EventConsumer(
        infra.amqp_url, received.handle, ["#"], exchange_name=exchange_name
    )
    await consumer.start()
    parent = NonRecordingSpan(
        SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(1))
    )
    try:
        async with EventPublisher(infra.amqp_url, exchange_name) as publisher:
            with trace.use_span(parent):
                for seq in (1, 2, 3):
                    await publisher.publish(created(seq))
        await poll_until(
            lambda: _ready(len(received.events) == 3), "three events consumed"
        )
    finally:
        await consumer.stop()

    assert [event.seq for event in received.events] == [1, 2, 3]
    assert received.trace_ids == [TRACE_ID] * 3
    assert consumer.is_ready is False


async def test_the_message_is_persistent_with_the_event_id_routing_key_and_headers(
    infra: Infra, exchange_name: str, dead_letters: Any
) -> None:
    channel = dead_letters
    exchange = await channel.declare_exchange(
        exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="5.5.#")
    event = created(9)
    parent = NonRecordingSpan(
        SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(1))
    )

    async with EventPublisher(infra.amqp_url, exchange_name, shard_count=16) as pub:
        with trace.use_span(parent):
            await pub.publish(event)
    message = await poll_until(lambda: queue.get(fail=False), "the message")

    await message.ack()
    assert message.routing_key == "5.5.51.guest_created"
    assert message.message_id == str(event.event_id)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.headers["seq"] == 9
    assert f"{TRACE_ID:032x}" in str(message.headers["traceparent"])
    assert message.body == event.to_json()


async def test_publishing_without_a_broker_raises_publish_failed(
    exchange_name: str,
) -> None:
    publisher = EventPublisher(
        f"amqp://guest:guest@127.0.0.1:{free_port()}/", exchange_name, timeout_s=1
    )

    with pytest.raises(PublishFailed):
        await publisher.publish(created(1))
    with pytest.raises(OSError):
        await publisher.connect()


async def test_a_failing_handler_is_logged_retried_once_then_dead_lettered(
    infra: Infra,
    exchange_name: str,
    dead_letters: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts: list[int] = []

    async def refuse(event: GuestEvent) -> None:
        attempts.append(event.seq)
        raise RuntimeError("handler bug")

    consumer = EventConsumer(infra.amqp_url, refuse, ["#"], exchange_name=exchange_name)
    await consumer.start()
    caplog.set_level(logging.ERROR, logger="checkin_events.consumer")
    try:
        async with EventPublisher(infra.amqp_url, exchange_name) as publisher:
            await publisher.publish(created(1))
        queue = await dead_letters.declare_queue(
            dead_letter_name(exchange_name), durable=True
        )
        message = await poll_until(
            lambda: queue.get(fail=False), "the message in the dead-letter queue"
        )
        await message.ack()
    finally:
        await consumer.stop()

    assert attempts == [1, 1]
    assert message.message_id is not None
    failures = [r for r in caplog.records if "event handler failed" in r.getMessage()]
    assert len(failures) == 2
    assert "requeue=True" in failures[0].getMessage()
    assert "requeue=False" in failures[1].getMessage()


async def test_bytes_that_are_no_event_are_dead_lettered_not_handled(
    infra: Infra, exchange_name: str, dead_letters: Any
) -> None:
    received = Received()
    consumer = EventConsumer(
        infra.amqp_url, received.handle, ["#"], exchange_name=exchange_name
    )
    await consumer.start()
    try:
        exchange = await dead_letters.get_exchange(exchange_name)
        await exchange.publish(
            aio_pika.Message(b'{"eventType": "guest_teleported"}'),
            routing_key="1.1.1.guest_teleported",
        )
        queue = await dead_letters.declare_queue(
            dead_letter_name(exchange_name), durable=True
        )
        message = await poll_until(lambda: queue.get(fail=False), "dead letter")
        await message.ack()
    finally:
        await consumer.stop()

    assert message.body == b'{"eventType": "guest_teleported"}'
    assert received.events == []


async def _ready(value: bool) -> bool:
    await asyncio.sleep(0)
    return value
