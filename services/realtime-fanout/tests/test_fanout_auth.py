"""FC-7 and FC-8 at the fanout's edge: bad tokens are refused at once, and no
token ever receives another org's events."""

import asyncio
import time
from typing import Any

import jwt
import pytest
from realtime_fanout.http import HUB_KEY
from realtime_fanout.waiters import Hub

from tests.support.polling import poll_until
from tests.support.tokens import TEST_SECRET, token

SUBSCRIBE = "/v1/guest-checkin/realtime/subscribe"


def signed(**claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "user-x", "orgId": 1, "role": "ADMIN", "iat": now}
    payload["exp"] = now + 600
    payload.update(claims)
    return jwt.encode(payload, TEST_SECRET, algorithm="HS256")


def unsigned() -> str:
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    payload = jwt.utils.base64url_encode(
        b'{"sub":"u","orgId":2,"role":"ADMIN","exp":9999999999}'
    ).decode()
    return f"{header}.{payload}."


def tampered_to_org_2() -> str:
    header, _, signature = token(1).split(".")
    payload = jwt.utils.base64url_encode(
        b'{"sub":"u","orgId":2,"role":"ADMIN","exp":9999999999}'
    ).decode()
    return f"{header}.{payload}.{signature}"


@pytest.mark.parametrize(
    ("bearer_token", "status"),
    [
        (unsigned(), 401),
        (tampered_to_org_2(), 401),
        (signed(exp=int(time.time()) - 60), 401),
        (signed(iat=int(time.time()) + 3600), 401),
        (signed(role="GUEST"), 403),
        (signed(role=None), 403),
    ],
    ids=[
        "alg-none",
        "payload-edited",
        "expired",
        "iat-future",
        "role-unknown",
        "no-role",
    ],
)
async def test_a_bad_token_is_refused_at_once(
    fanout: Any, bearer_token: str, status: int
) -> None:
    client = await fanout()
    started = time.monotonic()
    async with client.get(
        SUBSCRIBE, headers={"Authorization": f"Bearer {bearer_token}"}
    ) as answer:
        assert answer.status == status
        assert (await answer.json())["error"] in {"invalid_token", "forbidden"}
    assert time.monotonic() - started < 0.5


async def test_a_token_issued_a_few_seconds_ahead_is_accepted_within_leeway(
    fanout: Any, positions: Any
) -> None:
    client = await fanout(realtime_wait_s=0.2)
    skewed = signed(iat=int(time.time()) + 2)
    async with client.get(
        SUBSCRIBE, headers={"Authorization": f"Bearer {skewed}"}
    ) as answer:
        assert answer.status == 200


async def test_an_admin_asking_for_another_orgs_property_never_gets_its_events(
    fanout: Any, event: Any
) -> None:
    client = await fanout(realtime_wait_s=0.5)
    hub: Hub = client.app[HUB_KEY]
    hub.publish(event(1, org_id=1))
    poll = asyncio.create_task(
        client.get(
            SUBSCRIBE,
            params={"propertyId": "21", "lastEventId": "1"},
            headers={"Authorization": f"Bearer {token(1)}"},
        )
    )
    await poll_until(lambda: asyncio.sleep(0, hub.waiter_count(1) == 1), "waiting")
    hub.publish(event(1, org_id=2, property_id=21))
    hub.publish(event(2, org_id=2, property_id=21))
    answer = await poll
    body = await answer.json()
    answer.release()
    assert (answer.status, body["events"]) == (200, [])
