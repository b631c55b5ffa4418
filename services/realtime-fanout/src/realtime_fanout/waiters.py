"""Waiting polls and waking them: the hub between consumed events and long-polls.

A poll with cursor ``c`` (``None`` means "from now", i.e. ``head``) is judged against
its org's buffer (see ``buffer``):

- ``c < floor``: the events after ``c`` are gone; answer ``resync`` at once.
- ``floor <= c < head``: answer the visible events of ``(c, head]`` at once; when the
  filter hides all of them, move the cursor to ``head`` and wait instead (an empty
  answer at once would make clients spin).
- ``c == head``: wait.
- ``c > head``: the client is ahead of what the fanout consumed; the edge checks the
  cursor against the API (``CursorAhead``) and then waits with ``wait_ahead``.

A waiter is one asyncio future. Waiters are indexed per org and per property, plus
the "all properties" waiters, so an event only touches waiters that can match it.
There is no timer per event or per waiter: the edge gives each waiter a deadline
(``hold``), kept in one heap, and the periodic sweep ends the holds that are due
(``end_holds``) by answering their future with ``None``. Many waiters with the same
cursor and filter share one ``Answer``, whose bytes are serialised once.

While a waiter is registered it watches every contiguous event of its org: a visible
one wakes it, a hidden one is skipped. So a waiter whose hold ends is answered with
``head`` as its next cursor, even if events it could not see were trimmed meanwhile.
A hole declared lost answers ``resync`` to every waiter whose cursor it left behind.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
from checkin_events import GuestEvent

from realtime_fanout.buffer import BufferedEvent, Buffers, Insertion, OrgBuffer
from realtime_fanout.intake import IncomingEvent
from realtime_fanout.metrics import FanoutStats

logger = logging.getLogger(__name__)

PropertyFilter = frozenset[int] | None
"""The properties a poll may receive events of; ``None`` means every property."""


class WaiterCapReached(Exception):
    """The org already has as many waiting polls as the fanout allows."""


class ShuttingDown(Exception):
    """The fanout is shutting down and takes no new waiters."""


class UnknownOrg(Exception):
    """The fanout has no position for the org yet; learn it first."""


class Answer:
    """What one poll is answered: events, the next cursor, and whether to resync."""

    __slots__ = ("_body", "events", "last_event_id", "resync", "traced")

    def __init__(
        self,
        events: Iterable[BufferedEvent],
        last_event_id: int,
        resync: bool = False,
    ) -> None:
        self.events = tuple(events)
        self.last_event_id = last_event_id
        self.resync = resync
        self.traced = any(event.trace_context is not None for event in self.events)
        """True when an event of the answer was written inside a trace."""
        self._body: bytes | None = None

    def body(self) -> bytes:
        """The JSON answer, built once and shared by every waiter it goes to."""
        if self._body is None:
            tail = orjson.dumps(
                {"lastEventId": str(self.last_event_id), "resync": self.resync}
            )
            events = b",".join(event.body for event in self.events)
            self._body = b'{"events":[' + events + b"]," + tail[1:]
        return self._body


@dataclass(frozen=True, slots=True)
class CursorAhead:
    """The cursor is past the org's ``head``: the edge must check it with the API."""

    head: int


@dataclass(eq=False, slots=True)
class Waiter:
    """One held poll: its org, cursor and filter, and the future that answers it.

    The future's result is the answer, or ``None`` when the hold ended (``deadline``,
    monotonic seconds) before a visible event; ``ended_at`` is then the cursor the
    poll is answered with, fixed when the hold ended.
    """

    org_id: int
    cursor: int
    properties: PropertyFilter
    future: asyncio.Future[Answer | None]
    deadline: float = math.inf
    ended_at: int | None = None

    def __lt__(self, other: Waiter) -> bool:
        return self.deadline < other.deadline


@dataclass(slots=True)
class OrgWaiters:
    """The waiters of one org, indexed by property and "all properties"."""

    everything: set[Waiter] = field(default_factory=set)
    by_property: dict[int, set[Waiter]] = field(default_factory=dict)
    count: int = 0

    def add(self, waiter: Waiter) -> None:
        if waiter.properties is None:
            self.everything.add(waiter)
        else:
            for property_id in waiter.properties:
                self.by_property.setdefault(property_id, set()).add(waiter)
        self.count += 1

    def discard(self, waiter: Waiter) -> bool:
        """Remove a waiter; ``False`` when it was not registered (any more)."""
        if waiter.properties is None:
            if waiter not in self.everything:
                return False
            self.everything.remove(waiter)
        else:
            found = False
            for property_id in waiter.properties:
                waiting = self.by_property.get(property_id)
                if waiting is not None and waiter in waiting:
                    found = True
                    waiting.remove(waiter)
                    if not waiting:
                        del self.by_property[property_id]
            if not found:
                return False
        self.count -= 1
        return True

    def touched_by(self, events: list[BufferedEvent]) -> set[Waiter]:
        """The waiters that may see at least one of the events."""
        touched = set(self.everything)
        for property_id in {event.property_id for event in events}:
            touched.update(self.by_property.get(property_id, ()))
        return touched

    def all(self) -> set[Waiter]:
        every = set(self.everything)
        for waiting in self.by_property.values():
            every.update(waiting)
        return every


