"""Waiters and the hub: judging cursors, waking polls, sharing answers, draining."""

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from checkin_events import GuestEvent
from realtime_fanout.waiters import (
    Answer,
    CursorAhead,
    Hub,
    ShuttingDown,
    Waiter,
    WaiterCapReached,
)

Event = Callable[..., GuestEvent]


def seqs(answer: Answer) -> list[int]:
    return [held.seq for held in answer.events]


def waiter(judged: Answer | Waiter | CursorAhead) -> Waiter:
    assert isinstance(judged, Waiter), judged
    return judged


def answer_now(judged: Answer | Waiter | CursorAhead) -> Answer:
    assert isinstance(judged, Answer), judged
    return judged


def answered(held: Waiter) -> Answer:
    answer = held.future.result()
    assert answer is not None, "the hold ended without an answer"
    return answer


def body(answer: Answer) -> Any:
    return orjson.loads(answer.body())


async def test_cursor_below_floor_is_answered_resync_with_head(
    hub: Hub, event: Event
) -> None:
    for seq in range(4, 7):
        hub.publish(event(seq))
    answer = answer_now(hub.poll(1, 2, None))
    assert body(answer) == {"events": [], "lastEventId": "6", "resync": True}


async def test_cursor_inside_the_buffer_gets_the_later_events_at_once(
    hub: Hub, event: Event
) -> None:
    for seq in range(1, 5):
        hub.publish(event(seq))
    answer = answer_now(hub.poll(1, 2, None))
    assert seqs(answer) == [3, 4]
    assert body(answer)["lastEventId"] == "4"
    assert body(answer)["events"][0]["eventType"] == "guest_created"


async def test_events_hidden_by_the_filter_move_the_cursor_and_the_poll_waits(
    hub: Hub, event: Event
) -> None:
    hub.publish(event(1, property_id=11))
    hub.publish(event(2, property_id=12))
    held = waiter(hub.poll(1, 1, frozenset({11})))
    assert held.cursor == 2
    assert hub.hold_ended(held).last_event_id == 2


async def test_cursor_at_head_waits_and_is_woken_by_the_next_event(
    hub: Hub, event: Event
) -> None:
    hub.publish(event(1))
    held = waiter(hub.poll(1, 1, None))
    assert not held.future.done()
    hub.publish(event(2))
    assert seqs(answered(held)) == [2]
    assert hub.waiter_count(1) == 0


async def test_no_cursor_starts_from_now(hub: Hub, event: Event) -> None:
    hub.publish(event(1))
    held = waiter(hub.poll(1, None, None))
    assert held.cursor == 1


async def test_cursor_ahead_of_head_is_reported_for_the_edge_to_check(
    hub: Hub, event: Event
) -> None:
    hub.publish(event(1))
    assert hub.poll(1, 3, None) == CursorAhead(head=1)


async def test_waiting_ahead_skips_the_events_up_to_the_cursor(
    hub: Hub, event: Event
) -> None:
    hub.publish(event(1))
    held = waiter(hub.wait_ahead(1, 3, None))
    hub.publish(event(2))
    hub.publish(event(3))
    assert not held.future.done()
    hub.publish(event(4))
    assert seqs(answered(held)) == [4]


async def test_a_waiter_on_one_property_is_not_woken_by_another(
    hub: Hub, event: Event
) -> None:
    hub.learn_position(1, 0)
    on_11 = waiter(hub.poll(1, 0, frozenset({11})))
    on_12 = waiter(hub.poll(1, 0, frozenset({12})))
    hub.publish(event(1, property_id=11))
    assert seqs(answered(on_11)) == [1]
    assert not on_12.future.done()
    assert hub.hold_ended(on_12).last_event_id == 1


async def test_a_manager_filter_sees_only_its_properties(
    hub: Hub, event: Event
) -> None:
    hub.learn_position(1, 0)
    manager = waiter(hub.poll(1, 0, frozenset({11})))
    hub.publish(event(1, property_id=12))
    hub.publish(event(2, property_id=11))
    assert seqs(answered(manager)) == [2]
    assert body(answered(manager))["lastEventId"] == "2"


