"""Accepted telemetry lands in the table and in the org's summary, and only there."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from tests.support.polling import poll_until
from tests.support.tokens import bearer, token

AppFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
EventFactory = Callable[..., dict[str, Any]]
RowReader = Callable[[], Awaitable[list[Any]]]


async def test_accepted_batch_is_stored_with_org_and_user_from_the_token(
    telemetry_app: AppFactory, event: EventFactory, stored_rows: RowReader
) -> None:
    client = await telemetry_app()
    batch = {
        "events": [
            event("leader_acquired", attrs={"visible": True}),
            event("leader_takeover", attrs={"latencyMs": 840, "reason": "closed"}),
        ],
        "orgId": 2,
    }

    answer = await client.post(
        "/telemetry/client", json=batch, headers=bearer(1, user_id="staff-7")
    )
    assert answer.status == 422, "a body may not name the org"

    del batch["orgId"]
    answer = await client.post(
        "/telemetry/client", json=batch, headers=bearer(1, user_id="staff-7")
    )
    assert answer.status == 202
    assert await answer.json() == {"accepted": 2}

    rows = await poll_until(stored_rows, "the batch to be written", timeout_s=5)
    assert [(r["org_id"], r["user_id"], r["type"]) for r in rows] == [
        (1, "staff-7", "leader_acquired"),
        (1, "staff-7", "leader_takeover"),
    ]
    assert json.loads(rows[1]["attrs"]) == {"latencyMs": 840, "reason": "closed"}


async def test_summary_counts_types_fast_empty_rate_and_takeover_percentiles(
    telemetry_app: AppFactory, event: EventFactory
) -> None:
    client = await telemetry_app()
    events = [
        event("fast_empty", session_id="s-a"),
        event("fast_empty", session_id="s-a"),
        event("poll_error", session_id="s-b", attrs={"status": 503}),
        *[
            event("leader_takeover", session_id="s-c", attrs={"latencyMs": ms})
            for ms in range(100, 1100, 100)
        ],
    ]
    answer = await client.post(
        "/telemetry/client", json={"events": events}, headers=bearer(1)
    )
    assert answer.status == 202

    async def summary() -> dict[str, object] | None:
        response = await client.get("/telemetry/summary", headers=bearer(1))
        body: dict[str, object] = await response.json()
        counts = body["counts"]
        return body if isinstance(counts, dict) and counts["fast_empty"] else None

    body = await poll_until(summary, "the summary to show the batch", timeout_s=5)
    assert body is not None
    assert body["counts"] == {
        "fast_empty": 2,
        "leader_acquired": 0,
        "leader_takeover": 10,
        "leader_lost": 0,
        "poll_error": 1,
        "resync": 0,
        "logout_propagated": 0,
    }
    assert body["sessions"] == 3
    assert body["fastEmptyRate"] == round(1 / 3, 4)
    assert body["takeoverLatencyMs"] == {"p50": 550.0, "p95": 955.0, "p99": 991.0}


async def test_summary_since_leaves_out_older_events(
    telemetry_app: AppFactory, event: EventFactory
) -> None:
    client = await telemetry_app()
    now = datetime.now(UTC)
    events = [
        event("resync", ts=now - timedelta(hours=3)),
        event("resync", ts=now - timedelta(minutes=5)),
    ]
    await client.post("/telemetry/client", json={"events": events}, headers=bearer(1))

    async def resyncs(since: str) -> int:
        response = await client.get(
            "/telemetry/summary", params={"since": since}, headers=bearer(1)
        )
        assert response.status == 200
        return int((await response.json())["counts"]["resync"])

    since_hour = (now - timedelta(hours=1)).isoformat()
    since_day = (now - timedelta(days=1)).isoformat()
    await poll_until(lambda: resyncs(since_day), "the events to be stored")
    assert await resyncs(since_day) == 2
    assert await resyncs(since_hour) == 1
    bad = await client.get(
        "/telemetry/summary", params={"since": "yesterday"}, headers=bearer(1)
    )
    assert bad.status == 400


async def test_admin_of_another_org_sees_nothing_of_org_1(
    telemetry_app: AppFactory, event: EventFactory, stored_rows: RowReader
) -> None:
    client = await telemetry_app()
    answer = await client.post(
        "/telemetry/client",
        json={"events": [event("leader_lost"), event("fast_empty")]},
        headers=bearer(1),
    )
    assert answer.status == 202
    await poll_until(stored_rows, "org 1's events to be stored", timeout_s=5)

    answer = await client.get("/telemetry/summary", headers=bearer(2))
    assert answer.status == 200
    body = await answer.json()
    assert body["orgId"] == 2
    assert set(body["counts"].values()) == {0}
    assert body["sessions"] == 0
    assert body["fastEmptyRate"] is None
    own = await (await client.get("/telemetry/summary", headers=bearer(1))).json()
    assert own["counts"]["leader_lost"] == 1


async def test_manager_gets_403_on_the_summary_and_anonymous_401(
    telemetry_app: AppFactory, event: EventFactory
) -> None:
    client = await telemetry_app()

    manager = await client.get(
        "/telemetry/summary", headers=bearer(1, "MANAGER", property_ids=[11])
    )
    anonymous = await client.get("/telemetry/summary")

    assert manager.status == 403
    assert (await manager.json())["error"] == "forbidden"
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_beacon_as_text_plain_with_token_in_body_is_accepted(
    telemetry_app: AppFactory, event: EventFactory, stored_rows: RowReader
) -> None:
    """FC-13: sendBeacon sends text/plain and cannot set Authorization."""
    client = await telemetry_app()
    body = json.dumps({"token": token(1, user_id="beacon"), "events": [event()]})

    answer = await client.post(
        "/telemetry/client",
        data=body,
        headers={
            "Content-Type": "text/plain;charset=UTF-8",
            "Origin": "http://demo.example",
        },
    )

    assert answer.status == 202
    assert answer.headers["Access-Control-Allow-Origin"] == "http://demo.example"
    rows = await poll_until(stored_rows, "the beacon stored")
    assert [(r["org_id"], r["user_id"]) for r in rows] == [(1, "beacon")]


async def test_preflight_allows_configured_origin_only(
    telemetry_app: AppFactory, event: EventFactory
) -> None:
    client = await telemetry_app()
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }

    allowed = await client.options(
        "/telemetry/client", headers={**preflight, "Origin": "http://demo.example"}
    )
    foreign = await client.options(
        "/telemetry/client", headers={**preflight, "Origin": "http://evil.example"}
    )

    assert allowed.status == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://demo.example"
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Origin" not in foreign.headers


async def test_metrics_count_accepted_events_per_type_and_refusals(
    telemetry_app: AppFactory, event: EventFactory
) -> None:
    client = await telemetry_app()

    async def metric(line_start: str) -> float:
        text = await (await client.get("/metrics")).text()
        for line in text.splitlines():
            if line.startswith(line_start):
                return float(line.split()[-1])
        return 0.0

    accepted = 'telemetry_events_accepted_total{type="logout_propagated"}'
    rejected = 'telemetry_events_rejected_total{reason="malformed_json"}'
    accepted_before, rejected_before = await metric(accepted), await metric(rejected)
    await client.post(
        "/telemetry/client",
        json={"events": [event("logout_propagated")] * 3},
        headers=bearer(1),
    )
    await client.post(
        "/telemetry/client",
        data="{not json",
        headers={**bearer(1), "Content-Type": "application/json"},
    )

    assert await metric(accepted) == accepted_before + 3
    assert await metric(rejected) == rejected_before + 1
    assert "telemetry_queue_depth" in await (await client.get("/metrics")).text()


async def test_health_readiness_and_openapi_answer(
    telemetry_app: AppFactory, event: EventFactory
) -> None:
    client = await telemetry_app()

    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    spec = await (await client.get("/telemetry/openapi.json")).json()

    assert ready.status == 200
    assert set(spec["paths"]) == {"/telemetry/client", "/telemetry/summary"}
    assert "TelemetryBatch" in spec["components"]["schemas"]