def _visible(
    events: Iterable[BufferedEvent], properties: PropertyFilter
) -> list[BufferedEvent]:
    if properties is None:
        return list(events)
    return [event for event in events if event.property_id in properties]


class Hub:
    """Buffers plus waiters: judges polls, registers waiters, wakes them on events."""

    def __init__(
        self, buffers: Buffers, max_waiters_per_org: int, stats: FanoutStats
    ) -> None:
        self.buffers = buffers
        self.max_waiters_per_org = max_waiters_per_org
        self.stats = stats
        self.waiters: dict[int, OrgWaiters] = {}
        self.shutting_down = False
        self._holds: list[Waiter] = []
        self._awaiting_first: dict[int, list[asyncio.Future[None]]] = {}

    def is_known(self, org_id: int) -> bool:
        """True when the fanout knows where the org's events stand."""
        return self.buffers.get(org_id) is not None

    def learn_position(self, org_id: int, position: int) -> None:
        """Set an unknown org's floor and head to the position the API reported."""
        self.buffers.learn_position(org_id, position)

    async def first_event(self, org_id: int, timeout_s: float) -> None:
        """Wait, at most ``timeout_s``, until the fanout has seen an event of the org.

        Returns at once for a known org. Woken by ``publish``, not by polling.
        """
        if self.is_known(org_id):
            return
        seen = asyncio.get_running_loop().create_future()
        awaiting = self._awaiting_first.setdefault(org_id, [])
        awaiting.append(seen)
        try:
            await asyncio.wait_for(asyncio.shield(seen), timeout_s)
        except TimeoutError:
            pass
        finally:
            if not seen.done():
                awaiting.remove(seen)
                if not awaiting:
                    self._awaiting_first.pop(org_id, None)

    def head(self, org_id: int) -> int | None:
        """The org's head, or ``None`` when it is unknown."""
        buffer = self.buffers.get(org_id)
        return None if buffer is None else buffer.head

    def poll(
        self, org_id: int, cursor: int | None, properties: PropertyFilter
    ) -> Answer | Waiter | CursorAhead:
        """Judge a poll: an answer at once, a registered waiter, or a cursor ahead."""
        buffer = self.buffers.get(org_id)
        if buffer is None:
            raise UnknownOrg(org_id)
        self.buffers.touch(org_id)
        start = buffer.head if cursor is None else cursor
        if start < buffer.floor:
            self.stats.resync("cursor_behind")
            return Answer([], buffer.head, resync=True)
        if start > buffer.head:
            return CursorAhead(buffer.head)
        visible = _visible(buffer.after(start), properties)
        if visible:
            return Answer(visible, buffer.head)
        return self._register(org_id, buffer.head, properties)

    def wait_ahead(
        self, org_id: int, cursor: int, properties: PropertyFilter
    ) -> Answer | Waiter:
        """Wait with a cursor the API confirmed; events up to it are skipped."""
        buffer = self.buffers.get(org_id)
        if buffer is None:
            raise UnknownOrg(org_id)
        if cursor <= buffer.head:
            judged = self.poll(org_id, cursor, properties)
            assert not isinstance(judged, CursorAhead)
            return judged
        return self._register(org_id, cursor, properties)

    def _register(self, org_id: int, cursor: int, properties: PropertyFilter) -> Waiter:
        if self.shutting_down:
            raise ShuttingDown
        index = self.waiters.setdefault(org_id, OrgWaiters())
        if index.count >= self.max_waiters_per_org:
            raise WaiterCapReached(org_id)
        waiter = Waiter(
            org_id, cursor, properties, asyncio.get_running_loop().create_future()
        )
        index.add(waiter)
        self.stats.waiters_changed(+1)
        return waiter

    def remove(self, waiter: Waiter) -> None:
        """Forget a waiter (answered, timed out, or its client went away)."""
        index = self.waiters.get(waiter.org_id)
        if index is None or not index.discard(waiter):
            return
        self.stats.waiters_changed(-1)
        if index.count == 0:
            del self.waiters[waiter.org_id]

    def has_waiters(self, org_id: int) -> bool:
        """True when at least one poll of the org is waiting."""
        return org_id in self.waiters

    def waiter_count(self, org_id: int | None = None) -> int:
        """Waiting polls of one org, or of every org."""
        if org_id is not None:
            index = self.waiters.get(org_id)
            return 0 if index is None else index.count
        return sum(index.count for index in self.waiters.values())

    def hold(self, waiter: Waiter, deadline: float) -> None:
        """End the waiter's hold at ``deadline`` (monotonic seconds) at the latest."""
        waiter.deadline = deadline
        heapq.heappush(self._holds, waiter)

    def end_holds(self, now: float) -> int:
        """Answer ``None`` to every waiter whose deadline passed; return how many.

        Waiters answered or gone before their deadline are dropped from the heap here.
        """
        ended = 0
        while self._holds and self._holds[0].deadline <= now:
            waiter = heapq.heappop(self._holds)
            if not waiter.future.done():
                self.remove(waiter)
                waiter.ended_at = self._passed(waiter)
                waiter.future.set_result(None)
                ended += 1
        return ended

    def hold_ended(self, waiter: Waiter) -> Answer:
        """The answer of a waiter whose hold ended without a visible event.

        Its cursor is the one fixed when the hold ended: by the time the poll's
        handler runs, a lost hole may have moved the buffer past events the poll
        never saw, or a later event may have been consumed.
        """
        self.remove(waiter)
        if waiter.future.done() and (answer := waiter.future.result()) is not None:
            return answer
        ended_at = waiter.ended_at
        return Answer([], self._passed(waiter) if ended_at is None else ended_at)

    def _passed(self, waiter: Waiter) -> int:
        """The cursor past the events a registered waiter may not see, up to head.

        While a waiter is registered, every event in ``(cursor, head]`` is hidden from
        it (a visible one would have answered it), so its cursor may move to head.
        """
        head = self.head(waiter.org_id)
        return waiter.cursor if head is None else max(waiter.cursor, head)

    def publish(self, event: IncomingEvent | GuestEvent) -> Insertion:
        """Take one consumed event: buffer it and wake the waiters it completes.

        A parsed model (tests, tools) is read into an ``IncomingEvent`` first.
        """
        if not isinstance(event, IncomingEvent):
            event = IncomingEvent.of(event)
        buffer, insertion = self.buffers.insert(event)
        if insertion.duplicate:
            self.stats.duplicate_dropped()
            logger.debug(
                "duplicate dropped org_id=%s seq=%s event_id=%s",
                event.org_id,
                event.seq,
                event.event_id,
            )
            return insertion
        self.stats.event_published(event.org_id)
        if self._awaiting_first:
            for seen in self._awaiting_first.pop(event.org_id, ()):
                seen.set_result(None)
        if insertion.appended:
            self._wake(buffer, insertion.appended)
        return insertion

    def _wake(self, buffer: OrgBuffer, appended: list[BufferedEvent]) -> None:
        index = self.waiters.get(buffer.org_id)
        if index is None:
            return
        shared: dict[tuple[int, PropertyFilter], Answer | None] = {}
        for waiter in index.touched_by(appended):
            key = (waiter.cursor, waiter.properties)
            if key not in shared:
                visible = _visible(buffer.after(waiter.cursor), waiter.properties)
                shared[key] = Answer(visible, buffer.head) if visible else None
            answer = shared[key]
            if answer is not None:
                self._answer(waiter, answer)

    def _answer(self, waiter: Waiter, answer: Answer) -> None:
        self.remove(waiter)
        if not waiter.future.done():
            waiter.future.set_result(answer)

    def sweep(self) -> None:
        """Close lost holes (resync who they left behind) and trim the buffers."""
        for buffer, appended in self.buffers.expire_holes():
            self._resync_behind(buffer)
            if appended:
                self._wake(buffer, appended)
        self.buffers.trim_expired()

    def _resync_behind(self, buffer: OrgBuffer) -> None:
        index = self.waiters.get(buffer.org_id)
        if index is None:
            return
        answer = Answer([], buffer.head, resync=True)
        for waiter in index.all():
            if waiter.cursor < buffer.floor:
                self.stats.resync("hole_lost")
                self._answer(waiter, answer)

    def evict_idle(self) -> list[int]:
        """Forget idle orgs: no events held, no waiters, no recent activity."""
        return self.buffers.evict_idle(self.has_waiters)

    def release_all(self) -> int:
        """Answer every waiter at once, empty and with its own cursor."""
        released = 0
        for index in list(self.waiters.values()):
            for waiter in index.all():
                self._answer(waiter, Answer([], waiter.cursor))
                released += 1
        return released

    def drain(self) -> int:
        """Shutting down: refuse new polls and release every waiter."""
        self.shutting_down = True
        return self.release_all()

    def connection_lost(self) -> int:
        """The broker connection was lost: nothing consumed before is provable.

        Waiters are released with their own cursor and every org is forgotten, so
        the next poll learns the org's position from the API again and gets
        ``resync`` only if events really happened while the consumer was away.
        """
        released = self.release_all()
        self.buffers.forget_all()
        return released