async def test_another_orgs_events_never_wake_a_waiter(hub: Hub, event: Event) -> None:
    hub.learn_position(1, 0)
    org_1 = waiter(hub.poll(1, 0, None))
    hub.publish(event(1, org_id=2, property_id=21))
    assert not org_1.future.done()
    hub.learn_position(2, 1)
    assert hub.poll(2, 0, None) is not None
    assert seqs(answer_now(hub.poll(2, 0, None))) == [1]


async def test_waiters_with_the_same_cursor_and_filter_share_one_answer(
    hub: Hub, event: Event
) -> None:
    hub.learn_position(1, 0)
    first = waiter(hub.poll(1, 0, None))
    second = waiter(hub.poll(1, 0, None))
    hub.publish(event(1))
    assert answered(first) is answered(second)
    assert answered(first).body() is answered(second).body()


async def test_the_waiter_cap_refuses_one_more_and_a_removal_frees_a_place(
    hub: Hub,
) -> None:
    hub.learn_position(1, 0)
    hub.learn_position(2, 0)
    held = [waiter(hub.poll(1, 0, None)) for _ in range(3)]
    with pytest.raises(WaiterCapReached):
        hub.poll(1, 0, None)
    assert isinstance(hub.poll(2, 0, None), Waiter)
    hub.remove(held[0])
    hub.remove(held[0])
    assert hub.waiter_count(1) == 2
    assert isinstance(hub.poll(1, 0, None), Waiter)


async def test_a_hole_still_open_after_the_grace_time_resyncs_waiters_behind_it(
    hub: Hub, event: Event, clock: Any
) -> None:
    hub.publish(event(1))
    behind = waiter(hub.poll(1, 1, None))
    hub.publish(event(3))
    clock.advance(0.5)
    hub.sweep()
    assert not behind.future.done()
    clock.advance(0.6)
    hub.sweep()
    answer = answered(behind)
    assert answer.resync
    assert answer.last_event_id == 3
    assert answer_now(hub.poll(1, 1, None)).resync
    assert seqs(answer_now(hub.poll(1, 2, None))) == [3]


async def test_a_hole_filled_within_the_grace_time_delivers_in_order(
    hub: Hub, event: Event, clock: Any
) -> None:
    hub.publish(event(1))
    held = waiter(hub.poll(1, 1, None))
    hub.publish(event(3))
    clock.advance(0.5)
    hub.sweep()
    hub.publish(event(2))
    assert seqs(answered(held)) == [2, 3]
    assert not answered(held).resync


async def test_duplicates_are_counted_and_not_delivered_twice(
    hub: Hub, event: Event
) -> None:
    first = event(1)
    hub.publish(first)
    held = waiter(hub.poll(1, 1, None))
    hub.publish(first)
    assert not held.future.done()
    assert hub.stats.dropped_total == 1


async def test_a_trimmed_hidden_event_does_not_resync_a_waiter_watching_it(
    hub: Hub, event: Event, clock: Any
) -> None:
    hub.publish(event(1, property_id=11))
    held = waiter(hub.poll(1, 1, frozenset({11})))
    hub.publish(event(2, property_id=12))
    clock.advance(30)
    hub.sweep()
    answer = hub.hold_ended(held)
    assert not answer.resync
    assert answer.last_event_id == 2


async def test_drain_answers_every_waiter_at_once_with_its_own_cursor(
    hub: Hub,
) -> None:
    hub.learn_position(1, 4)
    held = waiter(hub.poll(1, 4, None))
    assert hub.drain() == 1
    assert body(answered(held)) == {
        "events": [],
        "lastEventId": "4",
        "resync": False,
    }
    assert hub.shutting_down


async def test_a_lost_connection_forgets_every_org_and_releases_waiters(
    hub: Hub, event: Event
) -> None:
    hub.publish(event(1))
    held = waiter(hub.poll(1, 1, None))
    hub.connection_lost()
    assert answered(held).last_event_id == 1
    assert not hub.is_known(1)


