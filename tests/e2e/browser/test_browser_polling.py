"""How the leader polls: holds, pauses, backoff, logout and offline, in Chromium.

Issue scenarios 4 (logout aborts every tab's poll within 200 ms), 5 (idle polls last
the hold; a fast empty answer is followed by a 2-5 s pause) and 6 (offline stops the
poll, online resumes it and refetches), plus field cases FC-10 (logout, also by the
leader and without BroadcastChannel), FC-11 (bounded polls on fast answers and errors)
and FC-13 (telemetry arrives same-origin through the gateway).
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Route

from tests.e2e.browser.conftest import HOLD_S, Contexts, System
from tests.e2e.browser.demo_tabs import SUBSCRIBE, DemoTab, create_guest, new_org
from tests.support.polling import wait_until

NO_BROADCAST_CHANNEL = "delete window.BroadcastChannel;"


def poll_in_flight(tab: DemoTab) -> bool:
    return bool(tab.subscribes) and tab.subscribes[-1].ended_at is None


def shows_signed_out(tab: DemoTab) -> bool:
    return tab.page.get_by_test_id("signed-out").is_visible()


def answer_empty_at_once(route: Route) -> None:
    cursor = parse_qs(urlparse(route.request.url).query).get("lastEventId", ["0"])[0]
    body = {"events": [], "lastEventId": cursor, "resync": False}
    route.fulfill(status=200, content_type="application/json", body=json.dumps(body))


@pytest.mark.parametrize(
    "init_script", ["", NO_BROADCAST_CHANNEL], ids=["broadcast", "storage-relay"]
)
@pytest.mark.parametrize("who_logs_out", ["follower", "leader"])
def test_logout_in_one_tab_aborts_every_poll_and_nothing_is_sent_afterwards(
    contexts: Contexts,
    system: System,
    init_script: str,
    who_logs_out: str,
    figures: dict[str, object],
) -> None:
    context = contexts(init_script)
    first = DemoTab.open(context, system.url)
    org = new_org()
    first.sign_in(org)
    tabs = [first, DemoTab.open(context, system.url), DemoTab.open(context, system.url)]
    for tab in tabs:
        tab.wait_started()
    wait_until(lambda: [t.role() for t in tabs].count("leader") == 1, "one leader")
    [leader] = [tab for tab in tabs if tab.role() == "leader"]
    wait_until(lambda: poll_in_flight(leader), "a poll in flight")
    leader.pump(0.3)
    assert poll_in_flight(leader)
    actor = leader if who_logs_out == "leader" else next(t for t in tabs if t != leader)

    actor.page.get_by_test_id("logout").click()
    wait_until(lambda: all(map(shows_signed_out, tabs)), "every tab signed out", 3)
    signed_out = time.monotonic()

    logout_at = (actor.status() or {}).get("signedOutAt")
    aborted_at = (leader.status() or {}).get("pollAbortedAt")
    assert logout_at is not None and aborted_at is not None
    relay = "storage" if init_script else "broadcast"
    figures[f"logout_to_abort_ms_{who_logs_out}_{relay}"] = aborted_at - logout_at
    assert aborted_at - logout_at < 200, f"aborted {aborted_at - logout_at} ms later"
    assert leader.subscribes[-1].failure is not None  # aborted, not answered

    create_guest(system.url, org, 1, "Guest After Logout")
    leader.pump(HOLD_S + 1)
    for tab in tabs:
        assert tab.subscribes_since(signed_out) == []
        assert [url for at, url in tab.authorized if at >= signed_out] == []
        assert tab.guest_ids() == []
        assert tab.console_errors == []
        assert (tab.status() or {}).get("role") == "stopped"


def test_idle_polls_last_the_hold_and_a_fast_empty_answer_is_followed_by_a_pause(
    contexts: Contexts, system: System, figures: dict[str, object]
) -> None:
    context = contexts("")
    tab = DemoTab.open(context, system.url, "?telemetry=1")
    tab.sign_in(new_org())
    wait_until(
        lambda: len([r for r in tab.subscribes if r.ended_at]) >= 2, "2 polls", 9
    )
    held = [r.ended_at - r.sent_at for r in tab.subscribes if r.ended_at]
    assert all(HOLD_S - 0.3 <= duration <= HOLD_S + 1.5 for duration in held), held

    answered: list[float] = []

    def once(route: Route) -> None:
        answered.append(time.monotonic())
        answer_empty_at_once(route)
        tab.page.unroute(f"**{SUBSCRIBE}*", once)

    tab.page.route(f"**{SUBSCRIBE}*", once)
    wait_until(lambda: tab.subscribes and answered, "a fast empty answer", HOLD_S + 2)
    wait_until(lambda: tab.subscribes_since(answered[0] + 0.01), "the next poll", 7)
    pause = tab.subscribes_since(answered[0] + 0.01)[0].sent_at - answered[0]
    figures["idle_poll_durations_s"] = [round(d, 2) for d in held]
    figures["fast_empty_pause_s"] = round(pause, 2)
    assert 2.0 <= pause <= 5.5, pause

    # FC-13: the sampled session's records reach telemetry-ingest through the gateway.
    wait_until(lambda: tab.subscribes and tab.telemetry, "a telemetry batch", 12)
    assert tab.telemetry[0] == (202, f"{system.url}/telemetry/client")
    assert tab.console_errors == []


def test_fast_empty_answers_and_errors_are_not_hammered(
    contexts: Contexts, system: System, figures: dict[str, object]
) -> None:
    context = contexts("")
    tabs = [DemoTab.open(context, system.url)]
    tabs[0].sign_in(new_org())
    tabs.append(DemoTab.open(context, system.url))
    tabs[1].wait_started()
    context.route(f"**{SUBSCRIBE}*", answer_empty_at_once)
    since = time.monotonic()
    tabs[0].pump(12)
    fast = sum(len(tab.subscribes_since(since)) for tab in tabs)
    figures["polls_in_12s_of_fast_empty_answers_two_tabs"] = fast
    assert fast <= 4, f"{fast} polls in 12 s of fast empty answers"

    # A browser of its own for the errors: after repeated fast empty answers the
    # first one's pause may have grown past 12 s, which would hide the backoff.
    erring = contexts("")
    erring.route(f"**{SUBSCRIBE}*", lambda route: route.fulfill(status=503))
    tabs = [DemoTab.open(erring, system.url)]
    tabs[0].sign_in(new_org())
    tabs.append(DemoTab.open(erring, system.url))
    tabs[1].wait_started()
    since = time.monotonic()
    tabs[0].pump(12)
    failing = sum(len(tab.subscribes_since(since)) for tab in tabs)
    figures["polls_in_12s_of_503_answers_two_tabs"] = failing
    assert 2 <= failing <= 8, f"{failing} polls in 12 s of 503 answers"


def test_offline_stops_the_poll_and_online_resumes_it_and_refetches(
    contexts: Contexts, system: System
) -> None:
    context = contexts("")
    tab = DemoTab.open(context, system.url)
    org = new_org()
    tab.sign_in(org)
    wait_until(lambda: poll_in_flight(tab), "a poll in flight")

    context.set_offline(True)
    wait_until(lambda: (tab.status() or {}).get("connection") == "offline", "offline")
    offline_at = time.monotonic()
    guest = create_guest(system.url, org, 1, "Guest While Offline")
    tab.pump(HOLD_S + 1)
    assert tab.subscribes_since(offline_at) == []
    assert guest not in tab.guest_ids()

    context.set_offline(False)
    online_at = time.monotonic()
    wait_until(lambda: tab.subscribes_since(online_at), "polling again", 5)
    assert [at for at in tab.list_requests if at >= online_at], "no refetch"
    wait_until(lambda: guest in tab.guest_ids(), "the guest after online", 3)


def test_a_504_from_a_proxy_is_a_passing_error_and_the_next_change_still_shows(
    contexts: Contexts, system: System
) -> None:
    context = contexts("")
    tab = DemoTab.open(context, system.url)
    org = new_org()
    tab.sign_in(org)
    wait_until(lambda: poll_in_flight(tab), "a poll in flight")
    cursor_before = (tab.status() or {}).get("position")
    failed: list[float] = []

    def gateway_timeout(route: Route) -> None:
        failed.append(time.monotonic())
        route.fulfill(status=504, body="gateway timeout")
        if len(failed) == 2:
            context.unroute(f"**{SUBSCRIBE}*", gateway_timeout)

    context.route(f"**{SUBSCRIBE}*", gateway_timeout)
    wait_until(lambda: tab.subscribes and len(failed) == 2, "two 504s", HOLD_S + 6)
    assert failed[1] - failed[0] >= 1.0  # backed off, not hammered
    guest = create_guest(system.url, org, 1, "Guest After 504")
    wait_until(lambda: guest in tab.guest_ids(), "the guest after the 504s", 8)
    assert (tab.status() or {}).get("position", 0) >= (cursor_before or 0)
    assert [e for e in tab.console_errors if "504" not in e] == []


def test_a_401_asks_for_a_fresh_token_once_then_stops_and_says_so(
    contexts: Contexts, system: System
) -> None:
    context = contexts("")
    tab = DemoTab.open(context, system.url)
    tab.sign_in(new_org())
    wait_until(lambda: poll_in_flight(tab), "a poll in flight")
    context.route(
        f"**{SUBSCRIBE}*",
        lambda route: route.fulfill(
            status=401,
            content_type="application/json",
            body='{"error": "invalid_token", "detail": "expired"}',
        ),
    )
    wait_until(lambda: shows_signed_out(tab), "the signed-out state", HOLD_S + 4)
    assert "expired" in (tab.page.text_content("#signed-out-reason") or "")
    stopped_at = time.monotonic()
    tab.pump(3)
    refused = [r for r in tab.subscribes if r.sent_at < stopped_at]
    assert 1 <= len([r for r in refused if r.ended_at and r.failure is None]) <= 3
    assert tab.subscribes_since(stopped_at) == []


def test_a_hidden_leader_hands_over_to_a_visible_tab(
    contexts: Contexts, system: System
) -> None:
    context = contexts("")
    first = DemoTab.open(context, system.url)
    first.sign_in(new_org())
    second = DemoTab.open(context, system.url)
    second.wait_started()
    tabs = [first, second]
    wait_until(lambda: [t.role() for t in tabs].count("leader") == 1, "one leader")
    [leader] = [tab for tab in tabs if tab.role() == "leader"]
    [other] = [tab for tab in tabs if tab is not leader]
    # Headless pages are all "visible"; make the leader's page report hidden, as a
    # background tab would.
    leader.page.evaluate(
        """() => {
          Object.defineProperty(document, "visibilityState", {get: () => "hidden"});
          Object.defineProperty(document, "hidden", {get: () => true});
          document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    hidden_at = time.monotonic()
    wait_until(lambda: other.role() == "leader", "the visible tab to lead", 3)
    wait_until(lambda: other.subscribes_since(hidden_at), "the visible tab's poll", 3)
    wait_until(lambda: leader.role() == "follower", "the hidden tab to follow", 3)
