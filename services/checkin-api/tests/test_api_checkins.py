"""The check-in routes on a real database: lifecycle, errors, isolation, position."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from tests.support.tokens import TEST_SECRET, bearer, token

Client = TestClient[Any, Any]
Guest = Callable[..., dict[str, Any]]


async def create(api: Client, org: int, body: dict[str, Any], **claims: Any) -> Any:
    answer = await api.post(
        "/v1/guest-checkins", json=body, headers=bearer(org, **claims)
    )
    assert answer.status == 201, await answer.text()
    return await answer.json()


async def test_create_answers_201_with_the_camel_case_record(
    api: Client, org: int, make_guest: Guest
) -> None:
    record = await create(api, org, make_guest())

    assert record["orgId"] == org
    assert record["propertyId"] == 11
    assert record["fullName"] == "Ada Example"
    assert record["status"] == "checked_in"
    assert record["checkedOutAt"] is None
    assert record["documentCount"] == 0
    assert record["checkInDate"] == "2026-12-03"
    assert set(record) >= {"id", "createdAt", "updatedAt", "numberOfGuests"}


async def test_get_answers_the_stored_record(
    api: Client, org: int, make_guest: Guest
) -> None:
    created = await create(api, org, make_guest())

    answer = await api.get(f"/v1/guest-checkins/{created['id']}", headers=bearer(org))

    assert answer.status == 200
    assert await answer.json() == created


async def test_list_pages_newest_first_through_the_cursor(
    api: Client, org: int, make_guest: Guest
) -> None:
    ids = [(await create(api, org, make_guest()))["id"] for _ in range(5)]

    first = await (
        await api.get("/v1/guest-checkins?limit=2", headers=bearer(org))
    ).json()
    second = await (
        await api.get(
            f"/v1/guest-checkins?limit=2&cursor={first['nextCursor']}",
            headers=bearer(org),
        )
    ).json()
    third = await (
        await api.get(
            f"/v1/guest-checkins?limit=2&cursor={second['nextCursor']}",
            headers=bearer(org),
        )
    ).json()

    seen = [item["id"] for page in (first, second, third) for item in page["items"]]
    assert seen == list(reversed(ids))
    assert third["nextCursor"] is None
    assert first["position"] == 5


async def test_list_filters_by_property_and_status(
    api: Client, org: int, make_guest: Guest
) -> None:
    in_11 = await create(api, org, make_guest(11))
    in_12 = await create(api, org, make_guest(12))
    await api.post(f"/v1/guest-checkins/{in_12['id']}/checkout", headers=bearer(org))

    by_property = await (
        await api.get("/v1/guest-checkins?propertyId=11", headers=bearer(org))
    ).json()
    checked_out = await (
        await api.get("/v1/guest-checkins?status=checked_out", headers=bearer(org))
    ).json()

    assert [item["id"] for item in by_property["items"]] == [in_11["id"]]
    assert [item["id"] for item in checked_out["items"]] == [in_12["id"]]


async def test_list_position_is_read_in_the_same_snapshot_as_the_items(
    api: Client, org: int, make_guest: Guest
) -> None:
    """Every create adds one record and one event: a page of the whole org must
    hold exactly ``position`` records, even while creates commit concurrently."""

    async def list_all() -> dict[str, Any]:
        answer = await api.get("/v1/guest-checkins?limit=200", headers=bearer(org))
        return dict(await answer.json())

    creates = [create(api, org, make_guest()) for _ in range(30)]
    lists = [list_all() for _ in range(30)]
    results = await asyncio.gather(*creates, *lists)
    pages = results[30:]

    assert all(len(page["items"]) == page["position"] for page in pages), [
        (len(page["items"]), page["position"]) for page in pages
    ]
    final = await list_all()
    assert final["position"] == len(final["items"]) == 30


async def test_position_route_answers_the_org_sequence_number(
    api: Client, org: int, make_guest: Guest
) -> None:
    before = await (
        await api.get("/v1/guest-checkins/position", headers=bearer(org, "MANAGER"))
    ).json()
    created = await create(api, org, make_guest())
    await api.post(f"/v1/guest-checkins/{created['id']}/checkout", headers=bearer(org))

    after = await (
        await api.get("/v1/guest-checkins/position", headers=bearer(org))
    ).json()

    assert before == {"position": 0}
    assert after == {"position": 2}


async def test_patch_changes_only_the_given_fields(
    api: Client, org: int, make_guest: Guest
) -> None:
    created = await create(api, org, make_guest())

    answer = await api.patch(
        f"/v1/guest-checkins/{created['id']}",
        json={"roomNumber": "202", "numberOfGuests": 3},
        headers=bearer(org),
    )

    updated = await answer.json()
    assert answer.status == 200
    assert updated["roomNumber"] == "202"
    assert updated["numberOfGuests"] == 3
    assert updated["fullName"] == created["fullName"]


async def test_checkout_sets_the_status_and_twice_is_409(
    api: Client, org: int, make_guest: Guest
) -> None:
    created = await create(api, org, make_guest())
    url = f"/v1/guest-checkins/{created['id']}/checkout"

    first = await api.post(url, headers=bearer(org))
    second = await api.post(url, headers=bearer(org))

    record = await first.json()
    assert first.status == 200
    assert record["status"] == "checked_out"
    assert record["checkedOutAt"] is not None
    assert second.status == 409
    assert (await second.json())["error"] == "already_checked_out"


async def test_delete_is_for_admins_and_removes_the_record(
    api: Client, org: int, make_guest: Guest
) -> None:
    created = await create(api, org, make_guest())
    url = f"/v1/guest-checkins/{created['id']}"

    as_manager = await api.delete(url, headers=bearer(org, "MANAGER"))
    as_admin = await api.delete(url, headers=bearer(org))
    afterwards = await api.get(url, headers=bearer(org))

    assert as_manager.status == 403
    assert as_admin.status == 204
    assert afterwards.status == 404


# --- errors ------------------------------------------------------------------------


async def test_malformed_json_is_400(api: Client, org: int) -> None:
    answer = await api.post(
        "/v1/guest-checkins",
        data=b'{"propertyId": 11,',
        headers={**bearer(org), "Content-Type": "application/json"},
    )

    assert answer.status == 400
    assert (await answer.json())["error"] == "malformed_json"


async def test_a_body_that_is_not_json_is_415(api: Client, org: int) -> None:
    answer = await api.post(
        "/v1/guest-checkins",
        data=b"propertyId=11",
        headers={**bearer(org), "Content-Type": "application/x-www-form-urlencoded"},
    )

    assert answer.status == 415


async def test_invalid_fields_are_422_with_a_reason_per_field(
    api: Client, org: int, make_guest: Guest
) -> None:
    body = make_guest(
        email="not-an-email", numberOfGuests="2", guestType="alien", extra=1
    )
    del body["fullName"]

    answer = await api.post("/v1/guest-checkins", json=body, headers=bearer(org))

    problem = await answer.json()
    assert answer.status == 422
    assert problem["error"] == "validation_failed"
    fields = {item["field"] for item in problem["detail"]}
    assert {"email", "numberOfGuests", "guestType", "fullName", "extra"} <= fields


@pytest.mark.parametrize(
    "body",
    [[], "text", 7, None, {"checkInDate": "03/12/2026"}],
    ids=["array", "string", "number", "null", "bad-date"],
)
async def test_json_that_is_not_a_check_in_is_422(
    api: Client, org: int, body: Any
) -> None:
    answer = await api.post(
        "/v1/guest-checkins",
        data=json.dumps(body),
        headers=bearer(org) | {"Content-Type": "application/json"},
    )

    assert answer.status == 422
    assert (await answer.json())["detail"]


async def test_checkout_date_before_check_in_is_422(
    api: Client, org: int, make_guest: Guest
) -> None:
    created_body = make_guest(expectedCheckoutDate="2026-12-01")
    created = await api.post(
        "/v1/guest-checkins", json=created_body, headers=bearer(org)
    )
    record = await create(api, org, make_guest())
    patched = await api.patch(
        f"/v1/guest-checkins/{record['id']}",
        json={"checkInDate": "2026-12-09"},
        headers=bearer(org),
    )

    assert created.status == 422
    assert patched.status == 422
    assert "expectedCheckoutDate" in json.dumps(await patched.json())


@pytest.mark.parametrize(
    "changes",
    [{}, {"fullName": None}, {"propertyId": 12}, {"status": "checked_out"}],
    ids=["empty", "null", "property", "status"],
)
async def test_patch_refuses_what_it_cannot_change_with_422(
    api: Client, org: int, make_guest: Guest, changes: dict[str, Any]
) -> None:
    record = await create(api, org, make_guest())

    answer = await api.patch(
        f"/v1/guest-checkins/{record['id']}", json=changes, headers=bearer(org)
    )

    assert answer.status == 422


async def test_missing_token_is_401_with_the_bearer_challenge(api: Client) -> None:
    answer = await api.get("/v1/guest-checkins")

    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert set(await answer.json()) == {"error", "detail"}


def _signed(payload: dict[str, Any], key: str = TEST_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=alg)


@pytest.mark.parametrize(
    "make_token",
    [
        lambda org: token(org, ttl_s=-60),
        lambda org: _signed(
            {"sub": "u", "orgId": org, "role": "ADMIN", "exp": int(time.time()) + 60},
            key="another-secret-another-secret-another",
        ),
        lambda org: jwt.encode(
            {"sub": "u", "orgId": org, "role": "ADMIN", "exp": int(time.time()) + 60},
            None,
            algorithm="none",
        ),
        lambda org: _signed(
            {"sub": "u", "orgId": org, "role": "ADMIN", "iat": int(time.time()) + 3600,
             "exp": int(time.time()) + 7200}
        ),
        lambda org: _signed({"sub": "u", "orgId": org, "role": "ADMIN"}),
        lambda org: "not.a.token",
        lambda org: _edited(token(org + 1), org),
        lambda org: _signed(
            {"sub": "u", "orgId": org, "role": "ADMIN", "exp": int(time.time()) + 60},
            alg="HS512",
        ),
    ],
    ids=["expired", "wrong-key", "alg-none", "issued-in-future", "no-exp", "garbage",
         "payload-edited-to-another-org", "unpinned-algorithm"],
)  # fmt: skip
async def test_invalid_tokens_are_401(
    api: Client, org: int, make_token: Callable[[int], str]
) -> None:
    answer = await api.get(
        "/v1/guest-checkins", headers={"Authorization": f"Bearer {make_token(org)}"}
    )

    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def _edited(signed: str, org: int) -> str:
    """The token with its payload swapped for another org's, signature kept."""
    header, _, signature = signed.split(".")
    forged = jwt.utils.base64url_encode(
        json.dumps(
            {"sub": "u", "orgId": org, "role": "ADMIN", "exp": int(time.time()) + 60}
        ).encode()
    ).decode()
    return f"{header}.{forged}.{signature}"


