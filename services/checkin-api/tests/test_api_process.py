"""The check-in API as a real process: ``python -m checkin_api`` end to end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.support.infra import Infra
from tests.support.processes import ServiceProcess
from tests.support.tokens import AUTH_ENV

Guest = Callable[..., dict[str, Any]]


async def test_the_process_serves_local_logins_writes_events_and_stops_on_sigterm(
    infra: Infra,
    api_database: str,
    exchange_name: str,
    event_log: Any,
    org: int,
    make_guest: Guest,
) -> None:
    service = ServiceProcess(
        "checkin_api",
        {
            **AUTH_ENV,
            "DATABASE_URL": api_database,
            "AMQP_URL": infra.amqp_url,
            "EVENTS_EXCHANGE": exchange_name,
            "LOCAL_MODE": "true",
        },
    )
    await asyncio.to_thread(service.start)
    try:
        async with aiohttp.ClientSession(service.url) as http:
            login = await http.post(
                "/v1/dev/token", json={"orgId": org, "role": "ADMIN"}
            )
            token = (await login.json())["token"]
            bad_login = await http.post(
                "/v1/dev/token", json={"orgId": "one", "role": "ADMIN"}
            )
            bad_login_body = await bad_login.json()
            headers = {"Authorization": f"Bearer {token}"}
            created = await http.post(
                "/v1/guest-checkins",
                json=make_guest(fullName="Quentin Processname"),
                headers=headers,
            )
            record = await created.json()
            events = await event_log.wait_for(org, 1)
            ready = await http.get("/readyz")
            readiness = await ready.json()
    finally:
        started = time.monotonic()
        code = await asyncio.to_thread(service.terminate)
        stopped_in = time.monotonic() - started

    assert login.status == 200
    assert bad_login.status == 422
    assert [p["field"] for p in bad_login_body["detail"]] == ["orgId"]
    assert created.status == 201
    assert [(event.seq, event.entity_id) for event in events] == [(1, record["id"])]
    assert ready.status == 200
    assert readiness["info"]["broker"] == "connected (leader)"
    assert code == 0
    assert stopped_in < 8
    logs = service.logs()
    assert "checkin-api stopped" in logs
    assert "Quentin" not in logs
