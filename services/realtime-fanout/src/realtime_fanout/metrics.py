"""What the fanout counts: Prometheus series on ``/metrics`` and the JSON summary.

``FanoutStats`` is the one place the hub and the HTTP edge report to. It keeps the
plain totals the JSON endpoint shows (the shape of the original design note) and
updates the Prometheus series of the process-wide default registry, which
``service_kit.web`` serves on ``/metrics``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

logger = logging.getLogger(__name__)

WAITERS = Gauge("fanout_waiters", "Long-polls waiting for an event.")
POLL_DURATION = Histogram(
    "fanout_poll_duration_seconds",
    "Time from a poll's arrival to its answer.",
    ["outcome"],
    buckets=(0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 20, 30),
)
DELIVERY_LATENCY = Histogram(
    "fanout_delivery_latency_seconds",
    "Time from an event's timestamp to the answer that carries it.",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS = Counter("fanout_events_total", "Events consumed into the buffers.")
RESYNCS = Counter(
    "fanout_resync_total", "Polls answered with resync, by reason.", ["reason"]
)
DUPLICATES = Counter("fanout_duplicates_total", "Duplicate or late events dropped.")
POLLS_REJECTED = Counter(
    "fanout_polls_rejected_total",
    "Polls refused before or during the hold, by reason.",
    ["reason"],
)
REJECTION_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    429: "waiter_cap",
    503: "shutting_down",
}

ACTIVE_WINDOW_S = 300.0

_POLL_DURATION_BY_OUTCOME = {
    outcome: POLL_DURATION.labels(outcome=outcome)
    for outcome in ("events", "timeout", "resync")
}
"""The series of the answered outcomes, looked up once rather than per poll."""


class Timestamped(Protocol):
    """An answered event: when it happened (epoch seconds)."""

    @property
    def timestamp(self) -> float: ...


@dataclass
class FanoutStats:
    """Totals since start-up, mirrored into the Prometheus series."""

    published_total: int = 0
    delivered_total: int = 0
    dropped_total: int = 0
    waiters: int = 0
    org_activity: dict[int, float] = field(default_factory=dict)

    def event_published(self, org_id: int) -> None:
        self.published_total += 1
        self.org_activity[org_id] = time.monotonic()
        EVENTS.inc()

    def duplicate_dropped(self) -> None:
        self.dropped_total += 1
        DUPLICATES.inc()

    def resync(self, reason: str) -> None:
        RESYNCS.labels(reason=reason).inc()

    def poll_rejected(self, status: int) -> None:
        """Count a poll refused with an HTTP error status (429 cap, 503, 400, ...)."""
        POLLS_REJECTED.labels(reason=REJECTION_REASONS.get(status, str(status))).inc()

    def waiters_changed(self, delta: int) -> None:
        self.waiters += delta
        WAITERS.inc(delta)

    def poll_answered(
        self,
        org_id: int,
        outcome: str,
        duration_s: float,
        events: Sequence[Timestamped],
    ) -> None:
        """Count one answered poll and the events it delivered."""
        self.org_activity[org_id] = time.monotonic()
        duration = _POLL_DURATION_BY_OUTCOME.get(outcome)
        if duration is None:
            duration = POLL_DURATION.labels(outcome=outcome)
        duration.observe(duration_s)
        if events:
            now = time.time()
            self.delivered_total += len(events)
            for event in events:
                DELIVERY_LATENCY.observe(max(now - event.timestamp, 0.0))

    def forget_inactive(self) -> None:
        """Drop org activity older than the active window (part of the sweep)."""
        cutoff = time.monotonic() - ACTIVE_WINDOW_S
        stale = [org for org, seen in self.org_activity.items() if seen < cutoff]
        for org_id in stale:
            del self.org_activity[org_id]

    def summary(self, orgs_total: int, buffered_events: int) -> dict[str, Any]:
        """The JSON summary: global counts only, never another org's id."""
        cutoff = time.monotonic() - ACTIVE_WINDOW_S
        active = sum(1 for seen in self.org_activity.values() if seen >= cutoff)
        return {
            "orgs": {"total": orgs_total, "active_last_5m": active},
            "events": {
                "published_total": self.published_total,
                "delivered_total": self.delivered_total,
                "dropped_total": self.dropped_total,
            },
            "buffers": {
                "total_size": buffered_events,
                "avg_per_org": round(buffered_events / orgs_total, 2)
                if orgs_total
                else 0.0,
            },
            "subscribers": {"active_count": self.waiters},
        }
