"""Driving the demo page like a person, and watching what each tab sends.

`DemoTab` wraps one Playwright page: it signs in through the login form, reads the
client's state from `window.__realtime`, and records every subscribe request the tab
issues (from the browser's network events), every failed one, and console errors.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from playwright.sync_api import BrowserContext, Page, Request, Response

from tests.support.polling import wait_until
from tests.support.tokens import token

logger = logging.getLogger(__name__)

SUBSCRIBE = "/v1/guest-checkin/realtime/subscribe"


def new_org() -> int:
    """An org of this test alone: the services are shared by the whole suite."""
    return random.randint(100_000, 2_000_000_000)


@dataclass
class SubscribeRecord:
    """One subscribe request a tab issued, when, and how it ended."""

    url: str
    sent_at: float
    ended_at: float | None = None
    failure: str | None = None


@dataclass
class DemoTab:
    """One tab of the demo page, with what it sent recorded."""

    page: Page
    base_url: str
    sent: list[SubscribeRecord] = field(default_factory=list)
    list_requests: list[float] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    authorized: list[tuple[float, str]] = field(default_factory=list)
    telemetry: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        by_request: dict[int, SubscribeRecord] = {}

        def sent(request: Request) -> None:
            if "authorization" in request.headers:
                self.authorized.append((time.monotonic(), request.url))
            if SUBSCRIBE in request.url:
                record = SubscribeRecord(request.url, time.monotonic())
                by_request[id(request)] = record
                self.sent.append(record)
            elif "/v1/guest-checkins?" in request.url:
                self.list_requests.append(time.monotonic())

        def ended(request: Request) -> None:
            record = by_request.get(id(request))
            if record is not None:
                record.ended_at = time.monotonic()
                record.failure = request.failure

        def answered(response: Response) -> None:
            if "/telemetry/" in response.url:
                self.telemetry.append((response.status, response.url))

        self.page.on("request", sent)
        self.page.on("response", answered)
        self.page.on("requestfinished", ended)
        self.page.on("requestfailed", ended)
        self.page.on(
            "console",
            lambda message: (
                self.console_errors.append(message.text)
                if message.type == "error"
                else None
            ),
        )
        self.page.on("pageerror", lambda error: self.console_errors.append(str(error)))

    @classmethod
    def open(cls, context: BrowserContext, base_url: str, query: str = "") -> DemoTab:
        tab = cls(context.new_page(), base_url)
        tab.page.goto(f"{base_url}/{query}")
        return tab

    def sign_in(
        self, org: int, role: str = "ADMIN", properties: list[int] | None = None
    ) -> None:
        """Sign in through the login form (a local token from the API)."""
        self.page.get_by_test_id("login-org").fill(str(org))
        self.page.get_by_test_id("login-role").select_option(role)
        if properties:
            text = ",".join(str(number) for number in properties)
            self.page.get_by_test_id("login-properties").fill(text)
        self.page.get_by_test_id("login-submit").click()
        self.wait_started()

    @property
    def subscribes(self) -> list[SubscribeRecord]:
        """The subscribe requests so far (Playwright's sync API delivers network
        events only while it is called, so call it once first)."""
        if not self.page.is_closed():
            self.page.evaluate("0")
        return self.sent

    def status(self) -> dict[str, Any] | None:
        return self.page.evaluate("() => window.__realtime?.status() ?? null")  # type: ignore[no-any-return]

    def role(self) -> str | None:
        current = self.status()
        return None if current is None else str(current["role"])

    def wait_started(self, timeout_s: float = 10) -> None:
        wait_until(
            lambda: self.role() in ("leader", "follower"),
            "the realtime client to start",
            timeout_s,
        )

    def choose_property(self, property_id: int | None) -> None:
        value = "" if property_id is None else str(property_id)
        self.page.get_by_test_id("property-select").select_option(value)

    def guest_ids(self) -> list[int]:
        return self.page.eval_on_selector_all(  # type: ignore[no-any-return]
            "[data-testid=guest-row]",
            "rows => rows.map(r => Number(r.dataset.guestId))",
        )

    def guest_names(self) -> list[str]:
        return self.page.eval_on_selector_all(  # type: ignore[no-any-return]
            "[data-testid=guest-row] .name", "cells => cells.map(c => c.textContent)"
        )

    def check_in(self, name: str, room: str = "204", property_id: int = 1) -> None:
        """Fill and send the check-in form."""
        self.page.get_by_test_id("checkin-name").fill(name)
        self.page.get_by_test_id("checkin-room").fill(room)
        self.page.get_by_test_id("checkin-property").select_option(str(property_id))
        self.page.get_by_test_id("checkin-submit").click()

    def subscribes_since(self, since: float) -> list[SubscribeRecord]:
        return [record for record in self.subscribes if record.sent_at >= since]

    def pump(self, seconds: float) -> None:
        """Let the page run for a while (and Playwright deliver its events)."""
        self.page.wait_for_timeout(seconds * 1000)


def guest_body(property_id: int, name: str) -> dict[str, Any]:
    """A valid check-in as the API expects it."""
    return {
        "propertyId": property_id,
        "fullName": name,
        "email": "guest@example.com",
        "phone": "+1 555 0100",
        "address": "1 Harbour Road, Springfield",
        "guestType": "domestic",
        "nationality": "US",
        "idType": "passport",
        "idNumber": "X1234567",
        "roomNumber": "305",
        "numberOfGuests": 2,
        "checkInDate": "2026-12-03",
        "expectedCheckoutDate": "2026-12-06",
    }


def create_guest(base_url: str, org: int, property_id: int, name: str) -> int:
    """Check a guest in through the gateway, as another staff member would."""
    answer = httpx.post(
        f"{base_url}/v1/guest-checkins",
        json=guest_body(property_id, name),
        headers={"Authorization": "Bearer " + token(org, "ADMIN")},
        timeout=10,
    )
    answer.raise_for_status()
    return int(answer.json()["id"])
