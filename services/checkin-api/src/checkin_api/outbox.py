"""The transactional outbox: the org's next ``seq`` and the event, in the write's
transaction.

``append_event`` runs inside the transaction that changes a guest check-in. The
upsert on ``org_sequences`` both allocates the next number and locks the org's row
until commit, so an org's writes take their numbers one after the other and commit
in that order: the relay, reading committed rows by id, sees seq 1, 2, 3 … without
holes. An insert on ``outbox`` notifies the relay (a trigger on the table).
``insert_with_event`` does the same for a create in one statement (its own
transaction): the new row, the seq and the outbox row in one round trip.

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

_NEXT_SEQ = """
INSERT INTO org_sequences (org_id, last_seq) VALUES ($1, 1)
ON CONFLICT (org_id) DO UPDATE SET last_seq = org_sequences.last_seq + 1
RETURNING last_seq
"""

_INSERT_WITH_EVENT = """
WITH next AS ({next_seq}),
change AS ({insert}),
stored AS (
    INSERT INTO outbox (org_id, seq, event_type, payload, trace_context)
    SELECT $1, next.last_seq, ${event_type},
           ${payload}::jsonb
               || jsonb_build_object('seq', next.last_seq, 'entityId', change.id),
           ${trace_context}::jsonb
    FROM next, change
)
SELECT change.*, next.last_seq AS seq FROM change, next
"""

_INSERT = """
INSERT INTO outbox (org_id, seq, event_type, payload, trace_context)
VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)
"""


async def append_event(
    connection: Any, org_id: int, build: Callable[[int], GuestEvent]
) -> GuestEvent:
    """Take the org's next seq, build the event with it and store it in the outbox.

    ``connection`` must be inside the transaction of the change the event describes.
    """
    with tracer.start_as_current_span("checkin.outbox.write") as span:
        seq = int(await connection.fetchval(_NEXT_SEQ, org_id))
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


async def insert_with_event(
    connection: Any, insert: str, arguments: list[Any], draft: GuestEvent
) -> Any:
    """Insert a row, take the org's next seq and store the event, in ONE statement.

    A single statement is its own transaction, so a create costs one round trip
    instead of BEGIN, the insert, the seq, the outbox row and COMMIT. ``insert`` is
    an ``INSERT … RETURNING`` whose ``$1`` is the org and whose result has the new
    row's ``id``; ``arguments`` are its parameters. ``draft`` is the event with any
    ``seq`` and ``entity_id``: the database puts the real ones into the stored
    payload. Returns the inserted row with the event's ``seq`` added.
    """
    org_id = arguments[0]
    with tracer.start_as_current_span("checkin.outbox.write") as span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        payload = draft.model_dump_json(by_alias=True, exclude={"seq", "entity_id"})
        first = len(arguments) + 1
        row = await connection.fetchrow(
            _INSERT_WITH_EVENT.format(
                next_seq=_NEXT_SEQ,
                insert=insert,
                event_type=first,
                payload=first + 1,
                trace_context=first + 2,
            ),
            *arguments,
            draft.event_type,
            payload,
            json.dumps(carrier),
        )
        span.set_attributes(
            {
                "checkin.org_id": org_id,
                "checkin.seq": row["seq"],
                "checkin.event_type": draft.event_type,
            }
        )
    logger.debug(
        "event stored org_id=%s seq=%s event_type=%s",
        org_id,
        row["seq"],
        draft.event_type,
    )
    return row