async def test_a_token_issued_a_few_seconds_ahead_is_accepted(
    api: Client, org: int
) -> None:
    early = _signed(
        {
            "sub": "u",
            "orgId": org,
            "role": "ADMIN",
            "iat": int(time.time()) + 3,
            "exp": int(time.time()) + 60,
        }
    )

    answer = await api.get(
        "/v1/guest-checkins", headers={"Authorization": f"Bearer {early}"}
    )

    assert answer.status == 200


async def test_a_token_with_an_unknown_role_is_403(api: Client, org: int) -> None:
    answer = await api.get("/v1/guest-checkins", headers=bearer(org, "GUEST"))

    assert answer.status == 403


@pytest.mark.parametrize(
    "bad_id",
    ["abc", "-1", "0", "1.5", "99999999999999999999999999", "9007199254740993", "%00"],
)
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/checkout"),
     ("GET", "/documents"), ("GET", "/documents/1")],
)  # fmt: skip
async def test_ids_that_cannot_exist_are_404_not_500(
    api: Client, org: int, bad_id: str, method: str, suffix: str
) -> None:
    answer = await api.request(
        method,
        f"/v1/guest-checkins/{bad_id}{suffix}",
        json={"roomNumber": "1"},
        headers=bearer(org),
    )

    assert answer.status == 404
    assert (await answer.json())["error"] == "not_found"


