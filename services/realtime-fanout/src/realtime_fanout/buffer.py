"""Per-org ordered event buffers: what the fanout can prove about each org's events.

The correctness model, per org:

- Events are kept in ``seq`` order. ``floor`` is the highest seq below which the
  buffer no longer holds events (they were trimmed by TTL or size, or never seen since
  the fanout started). The buffer holds every event of ``(floor, head]``: ``head`` is
  the end of the contiguous run after ``floor``.
- An event that arrives after a hole (``seq > head + 1``) waits as *pending* until the
  hole fills. A hole still open after ``GAP_GRACE_S`` is declared lost: ``floor`` and
  ``head`` jump over it, the held events are dropped (nobody below the hole can be
  served without it), and the pending run becomes contiguous.
- Duplicates (a seq at or below ``head``, a pending seq, or an ``eventId`` already
  held) are dropped and counted; so is an event that arrives after its hole was
  declared lost.
- An org is *known* once the fanout saw one of its events (``floor = seq - 1``) or
  learned its position from the API (``floor = head = position``).

A cursor ``c`` sent by a client is judged against that: ``c < floor`` cannot be
served (resync), ``floor <= c <= head`` is served from the buffer, ``c > head`` is
ahead of what the fanout has consumed.

Trimming (TTL, size), lost holes and idle eviction run from one periodic ``sweep``,
never per event. Time comes from an injectable monotonic clock.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from opentelemetry.trace import SpanContext

from realtime_fanout.intake import IncomingEvent

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
"""A monotonic clock in seconds (``time.monotonic`` in production)."""


@dataclass(frozen=True, slots=True)
class BufferedEvent:
    """One event as the buffer keeps it: its scope and its JSON as it was consumed.

    ``trace_context`` is the span the event was published (or consumed) in, so that
    the poll which delivers it can continue the trace of the write that produced it.
    """

    seq: int
    event_id: str
    property_id: int
    timestamp: float
    arrived_at: float
    body: bytes
    trace_context: SpanContext | None = None

    @classmethod
    def of(cls, event: IncomingEvent, arrived_at: float) -> BufferedEvent:
        """Wrap a consumed event that arrived at ``arrived_at`` (monotonic seconds)."""
        return cls(
            seq=event.seq,
            event_id=event.event_id,
            property_id=event.property_id,
            timestamp=event.timestamp,
            arrived_at=arrived_at,
            body=event.body,
            trace_context=event.trace_context,
        )


@dataclass(frozen=True, slots=True)
class Insertion:
    """What one arriving event did to its org's buffer."""

    appended: list[BufferedEvent]
    duplicate: bool = False


@dataclass(slots=True)
class OrgBuffer:
    """The buffer of one org: the contiguous run ``(floor, head]`` and pending events.

    ``events`` holds exactly seqs ``floor + 1 .. head`` in order; ``pending`` holds
    events after a hole, keyed by seq; ``hole_since`` is when the current hole opened.
    """

    org_id: int
    floor: int
    head: int
    last_activity: float
    events: deque[BufferedEvent] = field(default_factory=deque)
    pending: dict[int, BufferedEvent] = field(default_factory=dict)
    event_ids: set[str] = field(default_factory=set)
    hole_since: float | None = None

    def insert(self, event: BufferedEvent) -> Insertion:
        """Put an event in place; return the events that became contiguous."""
        if (
            event.seq <= self.head
            or event.seq in self.pending
            or event.event_id in self.event_ids
        ):
            return Insertion(appended=[], duplicate=True)

        self.last_activity = event.arrived_at
        self.event_ids.add(event.event_id)
        if event.seq > self.head + 1:
            self.pending[event.seq] = event
            if self.hole_since is None:
                self.hole_since = event.arrived_at
            return Insertion(appended=[])
        self.events.append(event)
        self.head = event.seq
        return Insertion(appended=[event, *self._drain_pending(event.arrived_at)])

    def _drain_pending(self, now: float) -> list[BufferedEvent]:
        drained = []
        while (following := self.pending.pop(self.head + 1, None)) is not None:
            self.events.append(following)
            self.head = following.seq
            drained.append(following)
        self.hole_since = now if self.pending else None
        return drained

    def hole_expired(self, now: float, grace_s: float) -> bool:
        """True when a hole has been open for longer than the grace time."""
        return self.hole_since is not None and now - self.hole_since >= grace_s

    def declare_hole_lost(self, now: float) -> list[BufferedEvent]:
        """Jump ``floor`` over the open hole; return the now contiguous events.

        Events before the hole are dropped: no cursor below the hole can be served
        without the missing events, so keeping them would only delay the resync.
        """
        if not self.pending:
            return []
        first = min(self.pending)
        for dropped in self.events:
            self.event_ids.discard(dropped.event_id)
        self.events.clear()
        self.floor = self.head = first - 1
        logger.warning(
            "hole declared lost org_id=%s floor=%s pending=%s",
            self.org_id,
            self.floor,
            len(self.pending),
        )
        return self._drain_pending(now)

    def trim(self, now: float, ttl_s: float, max_events: int) -> int:
        """Drop events older than the TTL or beyond the size cap; return how many."""
        trimmed = 0
        while self.events and (
            len(self.events) > max_events or now - self.events[0].arrived_at >= ttl_s
        ):
            oldest = self.events.popleft()
            self.event_ids.discard(oldest.event_id)
            self.floor = oldest.seq
            trimmed += 1
        return trimmed

    def after(self, cursor: int) -> Iterator[BufferedEvent]:
        """The held events with seq in ``(cursor, head]``, for ``floor <= cursor``."""
        start = max(cursor - self.floor, 0)
        return itertools.islice(self.events, start, None)

    @property
    def size(self) -> int:
        """Events held, contiguous and pending."""
        return len(self.events) + len(self.pending)


