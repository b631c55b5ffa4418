"""Several tabs of one browser: one leader polls, the others follow its relay.

Issue scenarios 1 (five tabs, one poller, a closed leader replaced), 2 (a guest created
in one tab shows once in another within 2 s) and 3 (a guest of property 1 never shows
in a browser on property 2), plus field cases FC-9 (a frozen leader is replaced, also
on the localStorage lease path).
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext

from tests.e2e.browser.conftest import Contexts, System
from tests.e2e.browser.demo_tabs import DemoTab, create_guest, new_org
from tests.support.polling import wait_until

NO_WEB_LOCKS = "delete Navigator.prototype.locks; delete navigator.locks;"


def leaders(tabs: list[DemoTab]) -> list[DemoTab]:
    return [tab for tab in tabs if tab.role() == "leader"]


def shows(tab: DemoTab, name: str) -> bool:
    return name in tab.guest_names()


def pollers_between(tabs: list[DemoTab], since: float) -> list[DemoTab]:
    return [tab for tab in tabs if tab.subscribes_since(since)]


def open_tabs(
    contexts: Contexts, system: System, count: int, init_script: str = ""
) -> tuple[BrowserContext, int, list[DemoTab]]:
    context = contexts(init_script)
    first = DemoTab.open(context, system.url)
    org = new_org()
    first.sign_in(org)
    tabs = [first] + [DemoTab.open(context, system.url) for _ in range(count - 1)]
    for tab in tabs:
        tab.wait_started()
    return context, org, tabs


def test_five_tabs_poll_through_one_leader_and_a_closed_leader_hands_over(
    contexts: Contexts, system: System, figures: dict[str, object]
) -> None:
    _, _, tabs = open_tabs(contexts, system, 5)
    wait_until(lambda: len(leaders(tabs)) == 1, "exactly one leader among five tabs")
    [leader] = leaders(tabs)
    wait_until(lambda: leader.subscribes, "the leader to poll")

    since = time.monotonic()
    leader.pump(2 * 3.0 + 0.5)  # two full holds of the fanout
    assert pollers_between(tabs, since) == [leader]

    leader.page.close()
    closed_at = time.monotonic()
    rest = [tab for tab in tabs if tab is not leader]
    wait_until(lambda: len(leaders(rest)) == 1, "a new leader", timeout_s=5)
    [successor] = leaders(rest)
    wait_until(
        lambda: successor.subscribes_since(closed_at), "the new leader to poll", 5
    )
    figures["closed_leader_to_next_poll_s"] = round(
        successor.subscribes_since(closed_at)[0].sent_at - closed_at, 3
    )
    assert time.monotonic() - closed_at < 5

    since = time.monotonic()
    successor.pump(3.5)
    assert pollers_between(rest, since) == [successor]


def test_a_guest_checked_in_in_one_tab_shows_once_in_another_within_two_seconds(
    contexts: Contexts, system: System, artifacts: Path, figures: dict[str, object]
) -> None:
    _, _, [tab_a, tab_b] = open_tabs(contexts, system, 2)
    for index in range(3):
        name = f"Warm-up Guest {index}"
        tab_a.check_in(name, room=f"1{index}2")
        wait_until(partial(shows, tab_a, name), f"{name} in tab A")
    wait_until(
        lambda: len(tab_b.guest_ids()) == 3,
        "the first guests in tab B",
        3,
    )

    tab_a.check_in("Amelia Hartley", room="412")
    sent_at = time.monotonic()
    wait_until(
        lambda: "Amelia Hartley" in tab_b.guest_names(), "the guest in tab B", 2.0
    )
    shown_after = time.monotonic() - sent_at
    figures["created_in_a_shown_in_b_s"] = round(shown_after, 3)
    assert shown_after < 2.0
    tab_b.pump(1.0)
    assert tab_b.guest_names().count("Amelia Hartley") == 1
    assert tab_a.guest_names().count("Amelia Hartley") == 1
    assert len(set(tab_b.guest_ids())) == len(tab_b.guest_ids()) == 4

    # The row buttons: check out, upload a document, delete; B follows each change.
    rows_a = tab_a.page.get_by_test_id("guest-row")
    rows_b = tab_b.page.get_by_test_id("guest-row")
    rows_a.filter(has_text="Warm-up Guest 1").get_by_test_id("checkout").click()
    checked_out = rows_b.filter(has_text="Warm-up Guest 1")
    wait_until(
        lambda: checked_out.get_attribute("data-status") == "checked_out",
        "the check-out in tab B",
        2,
    )
    scan = tab_a.page.screenshot(clip={"x": 0, "y": 0, "width": 64, "height": 64})
    with tab_a.page.expect_file_chooser() as chooser:
        rows_a.filter(has_text="Amelia Hartley").get_by_test_id("upload").click()
    chooser.value.set_files(
        {"name": "passport.png", "mimeType": "image/png", "buffer": scan}
    )
    with_document = rows_b.filter(has_text="Amelia Hartley").locator("td").nth(5)
    wait_until(lambda: with_document.text_content() == "1", "the document in B", 3)
    rows_a.filter(has_text="Warm-up Guest 0").get_by_test_id("delete").click()
    wait_until(lambda: len(tab_b.guest_ids()) == 3, "the deletion in tab B", 2)
    assert "Warm-up Guest 0" not in tab_b.guest_names()

    tab_b.page.set_viewport_size({"width": 1360, "height": 820})
    tab_a.page.screenshot(path=str(artifacts / "demo-tab-a.png"))
    tab_b.page.screenshot(path=str(artifacts / "demo-tab-b.png"))


def test_a_guest_of_property_one_never_shows_in_a_browser_on_property_two(
    contexts: Contexts, system: System
) -> None:
    _, org, [tab_a] = open_tabs(contexts, system, 1)
    tab_a.choose_property(1)
    context_b = contexts("")
    tab_b = DemoTab.open(context_b, system.url)
    tab_b.sign_in(org, "MANAGER", [2])
    tab_b.choose_property(2)
    wait_until(lambda: tab_b.subscribes, "the second browser to poll")

    guest = create_guest(system.url, org, 1, "Property One Guest")
    wait_until(lambda: guest in tab_a.guest_ids(), "the guest in tab A", 2.0)
    marker = create_guest(system.url, org, 2, "Property Two Guest")
    wait_until(lambda: marker in tab_b.guest_ids(), "the property 2 guest in B", 3.0)
    assert guest not in tab_b.guest_ids()
    assert "Property One Guest" not in tab_b.page.content()
    context_b.close()


def test_a_frozen_leader_is_replaced_and_does_not_poll_after_it_thaws(
    contexts: Contexts, system: System, figures: dict[str, object]
) -> None:
    took = _frozen_leader_is_replaced(contexts, system, "")
    figures["frozen_leader_to_next_poll_s_web_locks"] = took


def test_a_frozen_leader_is_replaced_on_the_storage_lease_path(
    contexts: Contexts, system: System, figures: dict[str, object]
) -> None:
    took = _frozen_leader_is_replaced(contexts, system, NO_WEB_LOCKS)
    figures["frozen_leader_to_next_poll_s_lease"] = took


def _frozen_leader_is_replaced(
    contexts: Contexts, system: System, script: str
) -> float:
    context, org, tabs = open_tabs(contexts, system, 2, script)
    wait_until(lambda: len(leaders(tabs)) == 1, "one leader")
    [leader] = leaders(tabs)
    [follower] = [tab for tab in tabs if tab is not leader]
    # Page.setWebLifecycleState "frozen" leaves a visible headless page's timers
    # running; pausing its JavaScript in the debugger stops them for real, with the
    # lock (or lease) still held, which is what a frozen tab does.
    cdp = context.new_cdp_session(leader.page)
    cdp.send("Debugger.enable")
    cdp.send("Debugger.pause")
    frozen_at = time.monotonic()

    wait_until(lambda: follower.role() == "leader", "the follower to take over", 5)
    wait_until(lambda: follower.subscribes_since(frozen_at), "the new leader's poll", 5)
    took = follower.subscribes_since(frozen_at)[0].sent_at - frozen_at
    guest = create_guest(system.url, org, 1, "Guest While Frozen")
    wait_until(lambda: guest in follower.guest_ids(), "the guest in the new leader", 3)

    cdp.send("Debugger.resume")
    thawed_at = time.monotonic()
    wait_until(lambda: leader.role() == "follower", "the old leader to follow", 5)
    follower.pump(3.5)
    assert leader.subscribes_since(thawed_at) == [], "the replaced leader polled"
    second = create_guest(system.url, org, 1, "Guest After Thaw")
    wait_until(lambda: second in leader.guest_ids(), "the thawed tab to follow", 3)
    assert sorted(leader.guest_ids()) == sorted({guest, second})
    return round(took, 3)


def test_five_tabs_without_web_locks_keep_exactly_one_leader(
    contexts: Contexts, system: System
) -> None:
    _, _, tabs = open_tabs(contexts, system, 5, NO_WEB_LOCKS)
    for tab in tabs:
        assert (tab.status() or {}).get("strategy") == "local-storage-lease"
    wait_until(lambda: len(leaders(tabs)) == 1, "exactly one leader")
    [leader] = leaders(tabs)
    since = time.monotonic()
    leader.pump(4.0)
    assert pollers_between(tabs, since) == [leader]
    assert len(leaders(tabs)) == 1

    leader.page.close()
    rest = [tab for tab in tabs if tab is not leader]
    wait_until(lambda: len(leaders(rest)) == 1, "a new leader", timeout_s=5)
    since = time.monotonic()
    rest[0].pump(3.5)
    assert pollers_between(rest, since) == leaders(rest)


# A long task on the page's main thread: the tab's timers, its storage updates from
# other tabs and its lock notices all wait behind it (heavy rendering does this).
STALL_S = 4.5
STALL = (
    f"setTimeout(() => {{ const end = performance.now() + {STALL_S * 1000:.0f}; "
    "while (performance.now() < end) {} }, 0)"
)


@pytest.mark.parametrize("script", ["", NO_WEB_LOCKS], ids=["web-locks", "lease"])
def test_a_follower_that_was_busy_does_not_depose_a_beating_leader(
    contexts: Contexts, system: System, script: str
) -> None:
    _, _, tabs = open_tabs(contexts, system, 2, script)
    wait_until(lambda: len(leaders(tabs)) == 1, "one leader")
    [leader] = leaders(tabs)
    [follower] = [tab for tab in tabs if tab is not leader]

    stalled_at = time.monotonic()
    follower.page.evaluate(STALL)
    leader.pump(STALL_S + 2.5)  # the stall, then several of the follower's checks

    assert (leader.role(), follower.role()) == ("leader", "follower")
    assert follower.subscribes_since(stalled_at) == []


def test_a_leader_replaced_while_busy_sends_no_poll_when_it_wakes(
    contexts: Contexts, system: System
) -> None:
    _, org, tabs = open_tabs(contexts, system, 2, "")
    wait_until(lambda: len(leaders(tabs)) == 1, "one leader")
    [leader] = leaders(tabs)
    [follower] = [tab for tab in tabs if tab is not leader]
    wait_until(lambda: leader.subscribes, "the leader's poll")

    stalled_at = time.monotonic()
    leader.page.evaluate(STALL)
    # Answers the busy leader's poll: the answer waits behind its long task.
    first = create_guest(system.url, org, 1, "Guest While Busy")
    wait_until(lambda: follower.role() == "leader", "the follower to take over", 6)
    follower.pump(max(0.0, stalled_at + STALL_S + 3 - time.monotonic()))

    assert leader.role() == "follower"
    assert leader.subscribes_since(stalled_at) == [], "the replaced leader polled"
    second = create_guest(system.url, org, 1, "Guest After Waking")
    wait_until(lambda: second in leader.guest_ids(), "the woken tab to follow", 3)
    assert sorted(leader.guest_ids()) == sorted({first, second})
