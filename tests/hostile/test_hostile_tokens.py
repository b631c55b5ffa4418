"""Hostile tokens and tenant crossing against each running service (FC-7, FC-8).

Every bad token is answered at once with 401, a JSON body and the bearer
challenge; a token that verifies but grants no known role is 403. An RS256
deployment of the API refuses an HS256 token signed with its own public key. With
valid tokens, org 1 never sees org 2's records, events, metrics or telemetry, and a
MANAGER never gets a property outside ``propertyIds``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.guests import guest
from tests.support.infra import Infra, fresh_database
from tests.support.processes import ServiceProcess
from tests.support.realtime import CHECKINS, METRICS, SUBSCRIBE, api_process
from tests.support.tokens import TEST_SECRET, bearer

logger = logging.getLogger(__name__)

ORG_1, ORG_2 = 101, 202


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "user-1", "orgId": ORG_1, "role": "ADMIN", "iat": now}
    base["exp"] = now + 600
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def signed(payload: dict[str, Any], key: str = TEST_SECRET) -> str:
    return jwt.encode(payload, key, algorithm="HS256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    """A token built by hand, as an attacker would (pyjwt refuses to make these)."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    if header["alg"] == "none":
        return head + "."
    signature = hmac.new(key, head.encode(), hashlib.sha256).digest()
    return head + "." + b64(signature)


def tampered_to_org_2() -> str:
    head, _, signature = signed(claims()).split(".")
    return head + "." + b64(json.dumps(claims(orgId=ORG_2)).encode()) + "." + signature


BAD_TOKENS: dict[str, Callable[[], str]] = {
    "expired": lambda: signed(claims(exp=int(time.time()) - 120)),
    "not yet valid (nbf)": lambda: signed(claims(nbf=int(time.time()) + 3600)),
    "issued in an hour (iat)": lambda: signed(claims(iat=int(time.time()) + 3600)),
    "wrong signature": lambda: signed(claims(), "another-secret-0123456789abcdef0123"),
    "alg none": lambda: hand_signed({"alg": "none", "typ": "JWT"}, claims(), b""),
    "edited to org 2": tampered_to_org_2,
    "no sub": lambda: signed(claims(sub=None)),
    "no exp": lambda: signed(claims(exp=None)),
    "no orgId": lambda: signed(claims(orgId=None)),
    "orgId as a string": lambda: signed(claims(orgId=str(ORG_1))),
    "orgId negative": lambda: signed(claims(orgId=-1)),
    "propertyIds as a string": lambda: signed(claims(propertyIds="11")),
    "sub as a number": lambda: signed(claims(sub=123)),
    "exp as a string": lambda: signed(claims(exp="tomorrow")),
    "garbage": lambda: "not.a.token",
    "empty": lambda: "",
}
NO_ROLE_TOKENS: dict[str, Callable[[], str]] = {
    "no role": lambda: signed(claims(role=None)),
    "unknown role": lambda: signed(claims(role="SUPERUSER")),
    "role in lower case": lambda: signed(claims(role="admin")),
}


def probes(
    api: ServiceProcess, fanout: ServiceProcess, telemetry: ServiceProcess
) -> dict[str, str]:
    return {
        "api": api.url + CHECKINS,
        "fanout": fanout.url + SUBSCRIBE + "?lastEventId=0",
        "telemetry": telemetry.url + "/telemetry/summary",
    }


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10)
    ) as session:
        yield session


async def get(
    http: aiohttp.ClientSession, url: str, token: str
) -> tuple[int, Any, dict[str, str], float]:
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(url, headers=headers) as answer:
        body = await answer.json()
        return answer.status, body, dict(answer.headers), time.monotonic() - started


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_tokens_are_401_at_once_with_json_and_the_bearer_challenge(
    api: ServiceProcess,
    fanout: ServiceProcess,
    telemetry: ServiceProcess,
    http: aiohttp.ClientSession,
    case: str,
) -> None:
    token = BAD_TOKENS[case]()
    for service, url in probes(api, fanout, telemetry).items():
        status, body, headers, took = await get(http, url, token)
        assert (status, body["error"]) == (401, "invalid_token"), (service, body)
        assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"', service
        assert took < 1.0, (service, took)


@pytest.mark.parametrize("case", sorted(NO_ROLE_TOKENS))
async def test_tokens_without_a_known_role_are_403_at_once(
    api: ServiceProcess,
    fanout: ServiceProcess,
    telemetry: ServiceProcess,
    http: aiohttp.ClientSession,
    case: str,
) -> None:
    token = NO_ROLE_TOKENS[case]()
    for service, url in probes(api, fanout, telemetry).items():
        status, body, _, took = await get(http, url, token)
        assert (status, body["error"]) == (403, "forbidden"), (service, body)
        assert took < 1.0, (service, took)


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        .decode()
    )
    return private, public


@pytest.fixture(scope="module")
def rs256_api(
    infra: Infra, hostile_exchange: str, rsa_keys: tuple[str, str]
) -> Iterator[ServiceProcess]:
    with fresh_database(infra, "hostile_rs256") as database_url:
        process = api_process(
            database_url,
            infra.amqp_url,
            hostile_exchange,
            JWT_ALGORITHMS='["RS256"]',
            JWT_PUBLIC_KEY=rsa_keys[1],
        )
        process.start(timeout_s=30)
        try:
            yield process
        finally:
            process.terminate()


