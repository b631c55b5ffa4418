"""The transactional outbox: the org's next ``seq`` and the event, in the write's
transaction.

``append_event`` runs inside the transaction that changes a guest check-in. The
upsert on ``org_sequences`` both allocates the next number and locks the org's row
until commit, so an org's writes take their numbers one after the other and commit
in that order: the relay, reading committed rows by id, sees seq 1, 2, 3 … without
holes. An insert on ``outbox`` notifies the relay (a trigger on the table).

The row also keeps the W3C trace context of the write, so that the relay's publish
continues the trace of the request that made the change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from checkin_events import GuestEvent
from opentelemetry import propagate, trace

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

NOTIFY_CHANNEL = "outbox_inserted"

NEXT_SEQ = """
INSERT INTO org_sequences (org_id, last_seq) VALUES ($1, 1)
ON CONFLICT (org_id) DO UPDATE SET last_seq = org_sequences.last_seq + 1
RETURNING last_seq
"""
"""Takes the org's next ``seq`` and locks its row until commit (usable as a CTE)."""

_INSERT = """
INSERT INTO outbox (org_id, seq, event_type, payload, trace_context)
VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)
"""


async def append_event(
    connection: Any,
    org_id: int,
    build: Callable[[int], GuestEvent],
    seq: int | None = None,
) -> GuestEvent:
    """Take the org's next seq, build the event with it and store it in the outbox.

    ``connection`` must be inside the transaction of the change the event describes.
    ``seq`` is given when that transaction already took it with ``NEXT_SEQ`` (one
    round trip fewer); it must come from the same transaction.
    """
    with tracer.start_as_current_span("checkin.outbox.write") as span:
        if seq is None:
            seq = int(await connection.fetchval(NEXT_SEQ, org_id))
        event = build(seq)
        span.set_attributes(
            {
                "checkin.org_id": org_id,
                "checkin.seq": seq,
                "checkin.event_type": event.event_type,
            }
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        await connection.execute(
            _INSERT,
            org_id,
            seq,
            event.event_type,
            event.to_json().decode(),
            json.dumps(carrier),
        )
    logger.debug(
        "event stored org_id=%s seq=%s event_type=%s", org_id, seq, event.event_type
    )
    return event
