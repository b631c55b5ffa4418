"""What an org's telemetry says: counts, fast-empty rate, takeover latency.

``fastEmptyRate`` is the share of reporting sessions that saw at least one fast empty
answer (a value near 1 means clients spin on empty polls); ``takeoverLatencyMs`` is
p50/p95/p99 of ``latencyMs`` over ``leader_takeover`` events. Only the caller's own
org is ever read.
"""

from __future__ import annotations

import logging
from datetime import datetime

from telemetry_ingest.models import EventType, Summary
from telemetry_ingest.store import EventStore

logger = logging.getLogger(__name__)


async def summarise_org(store: EventStore, org_id: int, since: datetime) -> Summary:
    """The summary of one org's events whose time is at or after ``since``."""
    totals = await store.org_totals(org_id, since)
    counts = {kind.value: totals.counts.get(kind.value, 0) for kind in EventType}
    rate = (
        round(totals.fast_empty_sessions / totals.sessions, 4)
        if totals.sessions
        else None
    )
    p50, p95, p99 = (
        None if value is None else round(value, 1)
        for value in totals.takeover_percentiles_ms
    )
    return Summary(
        org_id=org_id,
        since=since,
        counts=counts,
        sessions=totals.sessions,
        fast_empty_rate=rate,
        takeover_latency_ms={"p50": p50, "p95": p95, "p99": p99},
    )