@dataclass(frozen=True, slots=True)
class BufferLimits:
    """How long and how much the buffers keep, from the service settings."""

    max_events: int = 200
    ttl_s: float = 25.0
    idle_evict_s: float = 120.0
    gap_grace_s: float = 1.0


class Buffers:
    """Every org's buffer, with the sweep that trims, closes holes and evicts."""

    def __init__(self, limits: BufferLimits, clock: Clock) -> None:
        self.limits = limits
        self.clock = clock
        self.orgs: dict[int, OrgBuffer] = {}
        self._with_holes: set[int] = set()
        self._oversize: set[int] = set()
        self._arrivals: deque[tuple[float, int]] = deque()

    def get(self, org_id: int) -> OrgBuffer | None:
        """The buffer of a known org, or ``None`` when the org is unknown."""
        return self.orgs.get(org_id)

    def insert(self, event: IncomingEvent) -> tuple[OrgBuffer, Insertion]:
        """Put one consumed event in its org's buffer (the org becomes known)."""
        now = self.clock()
        buffered = BufferedEvent.of(event, now)
        buffer = self.orgs.get(event.org_id)
        if buffer is None:
            buffer = OrgBuffer(
                org_id=event.org_id,
                floor=event.seq - 1,
                head=event.seq - 1,
                last_activity=now,
            )
            self.orgs[event.org_id] = buffer
        insertion = buffer.insert(buffered)
        if not insertion.duplicate:
            self._arrivals.append((now, event.org_id))
        if buffer.pending:
            self._with_holes.add(event.org_id)
        else:
            self._with_holes.discard(event.org_id)
        if len(buffer.events) > self.limits.max_events:
            self._oversize.add(event.org_id)
        # A burst far above the cap between two sweeps must not grow memory without
        # bound; the sweep keeps the exact cap.
        if buffer.size > 2 * self.limits.max_events:
            buffer.trim(now, self.limits.ttl_s, self.limits.max_events)
        return buffer, insertion

    def learn_position(self, org_id: int, position: int) -> OrgBuffer:
        """Make an unknown org known at ``position``; a known org is left as it is."""
        buffer = self.orgs.get(org_id)
        if buffer is None:
            buffer = OrgBuffer(
                org_id=org_id,
                floor=position,
                head=position,
                last_activity=self.clock(),
            )
            self.orgs[org_id] = buffer
        return buffer

    def touch(self, org_id: int) -> None:
        """Note activity (a poll) so the org is not evicted while it is in use."""
        buffer = self.orgs.get(org_id)
        if buffer is not None:
            buffer.last_activity = self.clock()

    def expire_holes(self) -> list[tuple[OrgBuffer, list[BufferedEvent]]]:
        """Declare lost every hole older than the grace time (part of the sweep)."""
        now = self.clock()
        closed = []
        for org_id in list(self._with_holes):
            buffer = self.orgs.get(org_id)
            if buffer is None or not buffer.pending:
                self._with_holes.discard(org_id)
                continue
            if buffer.hole_expired(now, self.limits.gap_grace_s):
                closed.append((buffer, buffer.declare_hole_lost(now)))
                if not buffer.pending:
                    self._with_holes.discard(org_id)
        return closed

    def trim_expired(self) -> int:
        """Trim the buffers that hold events past the TTL or the size cap.

        Only orgs with an arrival older than the TTL or with more events than the cap
        are visited, so an idle sweep costs nothing however many orgs are known.
        """
        now = self.clock()
        trimmed = 0
        visited: set[int] = set()
        while self._arrivals and now - self._arrivals[0][0] >= self.limits.ttl_s:
            _, org_id = self._arrivals.popleft()
            buffer = self.orgs.get(org_id)
            if buffer is not None and org_id not in visited:
                visited.add(org_id)
                trimmed += buffer.trim(now, self.limits.ttl_s, self.limits.max_events)
        for org_id in self._oversize:
            buffer = self.orgs.get(org_id)
            if buffer is not None:
                trimmed += buffer.trim(now, self.limits.ttl_s, self.limits.max_events)
        self._oversize.clear()
        return trimmed

    def evict_idle(self, has_waiters: Callable[[int], bool]) -> list[int]:
        """Forget orgs with nothing held, no waiters and no activity for a while."""
        now = self.clock()
        idle = [
            org_id
            for org_id, buffer in self.orgs.items()
            if buffer.size == 0
            and now - buffer.last_activity >= self.limits.idle_evict_s
            and not has_waiters(org_id)
        ]
        for org_id in idle:
            del self.orgs[org_id]
        return idle

    def forget_all(self) -> None:
        """Forget every org: after a lost broker connection nothing is provable."""
        self.orgs.clear()
        self._with_holes.clear()
        self._oversize.clear()
        self._arrivals.clear()

    @property
    def total_size(self) -> int:
        """Events held over every org."""
        return sum(buffer.size for buffer in self.orgs.values())
