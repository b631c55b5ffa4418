"""The event contract without a broker: models, round trips, refusals, routing."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest
from checkin_events import (
    EVENT_TYPES,
    ContractError,
    GuestCheckedOut,
    GuestCreated,
    GuestDeleted,
    GuestDocumentExtracted,
    GuestDocumentUploaded,
    GuestUpdated,
    event_from_dict,
    parse_event,
    routing_key,
    shard_bindings,
    shard_for,
)
from checkin_events.models import (
    GuestDocumentExtractedMetadata,
    GuestDocumentUploadedMetadata,
    GuestUpdatedMetadata,
)

ENVELOPE: dict[str, Any] = {
    "org_id": 7,
    "property_id": 71,
    "seq": 3,
    "entity_id": 42,
    "actor_user_id": "user-7",
}

ONE_OF_EACH = [
    GuestCreated(**ENVELOPE),
    GuestUpdated(
        **ENVELOPE,
        metadata=GuestUpdatedMetadata(changed_fields=["roomNumber", "email"]),
    ),
    GuestCheckedOut(**ENVELOPE),
    GuestDeleted(**ENVELOPE),
    GuestDocumentUploaded(
        **ENVELOPE,
        metadata=GuestDocumentUploadedMetadata(
            document_id=5, document_type="passport", content_type="image/png"
        ),
    ),
    GuestDocumentExtracted(
        **ENVELOPE,
        metadata=GuestDocumentExtractedMetadata(
            document_id=5, extracted_fields=["documentNumber"], confidence=0.8
        ),
    ),
]


def wire(**changes: Any) -> dict[str, Any]:
    """A valid ``guest_created`` as camelCase JSON, with some fields changed."""
    data = json.loads(GuestCreated(**ENVELOPE).to_json())
    data.update(changes)
    return dict(data)


def test_there_is_one_model_per_event_type() -> None:
    assert sorted(event.event_type for event in ONE_OF_EACH) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("event", ONE_OF_EACH, ids=lambda event: event.event_type)
def test_every_event_type_survives_a_json_round_trip(event: Any) -> None:
    parsed = parse_event(event.to_json())

    assert parsed == event
    assert type(parsed) is type(event)


def test_the_wire_form_is_camel_case_with_the_whole_envelope() -> None:
    data = json.loads(ONE_OF_EACH[1].to_json())

    assert set(data) == {
        "eventId",
        "eventType",
        "orgId",
        "propertyId",
        "seq",
        "entityType",
        "entityId",
        "timestamp",
        "actorUserId",
        "metadata",
        "schemaVersion",
    }
    assert data["metadata"] == {"changedFields": ["roomNumber", "email"]}
    assert data["entityType"] == "guest_checkin"
    assert UUID(data["eventId"])
    assert data["timestamp"].endswith("Z") or data["timestamp"].endswith("+00:00")


def test_a_snake_case_dict_builds_the_same_event() -> None:
    event = event_from_dict({**ENVELOPE, "event_type": "guest_deleted"})

    assert isinstance(event, GuestDeleted)
    assert event.seq == 3


def test_an_unknown_event_type_is_refused_naming_the_field() -> None:
    with pytest.raises(ContractError) as refused:
        parse_event(json.dumps(wire(eventType="guest_teleported")))

    assert "eventType" in str(refused.value) or "event_type" in str(refused.value)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"seq": "three"}, "seq"),
        ({"orgId": -1}, "orgId"),
        ({"orgId": 2**60}, "orgId"),
        ({"entityId": None}, "entityId"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": "2026-12-03T10:00:00"}, "timestamp"),
        ({"actorUserId": ""}, "actorUserId"),
        ({"metadata": {"status": "checked_in", "fullName": "Ada"}}, "fullName"),
        ({"entityType": "invoice"}, "entityType"),
        ({"surprise": 1}, "surprise"),
    ],
    ids=lambda value: str(value),
)
def test_wrong_field_types_are_refused_with_a_clear_message(
    changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(ContractError) as refused:
        parse_event(json.dumps(wire(**changes)))

    assert field in str(refused.value)


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b"{}", b"\xff\xfe"])
def test_bytes_that_are_no_event_are_refused(data: bytes) -> None:
    with pytest.raises(ContractError):
        parse_event(data)


def test_updated_metadata_holds_field_names_never_values() -> None:
    with pytest.raises(ContractError):
        event_from_dict(
            {
                **ENVELOPE,
                "event_type": "guest_updated",
                "metadata": {"changedFields": ["Ada Lovelace, 10 Downing St"]},
            }
        )


def test_a_uploaded_document_must_be_one_of_the_accepted_types() -> None:
    with pytest.raises(ContractError) as refused:
        event_from_dict(
            {
                **ENVELOPE,
                "event_type": "guest_document_uploaded",
                "metadata": {
                    "documentId": 1,
                    "documentType": "passport",
                    "contentType": "application/x-msdownload",
                },
            }
        )

    assert "contentType" in str(refused.value)


def test_the_routing_key_puts_shard_and_org_first() -> None:
    assert routing_key(7, 71, "guest_created", shard_count=4) == "3.7.71.guest_created"
    assert routing_key(16, 1, "guest_deleted") == "0.16.1.guest_deleted"


def test_an_org_always_lands_on_the_same_shard_within_range() -> None:
    shards = {shard_for(org, 8) for org in range(1, 1000)}

    assert shards == set(range(8))
    assert shard_for(12345, 8) == shard_for(12345, 8)
    with pytest.raises(ValueError):
        shard_for(1, 0)


def test_shard_bindings_select_the_shards_an_instance_owns() -> None:
    assert shard_bindings(None, 16) == ["#"]
    assert shard_bindings([3, 1, 3], 16) == ["1.#", "3.#"]
    with pytest.raises(ValueError):
        shard_bindings([16], 16)
    with pytest.raises(ValueError):
        shard_bindings([-1], 16)
