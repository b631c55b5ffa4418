"""Guest check-ins as the API knows them: inputs, records, rules and domain errors.

Inputs are validated by pydantic models in strict JSON mode (a number sent as a
string is refused, not guessed). Records are what the API answers, camelCase on the
wire. The errors here say what went wrong in the product's terms; the HTTP edge maps
them to statuses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from service_kit.errors import field_problems

logger = logging.getLogger(__name__)

MAX_ID = 2**53
"""Ids and sequence numbers stay below 2**53 so JavaScript clients read them exactly."""

DocumentType = Literal["passport", "id_card", "visa", "other"]
DocumentContentType = Literal["image/jpeg", "image/png", "application/pdf"]
GuestStatus = Literal["checked_in", "checked_out"]

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
ShortText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)
]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
    ),
]
Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 ()./-]{3,31}$"),
]
Address = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)
]
RoomNumber = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=16)
]
GuestCount = Annotated[int, Field(ge=1, le=50)]
IdType = Literal["passport", "id_card", "driving_license", "visa", "other"]


# --- domain errors -------------------------------------------------------------


class DomainError(Exception):
    """A request the product refuses, said in the product's terms."""


class CheckinNotFound(DomainError):
    """No check-in with that id that this user may see (other orgs' ids included)."""


class DocumentNotFound(DomainError):
    """No document with that id on that check-in."""


class AlreadyCheckedOut(DomainError):
    """The guest was checked out before; checking out twice is refused."""


class DocumentTooLarge(DomainError):
    """The uploaded document is larger than the configured cap."""


class UnsupportedDocument(DomainError):
    """The uploaded bytes are not a JPEG, PNG or PDF, whatever they claim to be."""


class InvalidInput(DomainError):
    """Input that breaks the rules; ``problems`` names each field and why."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['field']}: {p['reason']}" for p in problems))
        self.problems = problems


# --- who is asking -------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """The org, the properties (``None`` = all) and the user a request acts for."""

    org_id: int
    property_ids: frozenset[int] | None
    user_id: str

    def may_see(self, property_id: int) -> bool:
        """True when the user may see and change records of the property."""
        return self.property_ids is None or property_id in self.property_ids


# --- inputs --------------------------------------------------------------------


class _Input(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        frozen=True,
    )

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold U+0000: refused here as input, not at the
        # database as a 500.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class CheckinInput(_Input):
    """What checking a guest in needs."""

    property_id: Id
    full_name: Name
    email: Email
    phone: Phone
    address: Address
    guest_type: Literal["domestic", "foreign"]
    nationality: ShortText
    id_type: IdType
    id_number: ShortText
    room_number: RoomNumber
    number_of_guests: GuestCount
    check_in_date: date
    expected_checkout_date: date

    @model_validator(mode="after")
    def _checkout_not_before_check_in(self) -> CheckinInput:
        if self.expected_checkout_date < self.check_in_date:
            raise ValueError("expectedCheckoutDate is before checkInDate")
        return self


class CheckinChanges(_Input):
    """The fields a PATCH may change; absent fields stay as they are."""

    full_name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    address: Address | None = None
    guest_type: Literal["domestic", "foreign"] | None = None
    nationality: ShortText | None = None
    id_type: IdType | None = None
    id_number: ShortText | None = None
    room_number: RoomNumber | None = None
    number_of_guests: GuestCount | None = None
    check_in_date: date | None = None
    expected_checkout_date: date | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> CheckinChanges:
        nulls = [name for name in self.model_fields_set if getattr(self, name) is None]
        if nulls:
            raise ValueError(
                "fields may be changed but not cleared: " + ", ".join(nulls)
            )
        if not self.model_fields_set:
            raise ValueError("no field to change")
        return self

    def given(self) -> dict[str, Any]:
        """The fields the caller sent, by column name."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class ExtractionInput(_Input):
    """The fields of a document as extracted or confirmed by staff."""

    full_name: Name | None = None
    document_number: ShortText | None = None
    nationality: ShortText | None = None
    date_of_birth: date | None = None
    issue_date: date | None = None
    expiry_date: date | None = None
    confidence: Annotated[float, Field(ge=0.0, le=1.0)] | None = None

    def extracted_fields(self) -> list[str]:
        """The camelCase names of the fields given (values never leave the record)."""
        return sorted(
            to_camel(name)
            for name in self.model_fields_set
            if name != "confidence" and getattr(self, name) is not None
        )


InputT = TypeVar("InputT", bound=_Input)


def parse_input(model: type[InputT], raw: bytes) -> InputT:
    """Validate a JSON body against an input model or raise ``InvalidInput``."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidInput(field_problems(exc)) from exc


def check_dates(check_in_date: date, expected_checkout_date: date) -> None:
    """Refuse a stay whose expected checkout is before its check-in."""
    if expected_checkout_date < check_in_date:
        raise InvalidInput(
            [
                {
                    "field": "expectedCheckoutDate",
                    "reason": "expectedCheckoutDate is before checkInDate",
                }
            ]
        )


_SIGNATURES: tuple[tuple[bytes, DocumentContentType], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"%PDF-", "application/pdf"),
)


def detect_content_type(content: bytes) -> DocumentContentType:
    """The real type of a document from its first bytes, or ``UnsupportedDocument``.

    The declared content type of an upload is the sender's claim; the magic bytes
    are what a viewer will actually open.
    """
    for signature, content_type in _SIGNATURES:
        if content.startswith(signature):
            return content_type
    raise UnsupportedDocument("only JPEG, PNG and PDF documents are accepted")


# --- records -------------------------------------------------------------------


class _Record(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True
    )

    def to_wire(self) -> dict[str, Any]:
        """The camelCase JSON-ready dict the API answers with."""
        return self.model_dump(mode="json", by_alias=True)

    def wire_json(self) -> bytes:
        """``to_wire`` as JSON bytes, serialised by pydantic's core in one step."""
        return self.model_dump_json(by_alias=True).encode()


class GuestCheckin(_Record):
    """A guest check-in as stored."""

    id: int
    org_id: int
    property_id: int
    full_name: str
    email: str
    phone: str
    address: str
    guest_type: str
    nationality: str
    id_type: str
    id_number: str
    room_number: str
    number_of_guests: int
    check_in_date: date
    expected_checkout_date: date
    status: GuestStatus
    checked_out_at: datetime | None
    created_at: datetime
    updated_at: datetime
    document_count: int


class Extraction(_Record):
    """Extracted document fields as stored on the document."""

    full_name: str | None = None
    document_number: str | None = None
    nationality: str | None = None
    date_of_birth: date | None = None
    issue_date: date | None = None
    expiry_date: date | None = None
    confidence: float | None = None


class GuestDocument(_Record):
    """An identity document attached to a check-in (without its bytes)."""

    id: int
    checkin_id: int
    document_type: DocumentType
    content_type: DocumentContentType
    filename: str | None
    size_bytes: int
    created_at: datetime
    extraction: Extraction | None
    extracted_at: datetime | None


class CheckinPage(_Record):
    """One page of the list and the org ``position`` read in the same snapshot."""

    items: list[GuestCheckin]
    position: int
    next_cursor: str | None
