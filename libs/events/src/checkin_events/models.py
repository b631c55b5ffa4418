"""The event envelope and one model per guest check-in event type.

Every change to a guest check-in becomes exactly one event. The envelope fields are
the same for all types; what differs is ``eventType`` and the shape of ``metadata``,
which carries small, non-personal details only (field names, document ids, statuses),
never names, document numbers or other personal data.

On the wire the fields are camelCase JSON; in Python they are snake_case attributes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal, TypeAlias, get_args
from uuid import UUID, uuid4

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

SCHEMA_VERSION = 1

EventType: TypeAlias = Literal[
    "guest_created",
    "guest_updated",
    "guest_checked_out",
    "guest_deleted",
    "guest_document_uploaded",
    "guest_document_extracted",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

GuestStatus: TypeAlias = Literal["checked_in", "checked_out"]
DocumentType: TypeAlias = Literal["passport", "id_card", "visa", "other"]

PositiveId = Annotated[int, Field(ge=1, le=2**53)]
FieldName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]


class ContractError(ValueError):
    """Raised when bytes or data do not form a valid event of this contract."""


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class GuestCreatedMetadata(_Model):
    """A guest was checked in: the record's status at creation."""

    status: GuestStatus = "checked_in"


class GuestUpdatedMetadata(_Model):
    """Which fields of the record changed (names only, never values)."""

    changed_fields: Annotated[list[FieldName], Field(min_length=1, max_length=32)]


class GuestCheckedOutMetadata(_Model):
    """A guest was checked out."""

    status: Literal["checked_out"] = "checked_out"


class GuestDeletedMetadata(_Model):
    """A check-in record was deleted; nothing more to say."""


class GuestDocumentUploadedMetadata(_Model):
    """An identity document was attached to the record."""

    document_id: PositiveId
    document_type: DocumentType
    content_type: Literal["image/jpeg", "image/png", "application/pdf"]


class GuestDocumentExtractedMetadata(_Model):
    """The fields of a document were extracted or confirmed by staff."""

    document_id: PositiveId
    extracted_fields: Annotated[list[FieldName], Field(max_length=32)]
    confidence: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class _Envelope(_Model):
    event_id: UUID = Field(default_factory=uuid4)
    org_id: PositiveId
    property_id: PositiveId
    seq: PositiveId
    entity_type: Literal["guest_checkin"] = "guest_checkin"
    entity_id: PositiveId
    timestamp: AwareDatetime = Field(default_factory=_now)
    actor_user_id: Annotated[str, Field(min_length=1, max_length=128)]
    schema_version: Annotated[int, Field(ge=1)] = SCHEMA_VERSION

    @field_validator("timestamp")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @property
    def type_name(self) -> str:
        """The ``eventType`` of this event, as it appears on the wire."""
        return str(getattr(self, "event_type"))  # noqa: B009

    def to_json(self) -> bytes:
        """Serialise to the camelCase JSON the wire and the browsers use."""
        return self.model_dump_json(by_alias=True).encode()


class GuestCreated(_Envelope):
    """A guest was checked in (a new check-in record)."""

    event_type: Literal["guest_created"] = "guest_created"
    metadata: GuestCreatedMetadata = GuestCreatedMetadata()


class GuestUpdated(_Envelope):
    """Fields of a check-in record were edited."""

    event_type: Literal["guest_updated"] = "guest_updated"
    metadata: GuestUpdatedMetadata


class GuestCheckedOut(_Envelope):
    """A guest was checked out."""

    event_type: Literal["guest_checked_out"] = "guest_checked_out"
    metadata: GuestCheckedOutMetadata = GuestCheckedOutMetadata()


class GuestDeleted(_Envelope):
    """A check-in record was deleted."""

    event_type: Literal["guest_deleted"] = "guest_deleted"
    metadata: GuestDeletedMetadata = GuestDeletedMetadata()


class GuestDocumentUploaded(_Envelope):
    """An identity document was uploaded to a check-in record."""

    event_type: Literal["guest_document_uploaded"] = "guest_document_uploaded"
    metadata: GuestDocumentUploadedMetadata


class GuestDocumentExtracted(_Envelope):
    """The fields of an uploaded document were extracted or confirmed."""

    event_type: Literal["guest_document_extracted"] = "guest_document_extracted"
    metadata: GuestDocumentExtractedMetadata


GuestEvent: TypeAlias = Annotated[
    GuestCreated
    | GuestUpdated
    | GuestCheckedOut
    | GuestDeleted
    | GuestDocumentUploaded
    | GuestDocumentExtracted,
    Field(discriminator="event_type"),
]

_EVENT_ADAPTER: TypeAdapter[GuestEvent] = TypeAdapter(GuestEvent)


def parse_event(data: bytes | str) -> GuestEvent:
    """Parse wire JSON into the event model of its ``eventType``.

    Raises ``ContractError`` naming every problem: an unknown ``eventType``, a missing
    field, a field of the wrong type or metadata that type does not allow.
    """
    try:
        return _EVENT_ADAPTER.validate_json(data)
    except ValidationError as exc:
        raise ContractError(_describe(exc)) from exc


def event_from_dict(data: dict[str, object]) -> GuestEvent:
    """Build an event from already-decoded JSON (camelCase or snake_case keys)."""
    try:
        return _EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ContractError(_describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "event"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)
