"""Print every event passing through the exchange: ``python -m checkin_events.tail``.

One line per event, ``seq orgId propertyId eventType entityId eventId``, in the order
the broker delivers them. Binds ``#`` unless a binding key is given (for example
``3.#`` for shard 3). Reads ``AMQP_URL`` and ``EVENTS_EXCHANGE``; stops on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys

from checkin_events.consumer import EventConsumer
from checkin_events.models import GuestEvent
from checkin_events.routing import DEFAULT_EXCHANGE

logger = logging.getLogger(__name__)


async def _print_event(event: GuestEvent) -> None:
    sys.stdout.write(
        f"seq={event.seq} orgId={event.org_id} propertyId={event.property_id} "
        f"eventType={event.event_type} entityId={event.entity_id} "
        f"eventId={event.event_id}\n"
    )
    sys.stdout.flush()


async def _tail(binding_keys: list[str]) -> None:
    consumer = EventConsumer(
        os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        _print_event,
        binding_keys,
        exchange_name=os.environ.get("EVENTS_EXCHANGE", DEFAULT_EXCHANGE),
    )
    await consumer.start()
    try:
        await asyncio.Event().wait()
    finally:
        await consumer.stop()


def main() -> None:
    """Tail the exchange until interrupted."""
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(sys.argv[1:] or ["#"]))


if __name__ == "__main__":
    main()
