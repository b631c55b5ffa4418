"""The fanout describes its routes (OpenAPI) and counts the polls it refuses."""

import asyncio
import re
from typing import Any

from realtime_fanout.http import HUB_KEY

from tests.support.polling import poll_until
from tests.support.tokens import bearer

SUBSCRIBE = "/v1/guest-checkin/realtime/subscribe"


async def test_the_openapi_document_lists_both_routes_and_every_refusal(
    fanout: Any,
) -> None:
    client = await fanout()
    async with client.get("/v1/guest-checkin/realtime/openapi.json") as answer:
        assert answer.status == 200
        document = await answer.json()
    subscribe = document["paths"][SUBSCRIBE]["get"]["responses"]
    assert set(subscribe) == {"200", "400", "401", "403", "429", "503"}
    assert "Retry-After" in subscribe["429"]["headers"]
    metrics = document["paths"]["/v1/guest-checkin/realtime/metrics"]["get"]
    assert set(metrics["responses"]) == {"200", "401", "403"}


async def _rejected(client: Any, reason: str) -> float:
    async with client.get("/metrics") as answer:
        text = await answer.text()
    found = re.search(
        rf'^fanout_polls_rejected_total{{reason="{reason}"}} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


async def test_refused_polls_are_counted_by_reason_on_metrics(fanout: Any) -> None:
    client = await fanout(max_waiters_per_org=1, realtime_wait_s=5)
    before = {
        reason: await _rejected(client, reason)
        for reason in ("bad_request", "unauthorized", "forbidden", "waiter_cap")
    }
    manager = bearer(1, "MANAGER", property_ids=[11])

    async def status(headers: dict[str, str], **query: str) -> int:
        async with client.get(SUBSCRIBE, params=query, headers=headers) as answer:
            code: int = answer.status
            return code

    held = asyncio.create_task(status(bearer(1)))
    hub = client.app[HUB_KEY]
    await poll_until(lambda: asyncio.sleep(0, hub.waiter_count(1) == 1), "held")
    assert await status(bearer(1)) == 429
    assert await status(bearer(1), lastEventId="x") == 400
    assert await status({"Authorization": "Bearer nope"}) == 401
    assert await status(manager, propertyId="12") == 403
    held.cancel()

    for reason in before:
        assert await _rejected(client, reason) == before[reason] + 1, reason
