"""The guest check-in body every suite sends to the check-in API.

``guest(property_id)`` is a valid body for ``POST /v1/guest-checkins``; keyword
arguments change (or add) fields, for the tests that need a variation.
"""

from __future__ import annotations

from typing import Any


def guest(property_id: int = 11, **changes: Any) -> dict[str, Any]:
    """A valid check-in body for the property, with some fields changed."""
    body: dict[str, Any] = {
        "propertyId": property_id,
        "fullName": "Ada Example",
        "email": "ada@example.com",
        "phone": "+44 20 7946 0000",
        "address": "1 Test Street, London",
        "guestType": "foreign",
        "nationality": "GB",
        "idType": "passport",
        "idNumber": "P1234567",
        "roomNumber": "101",
        "numberOfGuests": 2,
        "checkInDate": "2026-12-03",
        "expectedCheckoutDate": "2026-12-05",
    }
    body.update(changes)
    return body
