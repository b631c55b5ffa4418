"""The check-in API's Prometheus metrics (served at ``/metrics``)."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge

logger = logging.getLogger(__name__)

WRITES = Counter(
    "checkin_writes_total", "Committed writes, by the event type they emitted", ["type"]
)
OUTBOX_PENDING = Gauge(
    "checkin_outbox_pending", "Outbox events not yet confirmed by the broker"
)
OUTBOX_LAG = Gauge(
    "checkin_outbox_lag_seconds", "Age of the oldest outbox event not yet published"
)
RELAY_PUBLISHED = Counter(
    "checkin_relay_published_total", "Outbox events published and confirmed"
)
