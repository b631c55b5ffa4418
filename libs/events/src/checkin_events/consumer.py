"""Consuming events from the topic exchange into a handler.

Each message is parsed into its event model and handed to an async handler inside
``message.process()``: it is acknowledged only after the handler returned. What cannot
be handled is never dropped silently:

- bytes that are not a valid event are logged once and dead-lettered (the dead-letter
  queue ``<exchange>.dead`` keeps them for an operator);
- a handler that raises is logged once (an error line, the traceback at debug level);
  the message is requeued once, and dead-lettered if it fails again.

The trace context that the publisher put in the headers becomes the parent of the
consume span, so one trace runs from the producing request to the consuming service.

``start`` either attaches (connection, topology, queue, consumer) or closes what it
opened and raises: aio-pika's robust connection reconnects only after a first
successful connect, so a service that must start while the broker is away calls
``start`` again until it succeeds (``service_kit.startup``).

``no_ack=True`` consumes without acknowledgements (the broker forgets a message once
sent): one frame and one syscall less per event, and no prefetch window to wait on.
Only for a consumer that can tell a lost message itself, e.g. the fanout, whose
exclusive queue dies with it and which turns a seq hole into ``resync``. Without acks
a message that cannot be handled is logged and dropped, not dead-lettered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from opentelemetry import context, propagate, trace

from checkin_events.closing import CLOSE_TIMEOUT_S, close_within
from checkin_events.models import ContractError, GuestEvent, parse_event
from checkin_events.routing import DEFAULT_EXCHANGE, declare_exchange

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

EventHandler = Callable[[GuestEvent], Awaitable[None]]
CONNECT_TIMEOUT_S = 10.0
"""How long one attempt to reach the broker may take (a broker that never answers)."""


def dead_letter_name(exchange_name: str) -> str:
    """The exchange and queue that keep messages no consumer could handle."""
    return f"{exchange_name}.dead"


async def declare_dead_letters(channel: AbstractChannel, exchange_name: str) -> None:
    """Declare the dead-letter exchange and its durable queue (idempotent)."""
    name = dead_letter_name(exchange_name)
    exchange = await channel.declare_exchange(
        name, aio_pika.ExchangeType.FANOUT, durable=True
    )
    queue = await channel.declare_queue(name, durable=True)
    await queue.bind(exchange)


def _headers_as_text(message: AbstractIncomingMessage) -> dict[str, str]:
    return {
        key: value.decode() if isinstance(value, bytes) else str(value)
        for key, value in (message.headers or {}).items()
    }


class EventConsumer:
    """Binds a queue to the exchange and feeds each event to a handler.

    ``queue_name=None`` declares an exclusive, auto-deleted queue that lives as long as
    this consumer's connection: right for a consumer whose state is in memory anyway.
    A named queue is durable and survives the consumer. ``on_reconnect`` is called
    after the robust connection came back (queue, bindings and consumer restored):
    messages published while it was away may be gone from an exclusive queue.
    """

    def __init__(
        self,
        amqp_url: str,
        handler: EventHandler,
        binding_keys: list[str],
        exchange_name: str = DEFAULT_EXCHANGE,
        queue_name: str | None = None,
        prefetch: int = 256,
        on_reconnect: Callable[[], None] | None = None,
        no_ack: bool = False,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self._amqp_url = amqp_url
        self._handler = handler
        self._binding_keys = binding_keys
        self._exchange_name = exchange_name
        self._queue_name = queue_name
        self._prefetch = prefetch
        self._on_reconnect_hook = on_reconnect
        self._no_ack = no_ack
        self._connect_timeout_s = connect_timeout_s
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._attached = False
        self._started = False

    async def start(self) -> None:
        """Connect, declare the topology, bind the queue and start consuming.

        The robust connection reconnects by itself only once it was made: when this
        first attempt fails (the broker away, the topology refused), whatever it
        opened is closed and the error is raised, so the caller may simply call
        ``start`` again later.
        """
        try:
            await self._attach()
        except BaseException:
            await self._close()
            raise
        self._started = True

    async def _attach(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self._amqp_url, timeout=self._connect_timeout_s
        )
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        self._connection.close_callbacks.add(self._on_close)
        self._channel = await self._connection.channel()
        await self._channel.set_qos(prefetch_count=self._prefetch)
        exchange = await declare_exchange(self._channel, self._exchange_name)
        await declare_dead_letters(self._channel, self._exchange_name)
        arguments: dict[str, Any] = {
            "x-dead-letter-exchange": dead_letter_name(self._exchange_name)
        }
        if self._queue_name is None:
            self._queue = await self._channel.declare_queue(
                exclusive=True, auto_delete=True, arguments=arguments
            )
        else:
            self._queue = await self._channel.declare_queue(
                self._queue_name, durable=True, arguments=arguments
            )
        for key in self._binding_keys:
            await self._queue.bind(exchange, routing_key=key)
        self._consumer_tag = await self._queue.consume(
            self._on_message, no_ack=self._no_ack
        )
        self._attached = True
        logger.info(
            "consumer started exchange=%s queue=%s bindings=%s",
            self._exchange_name,
            self._queue.name,
            ",".join(self._binding_keys),
        )

    @property
    def started(self) -> bool:
        """True once ``start`` succeeded, even while a later reconnect is under way."""
        return self._started

    @property
    def is_ready(self) -> bool:
        """True while consuming: from start, and again once a reconnect is complete.

        Between a lost connection and the end of its reconnect callbacks (the queue,
        bindings and consumer restored, ``on_reconnect`` run) it is ``False``.
        """
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
            and self._consumer_tag is not None
            and self._attached
        )

    def _on_reconnect(self, *_: object) -> None:
        logger.info("consumer reconnected exchange=%s", self._exchange_name)
        if self._on_reconnect_hook is not None:
            self._on_reconnect_hook()
        self._attached = True

    def _on_close(self, *_: object) -> None:
        self._attached = False
        if not self._started:  # closed by ``stop``: nothing was lost
            logger.debug("consumer closed exchange=%s", self._exchange_name)
            return
        logger.warning("consumer connection lost exchange=%s", self._exchange_name)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        """Parse, trace and hand over one message; a subclass that reads the body
        itself (a cheaper parser, its own tracing) overrides this."""
        parent = propagate.extract(_headers_as_text(message))
        token = context.attach(parent)
        try:
            await self._process(message)
        finally:
            context.detach(token)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        try:
            event = parse_event(message.body)
        except ContractError as exc:
            logger.error(
                "event rejected message_id=%s reason=%s", message.message_id, exc
            )
            if not self._no_ack:
                await message.reject(requeue=False)
            return

        with tracer.start_as_current_span(
            "events.consume",
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.message.id": str(event.event_id),
                "checkin.org_id": event.org_id,
                "checkin.seq": event.seq,
            },
        ):
            try:
                await self._handler(event)
            except Exception as exc:
                requeue = not message.redelivered and not self._no_ack
                logger.error(
                    "event handler failed event_id=%s org_id=%s seq=%s error=%r "
                    "requeue=%s",
                    event.event_id,
                    event.org_id,
                    event.seq,
                    exc,
                    requeue,
                )
                logger.debug("event handler traceback", exc_info=True)
                if not self._no_ack:
                    await message.nack(requeue=requeue)
                return
        if not self._no_ack:
            await message.ack()

    async def stop(self) -> None:
        """Stop consuming and close the connection."""
        self._started = False
        if self._queue is not None and self._consumer_tag is not None:
            try:
                await self._queue.cancel(self._consumer_tag)
            except Exception:  # the connection may already be gone
                logger.debug("consumer cancel failed", exc_info=True)
        await self._close()

    async def _close(self) -> None:
        if self._connection is not None:
            await close_within(self._connection, CLOSE_TIMEOUT_S)
        self._connection = self._channel = self._queue = None
        self._consumer_tag = None
        self._attached = False