async def test_no_waiter_is_registered_once_shutdown_began(hub: Hub) -> None:
    hub.learn_position(1, 0)
    hub.drain()
    with pytest.raises(ShuttingDown):
        hub.poll(1, 0, None)


async def test_a_client_left_behind_by_the_size_cap_gets_resync_not_the_newest(
    hub: Hub, event: Event
) -> None:
    hub.publish(event(1))
    for seq in range(2, 9):
        hub.publish(event(seq))
    hub.sweep()
    answer = answer_now(hub.poll(1, 1, None))
    assert (answer.resync, answer.events, answer.last_event_id) == (True, (), 8)
    assert seqs(answer_now(hub.poll(1, 3, None))) == [4, 5, 6, 7, 8]


async def test_a_cursor_older_than_the_ttl_gets_resync_at_once(
    hub: Hub, event: Event, clock: Any
) -> None:
    hub.publish(event(1))
    hub.publish(event(2))
    clock.advance(26)
    hub.sweep()
    answer = answer_now(hub.poll(1, 1, None))
    assert (answer.resync, answer.last_event_id) == (True, 2)
    assert isinstance(hub.poll(1, 2, None), Waiter)


async def test_the_sweep_ends_only_the_holds_that_are_due_in_deadline_order(
    hub: Hub, event: Event
) -> None:
    hub.learn_position(1, 0)
    late, early, answered = (waiter(hub.poll(1, 0, None)) for _ in range(3))
    hub.hold(late, 20.0)
    hub.hold(early, 10.0)
    hub.hold(answered, 5.0)
    hub.publish(event(1, org_id=2))  # another org: wakes nobody here
    answered.future.set_result(Answer([], 0))
    hub.remove(answered)

    assert hub.end_holds(now=10.0) == 1
    assert early.future.result() is None
    assert not late.future.done()
    assert hub.waiter_count(1) == 1
    assert hub.hold_ended(early).last_event_id == 0


async def test_waiting_for_an_unseen_orgs_first_event_ends_with_it_or_leaves_nothing(
    hub: Hub, event: Event
) -> None:
    waiting = asyncio.create_task(hub.first_event(1, timeout_s=5.0))
    await asyncio.sleep(0)
    hub.publish(event(4))
    await asyncio.wait_for(waiting, timeout=1.0)

    await hub.first_event(2, timeout_s=0.01)  # nothing comes: it just returns
    assert hub.is_known(1) and not hub.is_known(2)
    assert hub._awaiting_first == {}


async def test_a_hold_ending_in_the_sweep_that_loses_a_hole_keeps_the_cursor_before_it(
    hub: Hub, event: Event, clock: Any
) -> None:
    hub.publish(event(1))
    held = waiter(hub.poll(1, 1, None))
    hub.hold(held, deadline=clock.now)
    hub.publish(event(3))
    hub.publish(event(4))  # seq 2 never comes
    clock.advance(2.0)

    hub.end_holds(clock.now)
    hub.sweep()  # the same sweep declares the hole lost: floor and head jump to 4
    ended = hub.hold_ended(held)

    assert (ended.events, ended.last_event_id, ended.resync) == ((), 1, False)
    next_poll = answer_now(hub.poll(1, ended.last_event_id, None))
    assert next_poll.resync, "seq 2 was lost: the client must refetch, not skip it"


async def test_a_hold_ended_before_an_event_is_consumed_does_not_skip_that_event(
    hub: Hub, event: Event, clock: Any
) -> None:
    hub.publish(event(1))
    held = waiter(hub.poll(1, 1, None))
    hub.hold(held, deadline=clock.now)

    hub.end_holds(clock.now)
    hub.publish(event(2))  # consumed before the poll's handler resumes
    ended = hub.hold_ended(held)

    assert ended.last_event_id == 1
    assert seqs(answer_now(hub.poll(1, ended.last_event_id, None))) == [2]
