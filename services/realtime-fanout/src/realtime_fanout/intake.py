"""How consumed events enter the fanout: read cheaply, kept as the bytes that came.

The fanout needs six fields of an event (``seq``, ``eventId``, ``orgId``,
``propertyId``, ``timestamp``, ``eventType``) and sends the rest to browsers as it
came. So it does not build the full pydantic model per event: ``read_event`` decodes
the body with orjson, validates those six fields and keeps the body as the event's
JSON (the publisher wrote exactly that, with ``GuestEvent.to_json``). Other consumers
keep using ``parse_event``.

``FanoutConsumer`` consumes without acknowledgements: the queue is exclusive and dies
with the process, the state is in memory, and a lost message shows up as a seq hole
that the buffer turns into ``resync``. It starts no span per event: the trace context
of the publisher's headers is kept with the event, and the poll that delivers it
continues that trace (``fanout.deliver``). Only an event whose producing trace was
sampled gets an ``events.consume`` span, so a traced write still shows every hop.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from aio_pika.abc import AbstractIncomingMessage
from checkin_events import EVENT_TYPES, ContractError, EventConsumer, GuestEvent
from opentelemetry import trace
from opentelemetry.trace import SpanContext, TraceFlags

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

MAX_ID = 2**53
_EVENT_TYPES = frozenset(EVENT_TYPES)


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """The fields of one consumed event the fanout reads, and its JSON as it came.

    ``trace_context`` is the span the event continues (the publisher's, or the consume
    span when one was started), so the poll that delivers it joins the write's trace.
    """

    org_id: int
    seq: int
    event_id: str
    property_id: int
    timestamp: float
    event_type: str
    body: bytes
    trace_context: SpanContext | None = None

    @classmethod
    def of(cls, event: GuestEvent) -> IncomingEvent:
        """From a parsed event model, in the trace of the current span."""
        current = trace.get_current_span().get_span_context()
        return cls(
            org_id=event.org_id,
            seq=event.seq,
            event_id=str(event.event_id),
            property_id=event.property_id,
            timestamp=event.timestamp.timestamp(),
            event_type=event.type_name,
            body=event.to_json(),
            trace_context=current if current.is_valid else None,
        )


def _positive_id(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    if type(value) is not int or not 1 <= value <= MAX_ID:
        raise ContractError(f"{name}: a positive integer is required")
    return value


def read_event(body: bytes, trace_context: SpanContext | None = None) -> IncomingEvent:
    """Validate the fields the fanout reads and keep ``body`` as the event's JSON.

    Raises ``ContractError`` naming the first field that is missing or wrong.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ContractError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError("an event must be a JSON object")
    event_type = data.get("eventType")
    if event_type not in _EVENT_TYPES:
        raise ContractError(f"eventType: unknown {event_type!r}")
    raw_id = data.get("eventId")
    try:
        event_id = str(UUID(raw_id))
    except (TypeError, ValueError, AttributeError) as exc:
        raise ContractError("eventId: a UUID is required") from exc
    raw_time = data.get("timestamp")
    try:
        moment = datetime.fromisoformat(raw_time)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ContractError("timestamp: an ISO 8601 date-time is required") from exc
    if moment.tzinfo is None:
        raise ContractError("timestamp: a time zone is required")
    return IncomingEvent(
        org_id=_positive_id(data, "orgId"),
        seq=_positive_id(data, "seq"),
        event_id=event_id,
        property_id=_positive_id(data, "propertyId"),
        timestamp=moment.timestamp(),
        event_type=event_type,
        body=body,
        trace_context=trace_context,
    )


def traceparent_of(headers: Mapping[str, Any] | None) -> SpanContext | None:
    """The W3C ``traceparent`` of the headers, without the propagator's machinery."""
    if not headers:
        return None
    raw = headers.get("traceparent")
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", "replace")
    if not isinstance(raw, str):
        return None
    parts = raw.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id, flags = (
            int(parts[1], 16),
            int(parts[2], 16),
            int(parts[3], 16),
        )
    except ValueError:
        return None
    context = SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 0xFF)
    )
    return context if context.is_valid else None


class FanoutConsumer(EventConsumer):
    """The event consumer of the fanout: no acks, cheap parsing, spans when sampled.

    Without acks the broker pushes messages as fast as the socket takes them; the
    prefetch window does not apply, so there is none to raise.
    """

    def __init__(
        self,
        amqp_url: str,
        take: Callable[[IncomingEvent], object],
        binding_keys: list[str],
        exchange_name: str,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        async def take_model(event: GuestEvent) -> None:
            take(IncomingEvent.of(event))

        super().__init__(
            amqp_url,
            take_model,
            binding_keys,
            exchange_name=exchange_name,
            on_reconnect=on_reconnect,
            no_ack=True,
        )
        self._take = take

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        parent = traceparent_of(message.headers)
        try:
            event = read_event(message.body, parent)
        except ContractError as exc:
            logger.error(
                "event rejected message_id=%s reason=%s", message.message_id, exc
            )
            return
        try:
            if parent is not None and parent.trace_flags.sampled:
                self._take_traced(event, parent)
            else:
                self._take(event)
        except Exception as exc:
            logger.error(
                "event handler failed event_id=%s org_id=%s seq=%s error=%r",
                event.event_id,
                event.org_id,
                event.seq,
                exc,
            )
            logger.debug("event handler traceback", exc_info=True)

    def _take_traced(self, event: IncomingEvent, parent: SpanContext) -> None:
        with tracer.start_as_current_span(
            "events.consume",
            context=trace.set_span_in_context(trace.NonRecordingSpan(parent)),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.message.id": event.event_id,
                "checkin.org_id": event.org_id,
                "checkin.seq": event.seq,
            },
        ) as span:
            consumed_in = span.get_span_context()
            if consumed_in.is_valid:
                event = dataclasses.replace(event, trace_context=consumed_in)
            self._take(event)