async def test_an_rs256_api_refuses_hs256_signed_with_its_public_key(
    rs256_api: ServiceProcess,
    rsa_keys: tuple[str, str],
    http: aiohttp.ClientSession,
) -> None:
    private, public = rsa_keys
    url = rs256_api.url + CHECKINS
    genuine = jwt.encode(claims(), private, algorithm="RS256")
    status, _, _, _ = await get(http, url, genuine)
    assert status == 200
    confused = hand_signed({"alg": "HS256", "typ": "JWT"}, claims(), public.encode())
    for token in (confused, signed(claims()), BAD_TOKENS["alg none"]()):
        status, body, headers, _ = await get(http, url, token)
        assert (status, body["error"]) == (401, "invalid_token"), body
        assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_org_1_never_sees_org_2s_records_events_metrics_or_telemetry(
    api: ServiceProcess,
    fanout: ServiceProcess,
    telemetry: ServiceProcess,
    http: aiohttp.ClientSession,
) -> None:
    org_1, org_2 = bearer(ORG_1), bearer(ORG_2)
    async with http.get(api.url + CHECKINS, headers=org_1) as listed:
        position_1 = (await listed.json())["position"]
    held = asyncio.create_task(
        get(
            http,
            f"{fanout.url}{SUBSCRIBE}?propertyId=21&lastEventId={position_1}",
            org_1["Authorization"].split()[1],
        )
    )
    async with http.post(api.url + CHECKINS, json=guest(21), headers=org_2) as made:
        assert made.status == 201
        record = await made.json()
    async with http.post(
        telemetry.url + "/telemetry/client",
        json={
            "events": [
                {
                    "type": "resync",
                    "ts": int(time.time() * 1000),
                    "sessionId": "s-2",
                    "tabId": "t-2",
                    "attrs": {},
                }
            ]
        },
        headers=org_2,
    ) as sent:
        assert sent.status == 202

    for path in (f"/{record['id']}", f"/{record['id']}/documents"):
        async with http.get(api.url + CHECKINS + path, headers=org_1) as answer:
            assert answer.status == 404, path
    async with http.patch(
        f"{api.url}{CHECKINS}/{record['id']}", json={"roomNumber": "9"}, headers=org_1
    ) as answer:
        assert answer.status == 404
    async with http.get(api.url + CHECKINS + "?propertyId=21", headers=org_1) as answer:
        assert (await answer.json())["items"] == []

    status, body, _, _ = await held
    assert (status, body["events"]) == (200, [])
    status, body, _, _ = await get(
        http, f"{fanout.url}{SUBSCRIBE}?lastEventId=0", org_1["Authorization"][7:]
    )
    assert ORG_2 not in {event["orgId"] for event in body["events"]}

    # What would leak another org is its id as a key or a label value; counts and
    # start times may contain the same digits by chance.
    async with http.get(fanout.url + METRICS, headers=org_1) as answer:
        assert str(ORG_2) not in _keys(await answer.json())
    for service in (api, fanout, telemetry):
        async with http.get(service.url + "/metrics") as answer:
            assert f'"{ORG_2}"' not in await answer.text(), service.module
    async with http.get(
        telemetry.url + f"/telemetry/summary?orgId={ORG_2}", headers=org_1
    ) as answer:
        summary = await answer.json()
    assert (summary["orgId"], summary["counts"]["resync"]) == (ORG_1, 0)


async def test_a_manager_gets_nothing_of_a_property_outside_property_ids(
    api: ServiceProcess,
    fanout: ServiceProcess,
    http: aiohttp.ClientSession,
) -> None:
    admin, manager = bearer(ORG_1), bearer(ORG_1, "MANAGER", property_ids=[11])
    async with http.post(api.url + CHECKINS, json=guest(12), headers=admin) as made:
        on_12 = await made.json()
    async with http.post(api.url + CHECKINS, json=guest(12), headers=manager) as made:
        assert made.status == 403
    async with http.get(api.url + CHECKINS + "?propertyId=12", headers=manager) as a:
        assert a.status == 403
    async with http.get(f"{api.url}{CHECKINS}/{on_12['id']}", headers=manager) as a:
        assert a.status in (403, 404)
    async with http.get(api.url + CHECKINS, headers=manager) as answer:
        assert {item["propertyId"] for item in (await answer.json())["items"]} <= {11}
    status, body, _, took = await get(
        http, f"{fanout.url}{SUBSCRIBE}?propertyId=12", manager["Authorization"][7:]
    )
    assert (status, body["error"]) == (403, "forbidden")
    assert took < 1.0
    status, body, _, _ = await get(
        http, f"{fanout.url}{SUBSCRIBE}?lastEventId=0", manager["Authorization"][7:]
    )
    assert status == 200
    assert {event["propertyId"] for event in body["events"]} <= {11}


def _keys(document: object) -> set[str]:
    """Every key of a JSON document, at any depth."""
    if isinstance(document, dict):
        return set(document) | {
            key for value in document.values() for key in _keys(value)
        }
    if isinstance(document, list):
        return {key for value in document for key in _keys(value)}
    return set()