@pytest.mark.parametrize(
    "query",
    ["propertyId=abc", "propertyId=-3", "limit=0", "limit=1000", "status=gone",
     "cursor=zzz", "cursor=99999999999999999999"],
)  # fmt: skip
async def test_malformed_list_queries_are_400(
    api: Client, org: int, query: str
) -> None:
    answer = await api.get(f"/v1/guest-checkins?{query}", headers=bearer(org))

    assert answer.status == 400


# --- isolation -----------------------------------------------------------------


async def test_another_org_never_sees_nor_changes_a_record(
    api: Client, org: int, other_org: int, make_guest: Guest
) -> None:
    record = await create(api, org, make_guest())
    url = f"/v1/guest-checkins/{record['id']}"
    outsider = bearer(other_org)

    answers = [
        await api.get(url, headers=outsider),
        await api.patch(url, json={"roomNumber": "9"}, headers=outsider),
        await api.post(url + "/checkout", headers=outsider),
        await api.delete(url, headers=outsider),
        await api.get(url + "/documents", headers=outsider),
    ]
    listed = await (await api.get("/v1/guest-checkins", headers=outsider)).json()
    still = await (await api.get(url, headers=bearer(org))).json()

    assert [answer.status for answer in answers] == [404] * 5
    assert listed == {"items": [], "position": 0, "nextCursor": None}
    assert still == record


