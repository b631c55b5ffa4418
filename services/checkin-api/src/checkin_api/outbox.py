"""The transactional outbox: the org's next ``seq`` and the event, in the write's
transaction.

``append_event`` runs inside the transaction that changes a guest check-in. The
upsert on ``org_sequences`` both allocates the next number and locks the org's row
until commit, so an org's writes take their numbers one after the other and commit
in that order: the relay, reading committed rows by id, sees seq 1, 2, 3 … without
holes. An insert on ``outbox`` notifies the relay (a trigger on the table).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from checkin_events import GuestEvent

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "outbox_inserted"

_NEXT_SEQ = """
INSERT INTO org_sequences (org_id, last_seq) VALUES ($1, 1)
ON CONFLICT (org_id) DO UPDATE SET last_seq = org_sequences.last_seq + 1
RETURNING last_seq
"""

_INSERT = """
INSERT INTO outbox (org_id, seq, event_type, payload) VALUES ($1, $2, $3, $4::jsonb)
"""


async def append_event(
    connection: Any, org_id: int, build: Callable[[int], GuestEvent]
) -> GuestEvent:
    """Take the org's next seq, build the event with it and store it in the outbox.

    ``connection`` must be inside the transaction of the change the event describes.
    """
    seq = int(await connection.fetchval(_NEXT_SEQ, org_id))
    event = build(seq)
    await connection.execute(
        _INSERT, org_id, seq, event.event_type, event.to_json().decode()
    )
    logger.debug(
        "event stored org_id=%s seq=%s event_type=%s", org_id, seq, event.event_type
    )
    return event
