"""The guest check-in event contract shared by every service.

Models of every event type, the routing keys and exchange topology, and the publisher
and consumer that move events through RabbitMQ.
"""

from checkin_events.consumer import EventConsumer, EventHandler
from checkin_events.models import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    ContractError,
    EventType,
    GuestCheckedOut,
    GuestCreated,
    GuestDeleted,
    GuestDocumentExtracted,
    GuestDocumentUploaded,
    GuestEvent,
    GuestUpdated,
    event_from_dict,
    parse_event,
)
from checkin_events.publisher import (
    BatchOutcome,
    EventPublisher,
    PublishFailed,
    build_message,
)
from checkin_events.routing import (
    DEFAULT_EXCHANGE,
    DEFAULT_SHARD_COUNT,
    declare_exchange,
    routing_key,
    shard_bindings,
    shard_for,
)

__all__ = [
    "DEFAULT_EXCHANGE",
    "DEFAULT_SHARD_COUNT",
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "BatchOutcome",
    "ContractError",
    "EventConsumer",
    "EventHandler",
    "EventPublisher",
    "EventType",
    "GuestCheckedOut",
    "GuestCreated",
    "GuestDeleted",
    "GuestDocumentExtracted",
    "GuestDocumentUploaded",
    "GuestEvent",
    "GuestUpdated",
    "PublishFailed",
    "build_message",
    "declare_exchange",
    "event_from_dict",
    "parse_event",
    "routing_key",
    "shard_bindings",
    "shard_for",
]
