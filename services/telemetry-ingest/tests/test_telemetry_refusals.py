"""Every bad input gets its own status, and nothing of a refused batch is stored."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.tokens import bearer, token

AppFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
EventFactory = Callable[..., dict[str, Any]]
RowReader = Callable[[], Awaitable[list[Any]]]


async def post_raw(
    client: TestClient[Any, Any],
    body: bytes | str,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    answer = await client.post(
        "/telemetry/client",
        data=body,
        headers={"Content-Type": content_type, **(headers or bearer(1))},
    )
    return answer.status, await answer.json(), dict(answer.headers)


async def test_malformed_json_is_400(
    telemetry_app: AppFactory, stored_rows: RowReader
) -> None:
    client = await telemetry_app()

    status, body, _ = await post_raw(client, '{"events": [')
    latin1_status, _, _ = await post_raw(client, b"\xff\xfe{")

    assert (status, body["error"]) == (400, "malformed_json")
    assert latin1_status == 400


INVALID_AUTHORIZATIONS = {
    "missing": {},
    "garbage": {"Authorization": "Bearer not-a-token"},
    "not bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
    "expired": {"Authorization": "Bearer " + token(1, ttl_s=-60)},
}


async def test_missing_or_invalid_token_is_401(
    telemetry_app: AppFactory, event: EventFactory, subtests: pytest.Subtests
) -> None:
    client = await telemetry_app()

    for case, headers in INVALID_AUTHORIZATIONS.items():
        with subtests.test(case):
            status, body, answer_headers = await post_raw(
                client, json.dumps({"events": [event()]}), headers=headers or {"X": "1"}
            )

            assert (status, body["error"]) == (401, "invalid_token")
            assert answer_headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_invalid_token_inside_a_beacon_body_is_401(
    telemetry_app: AppFactory, event: EventFactory
) -> None:
    client = await telemetry_app()
    body = json.dumps({"token": "forged", "events": [event()]})

    status, _, _ = await post_raw(client, body, "text/plain", headers={"X": "1"})

    assert status == 401


async def test_body_over_the_cap_is_413(
    telemetry_app: AppFactory, event: EventFactory
) -> None:
    client = await telemetry_app(max_body_bytes=4096)
    padded = {"events": [event()], "padding": "x" * 5000}

    status, body, _ = await post_raw(client, json.dumps(padded))

    assert (status, body["error"]) == (413, "payload_too_large")


async def test_body_over_the_cap_without_content_length_is_413(
    telemetry_app: AppFactory,
) -> None:
    client = await telemetry_app(max_body_bytes=4096)

    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1000

    answer = await client.post(
        "/telemetry/client",
        data=chunks(),
        headers={"Content-Type": "application/json", **bearer(1)},
    )

    assert answer.status == 413


async def test_other_content_types_are_415(
    telemetry_app: AppFactory, event: EventFactory, subtests: pytest.Subtests
) -> None:
    client = await telemetry_app()

    for content_type in ["application/x-www-form-urlencoded", "multipart/form-data"]:
        with subtests.test(content_type):
            status, body, _ = await post_raw(
                client, json.dumps({"events": [event()]}), content_type
            )

            assert (status, body["error"]) == (415, "unsupported_media_type")


def _bad_batches(event: EventFactory) -> dict[str, dict[str, Any]]:
    """Each bad input; a bad event travels after a valid one (all or none)."""
    now = datetime.now(UTC)

    def after_valid(bad: dict[str, Any]) -> dict[str, Any]:
        return {"events": [event("resync"), bad]}

    return {
        "unknown type": after_valid(event("leader_elected")),
        "missing sessionId": after_valid(
            {k: v for k, v in event().items() if k != "sessionId"}
        ),
        "naive ts": after_valid({**event(), "ts": "2026-01-01T00:00:00"}),
        "ts in far future": after_valid(event(ts=now + timedelta(days=2))),
        "ts older than retention": after_valid(event(ts=now - timedelta(days=400))),
        "nested attr": after_valid(event(attrs={"latencyMs": {"a": 1}})),
        "list attr": after_valid(event(attrs={"tabs": [1, 2]})),
        "long attr string": after_valid(event(attrs={"why": "x" * 65})),
        "control character in attr": after_valid(event(attrs={"why": "a\u0000b"})),
        "too many attrs": after_valid(event(attrs={f"k{i}": i for i in range(17)})),
        "bad attr key": after_valid(event(attrs={"full name": "Jane"})),
        "long sessionId": after_valid(event(session_id="s" * 65)),
        "unknown field": after_valid({**event(), "email": "a@b.c"}),
        "org in body": {"events": [event()], "orgId": 2},
        "no events": {"events": []},
        "events not a list": {"events": "fast_empty"},
        "too many events": {"events": [event()] * 101},
    }


async def test_invalid_batches_are_422_with_reasons_and_nothing_is_stored(
    telemetry_app: AppFactory,
    event: EventFactory,
    stored_rows: RowReader,
    subtests: pytest.Subtests,
) -> None:
    client = await telemetry_app()

    for case, batch in _bad_batches(event).items():
        with subtests.test(case):
            status, answer, _ = await post_raw(client, json.dumps(batch))

            assert status == 422, answer
            assert answer["error"] == "validation_failed"
            assert answer["detail"]
            assert all(set(r) == {"field", "reason"} for r in answer["detail"])

    ok, _, _ = await post_raw(client, json.dumps({"events": [event("leader_lost")]}))
    assert ok == 202
    rows = await stored_rows_after_flush(client, stored_rows)
    assert [r["type"] for r in rows] == ["leader_lost"], "refused batches stored"


async def stored_rows_after_flush(
    client: TestClient[Any, Any], stored_rows: RowReader
) -> list[Any]:
    from telemetry_ingest.http import WRITER_KEY

    assert await client.app[WRITER_KEY].flush()
    return await stored_rows()


async def test_user_over_the_rate_limit_gets_429_with_retry_after(
    telemetry_app: AppFactory, event: EventFactory, stored_rows: RowReader
) -> None:
    client = await telemetry_app(rate_limit_per_minute=3)
    batch = json.dumps({"events": [event()]})

    statuses = [(await post_raw(client, batch))[0] for _ in range(5)]
    other_user, _, _ = await post_raw(client, batch, headers=bearer(1, user_id="u2"))
    _, body, headers = await post_raw(client, batch)

    assert statuses == [202, 202, 202, 429, 429]
    assert other_user == 202
    assert body["error"] == "too_many_requests"
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert len(await stored_rows_after_flush(client, stored_rows)) == 4


async def test_ip_over_its_rate_limit_gets_429_whatever_the_token(
    telemetry_app: AppFactory, event: EventFactory
) -> None:
    client = await telemetry_app(
        rate_limit_per_minute=100, rate_limit_per_ip_per_minute=4
    )
    batch = json.dumps({"events": [event()]})

    statuses = [
        (await post_raw(client, batch, headers=bearer(1, user_id=f"u{n}")))[0]
        for n in range(6)
    ]
    anonymous, _, headers = await post_raw(client, batch, headers={"X": "1"})

    assert statuses == [202, 202, 202, 202, 429, 429]
    assert anonymous == 429
    assert "Retry-After" in headers


async def test_behind_the_gateway_the_ip_limit_uses_the_last_forwarded_hop(
    telemetry_app: AppFactory, event: EventFactory
) -> None:
    client = await telemetry_app(
        rate_limit_per_minute=100,
        rate_limit_per_ip_per_minute=2,
        trust_forwarded_for=True,
    )
    batch = json.dumps({"events": [event()]})

    async def from_ip(forwarded_for: str, user: str) -> int:
        headers = {**bearer(1, user_id=user), "X-Forwarded-For": forwarded_for}
        return (await post_raw(client, batch, headers=headers))[0]

    first_client = [await from_ip("203.0.113.7", f"a{n}") for n in range(3)]
    spoofing = await from_ip("198.51.100.1, 203.0.113.7", "a9")
    second_client = [await from_ip("203.0.113.8", f"b{n}") for n in range(2)]

    assert first_client == [202, 202, 429]
    assert spoofing == 429, "a made-up first hop does not reset the limit"
    assert second_client == [202, 202]
