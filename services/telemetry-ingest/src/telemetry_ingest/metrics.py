"""Prometheus metrics of telemetry-ingest, served by the shared ``/metrics`` route.

Accepted events are counted per event type, refused ones per reason (a refused batch
counts each of its events when it could be parsed, else one), and the queue depth
shows how much accepted telemetry still waits for the database.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge

logger = logging.getLogger(__name__)

EVENTS_ACCEPTED = Counter(
    "telemetry_events_accepted", "Client events accepted for storage", ["type"]
)
EVENTS_REJECTED = Counter(
    "telemetry_events_rejected", "Client events or requests refused", ["reason"]
)
EVENTS_WRITTEN = Counter(
    "telemetry_events_written", "Client events stored in PostgreSQL"
)
WRITE_FAILURES = Counter(
    "telemetry_write_failures", "Batch writes that the database refused or missed"
)
EVENTS_DROPPED = Counter(
    "telemetry_events_dropped",
    "Accepted events PostgreSQL refused as data (never retried)",
)
QUEUE_DEPTH = Gauge("telemetry_queue_depth", "Accepted events waiting to be written")
