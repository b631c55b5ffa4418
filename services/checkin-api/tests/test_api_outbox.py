"""Events through the outbox: seq order on the real broker, a broker that is away,
a database that is away, and one publishing relay among several API instances."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from checkin_api.app import RELAY_KEY
from checkin_api.settings import ApiSettings
from checkin_events import EventPublisher, GuestEvent, PublishFailed

from tests.support.infra import Infra
from tests.support.outbox import unpublished
from tests.support.polling import poll_until
from tests.support.tcp_proxy import proxy_to, through
from tests.support.tokens import bearer

Client = TestClient[Any, Any]
Guest = Callable[..., dict[str, Any]]


async def create(api: Client, org: int, body: dict[str, Any]) -> dict[str, Any]:
    answer = await api.post("/v1/guest-checkins", json=body, headers=bearer(org))
    assert answer.status == 201, await answer.text()
    return dict(await answer.json())


async def metric(api: Client, name: str) -> float:
    text = await (await api.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} not exported")


async def test_every_write_reaches_the_exchange_with_seq_1_2_3_in_order(
    api: Client, event_log: Any, org: int, other_org: int, make_guest: Guest
) -> None:
    record = await create(api, org, make_guest())
    base = f"/v1/guest-checkins/{record['id']}"
    await api.patch(base, json={"roomNumber": "7", "email": "b@example.com"},
                    headers=bearer(org))  # fmt: skip
    await api.post(base + "/checkout", headers=bearer(org))
    await create(api, other_org, make_guest(21))
    await api.delete(base, headers=bearer(org))

    events = await event_log.wait_for(org, 4)
    others = await event_log.wait_for(other_org, 1)

    assert [event.seq for event in events] == [1, 2, 3, 4]
    assert [event.event_type for event in events] == [
        "guest_created",
        "guest_updated",
        "guest_checked_out",
        "guest_deleted",
    ]
    assert events[1].metadata.changed_fields == ["email", "roomNumber"]
    assert all(event.entity_id == record["id"] for event in events)
    assert all(event.actor_user_id == f"user-{org}-admin" for event in events)
    assert [(event.seq, event.property_id) for event in others] == [(1, 21)]


async def test_events_carry_no_personal_data(
    api: Client, event_log: Any, org: int, make_guest: Guest
) -> None:
    record = await create(api, org, make_guest(fullName="Zelda Unique-Name"))
    await api.patch(
        f"/v1/guest-checkins/{record['id']}",
        json={"idNumber": "SECRET-42"},
        headers=bearer(org),
    )

    events = await event_log.wait_for(org, 2)

    wire = b"".join(event.to_json() for event in events)
    assert b"Zelda" not in wire
    assert b"SECRET-42" not in wire
    assert b"ada@example.com" not in wire


async def test_document_events_name_the_document_not_its_content(
    api: Client, event_log: Any, org: int, make_guest: Guest
) -> None:
    import aiohttp

    record = await create(api, org, make_guest())
    data = aiohttp.FormData(default_to_multipart=True)
    data.add_field("documentType", "id_card")
    data.add_field("file", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, filename="id.png")
    document = await (
        await api.post(
            f"/v1/guest-checkins/{record['id']}/documents",
            data=data,
            headers=bearer(org),
        )
    ).json()
    await api.put(
        f"/v1/guest-checkins/{record['id']}/documents/{document['id']}/extraction",
        json={"documentNumber": "X99", "expiryDate": "2031-01-01", "confidence": 0.5},
        headers=bearer(org),
    )

    events = await event_log.wait_for(org, 3)

    uploaded, extracted = events[1], events[2]
    assert uploaded.event_type == "guest_document_uploaded"
    assert uploaded.metadata.document_id == document["id"]
    assert uploaded.metadata.content_type == "image/png"
    assert extracted.event_type == "guest_document_extracted"
    assert extracted.metadata.extracted_fields == ["documentNumber", "expiryDate"]
    assert extracted.metadata.confidence == 0.5
    assert b"X99" not in extracted.to_json()


async def test_writes_succeed_while_the_broker_is_away_and_their_events_follow(
    infra: Infra,
    api_settings: ApiSettings,
    start_api: Any,
    event_log: Any,
    org: int,
    make_guest: Guest,
) -> None:
    broker = proxy_to(infra.amqp_url)  # not listening yet: connections are refused
    settings = api_settings.model_copy(
        update={"amqp_url": through(infra.amqp_url, broker)}
    )
    async with start_api(settings) as api:
        created = [await create(api, org, make_guest()) for _ in range(3)]
        ready = await api.get("/readyz")
        body = await ready.json()
        pending = await poll_until(
            lambda: _at_least(metric(api, "checkin_outbox_pending"), 3),
            "three pending events counted",
        )

        await broker.start()
        events = await event_log.wait_for(org, 3)
        await poll_until(
            lambda: _zero(unpublished(settings.database_url)), "outbox drained"
        )
        lag = await poll_until(
            lambda: _is_zero(metric(api, "checkin_outbox_lag_seconds")), "lag back"
        )
    await broker.stop()

    assert ready.status == 200
    assert body["info"]["broker"].startswith("disconnected")
    assert pending is True
    assert lag is True
    assert [event.seq for event in event_log.of_org(org)] == [1, 2, 3]
    assert [event.entity_id for event in events] == [r["id"] for r in created]


async def test_a_broker_connection_cut_mid_run_delays_events_but_loses_none(
    infra: Infra,
    api_settings: ApiSettings,
    start_api: Any,
    event_log: Any,
    org: int,
    make_guest: Guest,
) -> None:
    broker = proxy_to(infra.amqp_url)
    await broker.start()
    url = through(infra.amqp_url, broker) + "?reconnect_interval=0.2"
    settings = api_settings.model_copy(update={"amqp_url": url})
    async with start_api(settings) as api:
        await create(api, org, make_guest())
        await event_log.wait_for(org, 1)

        await broker.stop()
        for _ in range(3):
            await create(api, org, make_guest())
        await broker.start()
        await event_log.wait_for(org, 4)
        await poll_until(
            lambda: _zero(unpublished(settings.database_url)), "outbox drained"
        )
    await broker.stop()

    assert [event.seq for event in event_log.of_org(org)] == [1, 2, 3, 4]


async def test_a_batch_cut_by_a_failure_in_the_middle_goes_out_again_in_order(
    infra: Infra,
    api_settings: ApiSettings,
    start_api: Any,
    event_log: Any,
    org: int,
    make_guest: Guest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = proxy_to(infra.amqp_url)  # refused: the eight events wait in the outbox
    settings = api_settings.model_copy(
        update={"amqp_url": through(infra.amqp_url, broker)}
    )
    publish = EventPublisher.publish
    refused: list[int] = []

    async def refuse_seq_4_once(self: EventPublisher, event: GuestEvent) -> None:
        if event.org_id == org and event.seq == 4 and not refused:
            refused.append(event.seq)
            raise PublishFailed("nacked by the test")
        await publish(self, event)

    monkeypatch.setattr(EventPublisher, "publish", refuse_seq_4_once)
    async with start_api(settings) as api:
        for _ in range(8):
            await create(api, org, make_guest())
        await poll_until(
            lambda: _at_least(metric(api, "checkin_outbox_pending"), 8),
            "eight pending events",
        )

        await broker.start()
        # 1-3 and 5-8 reach the broker in one batch; 4-8 go out again after it.
        arrived = await event_log.wait_for(org, 3 + 4 + 5)
        await poll_until(
            lambda: _zero(unpublished(settings.database_url)), "outbox drained"
        )
    await broker.stop()

    seqs = [event.seq for event in arrived]
    assert refused == [4]
    assert seqs[:3] == [1, 2, 3]
    assert seqs[-5:] == [4, 5, 6, 7, 8]
    assert sorted({event.seq for event in arrived}) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert len({event.event_id for event in arrived}) == 8


async def test_a_database_that_does_not_answer_gives_503_quickly(
    infra: Infra,
    api_settings: ApiSettings,
    start_api: Any,
    org: int,
    make_guest: Guest,
) -> None:
    database = proxy_to(infra.database_url)
    await database.start()
    settings = api_settings.model_copy(
        update={"database_url": through(api_settings.database_url, database)}
    )
    async with start_api(settings) as api:
        await create(api, org, make_guest())

        database.blackhole = True
        database.cut()
        started = time.monotonic()
        write = await api.post(
            "/v1/guest-checkins", json=make_guest(), headers=bearer(org)
        )
        read = await api.get("/v1/guest-checkins", headers=bearer(org))
        elapsed = time.monotonic() - started
        problem = await write.json()
        ready = await api.get("/readyz")

        database.blackhole = False
        recovered = await poll_until(
            lambda: _created(api, org, make_guest()), "writes work again"
        )
    await database.stop()

    assert write.status == 503
    assert set(problem) == {"error", "detail"}
    assert read.status == 503
    assert elapsed < 5.0
    assert ready.status == 503
    assert recovered


async def test_only_one_relay_publishes_and_each_event_arrives_once(
    api_settings: ApiSettings,
    start_api: Any,
    event_log: Any,
    org: int,
    make_guest: Guest,
) -> None:
    async with start_api(api_settings) as first, start_api(api_settings) as second:
        leaders = await poll_until(
            lambda: _one_leader(first, second), "one relay leading"
        )
        for index in range(6):
            await create(first if index % 2 else second, org, make_guest())
        await event_log.wait_for(org, 6)
        await poll_until(
            lambda: _zero(unpublished(api_settings.database_url)), "outbox drained"
        )

    assert leaders == [True, False] or leaders == [False, True]
    assert [event.seq for event in event_log.of_org(org)] == [1, 2, 3, 4, 5, 6]


async def test_writes_are_counted_in_the_metrics(
    api: Client, org: int, make_guest: Guest
) -> None:
    before = await _writes(api)
    await create(api, org, make_guest())

    assert await _writes(api) == before + 1


async def _writes(api: Client) -> float:
    text = await (await api.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith('checkin_writes_total{type="guest_created"}'):
            return float(line.split()[1])
    return 0.0


async def _one_leader(first: Client, second: Client) -> list[bool] | None:
    leaders = [
        client.server.app[RELAY_KEY].is_leader  # type: ignore[union-attr]
        for client in (first, second)
    ]
    return leaders if sum(leaders) == 1 else None


async def _zero(count: Any) -> bool:
    return bool(await count == 0)


async def _at_least(value: Any, minimum: float) -> bool:
    return bool(await value >= minimum)


async def _is_zero(value: Any) -> bool:
    return bool(await value == 0)


async def _created(api: Client, org: int, body: dict[str, Any]) -> bool:
    answer = await api.post("/v1/guest-checkins", json=body, headers=bearer(org))
    return answer.status == 201
