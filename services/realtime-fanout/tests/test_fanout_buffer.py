"""The per-org buffer: order, floor and head, duplicates, holes, trimming, eviction."""

from collections.abc import Callable

from checkin_events import GuestEvent
from realtime_fanout.buffer import BufferLimits, Buffers
from realtime_fanout.intake import IncomingEvent

Event = Callable[..., GuestEvent]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def buffers(clock: Clock, **limits: float) -> Buffers:
    values = {"max_events": 5, "ttl_s": 25.0, "idle_evict_s": 120.0, "gap_grace_s": 1.0}
    values.update(limits)
    return Buffers(BufferLimits(**values), clock)  # type: ignore[arg-type]


def seqs_after(buffers: Buffers, org_id: int, cursor: int) -> list[int]:
    buffer = buffers.get(org_id)
    assert buffer is not None
    return [held.seq for held in buffer.after(cursor)]


def test_first_event_of_an_org_sets_floor_just_below_it(event: Event) -> None:
    store = buffers(Clock())
    store.insert(IncomingEvent.of(event(7)))
    buffer = store.get(1)
    assert buffer is not None
    assert (buffer.floor, buffer.head) == (6, 7)


def test_out_of_order_arrivals_are_put_in_seq_order(event: Event) -> None:
    store = buffers(Clock())
    store.insert(IncomingEvent.of(event(1)))
    _, third = store.insert(IncomingEvent.of(event(3)))
    _, second = store.insert(IncomingEvent.of(event(2)))
    assert third.appended == []
    assert [held.seq for held in second.appended] == [2, 3]
    assert seqs_after(store, 1, 0) == [1, 2, 3]


def test_a_seq_seen_before_is_dropped_as_duplicate(event: Event) -> None:
    store = buffers(Clock())
    store.insert(IncomingEvent.of(event(1)))
    _, again = store.insert(IncomingEvent.of(event(1)))
    assert again.duplicate
    assert seqs_after(store, 1, 0) == [1]


def test_a_pending_seq_seen_twice_is_dropped_as_duplicate(event: Event) -> None:
    store = buffers(Clock())
    store.insert(IncomingEvent.of(event(1)))
    store.insert(IncomingEvent.of(event(3)))
    _, again = store.insert(IncomingEvent.of(event(3)))
    assert again.duplicate


def test_an_event_id_seen_before_is_dropped_even_with_another_seq(
    event: Event,
) -> None:
    store = buffers(Clock())
    first = event(1)
    store.insert(IncomingEvent.of(first))
    _, again = store.insert(IncomingEvent.of(first.model_copy(update={"seq": 2})))
    assert again.duplicate
    assert seqs_after(store, 1, 0) == [1]


def test_events_older_than_the_ttl_are_trimmed_and_floor_moves(
    event: Event,
) -> None:
    clock = Clock()
    store = buffers(clock, ttl_s=25.0)
    store.insert(IncomingEvent.of(event(1)))
    clock.now = 10.0
    store.insert(IncomingEvent.of(event(2)))
    clock.now = 25.5
    store.trim_expired()
    buffer = store.get(1)
    assert buffer is not None
    assert buffer.floor == 1
    assert seqs_after(store, 1, 1) == [2]


def test_the_size_cap_keeps_the_newest_events(event: Event) -> None:
    store = buffers(Clock(), max_events=5)
    for seq in range(1, 9):
        store.insert(IncomingEvent.of(event(seq)))
    store.trim_expired()
    buffer = store.get(1)
    assert buffer is not None
    assert buffer.floor == 3
    assert seqs_after(store, 1, 3) == [4, 5, 6, 7, 8]


def test_a_burst_far_above_the_cap_is_trimmed_without_waiting_for_the_sweep(
    event: Event,
) -> None:
    store = buffers(Clock(), max_events=5)
    for seq in range(1, 30):
        store.insert(IncomingEvent.of(event(seq)))
    buffer = store.get(1)
    assert buffer is not None
    assert len(buffer.events) <= 10


def test_an_idle_org_is_evicted_only_after_the_idle_time(event: Event) -> None:
    clock = Clock()
    store = buffers(clock, ttl_s=25.0, idle_evict_s=120.0)
    store.insert(IncomingEvent.of(event(1)))
    clock.now = 30.0
    store.trim_expired()
    assert store.evict_idle(lambda org_id: False) == []
    clock.now = 121.0
    assert store.evict_idle(lambda org_id: True) == []
    assert store.evict_idle(lambda org_id: False) == [1]
    assert store.get(1) is None


def test_an_org_holding_events_is_not_evicted(event: Event) -> None:
    clock = Clock()
    store = buffers(clock, ttl_s=1000.0, idle_evict_s=120.0)
    store.insert(IncomingEvent.of(event(1)))
    clock.now = 500.0
    assert store.evict_idle(lambda org_id: False) == []


def test_a_hole_is_declared_lost_only_after_the_grace_time(event: Event) -> None:
    clock = Clock()
    store = buffers(clock, gap_grace_s=1.0)
    store.insert(IncomingEvent.of(event(1)))
    store.insert(IncomingEvent.of(event(3)))
    clock.now = 0.9
    assert store.expire_holes() == []
    clock.now = 1.0
    [(buffer, appended)] = store.expire_holes()
    assert [held.seq for held in appended] == [3]
    assert (buffer.floor, buffer.head) == (2, 3)


def test_a_late_event_of_a_hole_declared_lost_is_dropped(event: Event) -> None:
    clock = Clock()
    store = buffers(clock, gap_grace_s=1.0)
    store.insert(IncomingEvent.of(event(1)))
    store.insert(IncomingEvent.of(event(3)))
    clock.now = 2.0
    store.expire_holes()
    _, late = store.insert(IncomingEvent.of(event(2)))
    assert late.duplicate


def test_a_learned_position_does_not_overwrite_a_known_org(event: Event) -> None:
    store = buffers(Clock())
    store.insert(IncomingEvent.of(event(5)))
    buffer = store.learn_position(1, 2)
    assert (buffer.floor, buffer.head) == (4, 5)
    fresh = store.learn_position(2, 9)
    assert (fresh.floor, fresh.head) == (9, 9)