async def test_a_manager_works_only_within_their_properties(
    api: Client, org: int, make_guest: Guest
) -> None:
    mine = await create(api, org, make_guest(11))
    theirs = await create(api, org, make_guest(12))
    manager = bearer(org, "MANAGER", property_ids=[11])

    create_elsewhere = await api.post(
        "/v1/guest-checkins", json=make_guest(12), headers=manager
    )
    list_elsewhere = await api.get("/v1/guest-checkins?propertyId=12", headers=manager)
    listed = await (await api.get("/v1/guest-checkins", headers=manager)).json()
    get_theirs = await api.get(f"/v1/guest-checkins/{theirs['id']}", headers=manager)
    patch_theirs = await api.patch(
        f"/v1/guest-checkins/{theirs['id']}", json={"roomNumber": "9"}, headers=manager
    )
    checkout_mine = await api.post(
        f"/v1/guest-checkins/{mine['id']}/checkout", headers=manager
    )

    assert create_elsewhere.status == 403
    assert list_elsewhere.status == 403
    assert [item["id"] for item in listed["items"]] == [mine["id"]]
    assert get_theirs.status == 404
    assert patch_theirs.status == 404
    assert checkout_mine.status == 200


# --- description and local mode ----------------------------------------------------


async def test_openapi_describes_every_route(api: Client) -> None:
    answer = await api.get("/v1/openapi.json")

    document = await answer.json()
    assert answer.status == 200
    assert set(document["paths"]) == {
        "/v1/guest-checkins",
        "/v1/guest-checkins/position",
        "/v1/guest-checkins/{checkinId}",
        "/v1/guest-checkins/{checkinId}/checkout",
        "/v1/guest-checkins/{checkinId}/documents",
        "/v1/guest-checkins/{checkinId}/documents/{docId}",
        "/v1/guest-checkins/{checkinId}/documents/{docId}/extraction",
    }
    create_schema = document["components"]["schemas"]["CheckinInput"]
    assert "expectedCheckoutDate" in create_schema["required"]


async def test_the_dev_token_route_exists_only_in_local_mode(
    api: Client, org: int
) -> None:
    answer = await api.post("/v1/dev/token", json={"orgId": org, "role": "ADMIN"})

    assert answer.status == 404
