"""The batch writer: accepted events wait in a bounded queue, off the request path.

A request only appends its events to the queue (or is refused); a background task
writes them in batches every ``FLUSH_INTERVAL_S`` or as soon as a full batch waits.
Rows leave the queue only after the database took them, so an accepted event is
never dropped while the database is away: the writer retries, and new batches are
refused with 503 (``WriterUnavailable``) while the queue is full or the last write
failed, and while the database has not answered since start (nothing is accepted
that could not be stored). On shutdown ``drain`` writes whatever is still queued.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import math
import time

from telemetry_ingest.metrics import (
    EVENTS_DROPPED,
    EVENTS_WRITTEN,
    QUEUE_DEPTH,
    WRITE_FAILURES,
)
from telemetry_ingest.store import (
    DATABASE_ERRORS,
    REFUSED_ROW_ERRORS,
    EventRow,
    EventStore,
)

logger = logging.getLogger(__name__)

RETRY_DELAY_S = 0.5
FAILING_RETRY_AFTER_S = 5


class WriterUnavailable(Exception):
    """The writer cannot take more events now; the client should retry later."""

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class EventWriter:
    """Holds accepted events until they are stored, and stores them in batches."""

    def __init__(
        self,
        store: EventStore,
        queue_max: int,
        flush_interval_s: float,
        flush_batch_max: int,
    ) -> None:
        self._store = store
        self._queue: collections.deque[EventRow] = collections.deque()
        self._queue_max = queue_max
        self._flush_interval_s = flush_interval_s
        self._flush_batch_max = flush_batch_max
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._failing = False
        self._lock = asyncio.Lock()

    @property
    def depth(self) -> int:
        """How many accepted events wait for the database."""
        return len(self._queue)

    @property
    def failing(self) -> bool:
        """True when the last write to the database failed."""
        return self._failing

    def accept(self, rows: list[EventRow]) -> None:
        """Queue the rows for writing, or raise ``WriterUnavailable`` (all or none)."""
        if self._stopping:
            raise WriterUnavailable("shutting down", FAILING_RETRY_AFTER_S)
        if not self._store.reached:
            raise WriterUnavailable(
                "the database has not answered since the service started",
                FAILING_RETRY_AFTER_S,
            )
        if self._failing:
            raise WriterUnavailable("database unavailable", FAILING_RETRY_AFTER_S)
        if len(self._queue) + len(rows) > self._queue_max:
            retry_after = max(1, math.ceil(self._flush_interval_s))
            raise WriterUnavailable("queue full", retry_after)
        self._queue.extend(rows)
        QUEUE_DEPTH.set(len(self._queue))
        if len(self._queue) >= self._flush_batch_max:
            self._wakeup.set()

    async def run(self) -> None:
        """Write batches until ``stop``; the background task of the service."""
        while not self._stopping:
            delay = RETRY_DELAY_S if self._failing else self._flush_interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=delay)
            self._wakeup.clear()
            if not self._stopping:
                await self.flush()

    def stop(self) -> None:
        """Refuse new events and let ``run`` return after its current write."""
        self._stopping = True
        self._wakeup.set()

    async def flush(self) -> bool:
        """Write everything queued now; False when the database failed a batch."""
        async with self._lock:
            while self._queue:
                batch = list(itertools.islice(self._queue, self._flush_batch_max))
                done = await self._write(batch)
                for _ in range(done):
                    self._queue.popleft()
                QUEUE_DEPTH.set(len(self._queue))
                if done < len(batch):
                    return False
            return True

    async def drain(self, timeout_s: float) -> int:
        """Write what is left, retrying until the deadline; returns rows left."""
        deadline = time.monotonic() + timeout_s
        while not await self.flush():
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(RETRY_DELAY_S)
        if self._queue:
            logger.error("drain incomplete events_left=%d", len(self._queue))
        else:
            logger.info("drain complete")
        return len(self._queue)

    async def _write(self, batch: list[EventRow]) -> int:
        """Store the batch; returns how many rows from its front are done with."""
        started = time.monotonic()
        try:
            await self._store.insert(batch)
        except REFUSED_ROW_ERRORS as exc:
            logger.warning(
                "batch refused as data events=%d error=%s; writing one by one",
                len(batch),
                type(exc).__name__,
            )
            return await self._write_one_by_one(batch)
        except DATABASE_ERRORS as exc:
            WRITE_FAILURES.inc()
            if not self._failing:
                logger.warning(
                    "write failed events=%d queued=%d error=%s",
                    len(batch),
                    len(self._queue),
                    type(exc).__name__,
                )
            self._failing = True
            return 0
        if self._failing:
            logger.info("write recovered queued=%d", len(self._queue))
        self._failing = False
        EVENTS_WRITTEN.inc(len(batch))
        logger.debug(
            "batch written events=%d duration_ms=%.1f",
            len(batch),
            (time.monotonic() - started) * 1000,
        )
        return len(batch)

    async def _write_one_by_one(self, batch: list[EventRow]) -> int:
        """Store each row alone and drop those PostgreSQL refuses as data.

        One row that can never be stored must not block the queue behind it; such
        a row passed validation, so it is a bug to fix there, hence the error line.
        """
        self._failing = False
        for done, row in enumerate(batch):
            try:
                await self._store.insert([row])
            except REFUSED_ROW_ERRORS as exc:
                EVENTS_DROPPED.inc()
                logger.error(
                    "event dropped org=%d type=%s error=%s",
                    row.org_id,
                    row.type,
                    type(exc).__name__,
                )
            except DATABASE_ERRORS:
                self._failing = True
                return done
            else:
                EVENTS_WRITTEN.inc()
        return len(batch)
