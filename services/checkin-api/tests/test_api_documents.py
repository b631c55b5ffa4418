"""Identity documents: upload, list, download, extraction, and every refusal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.support.tokens import bearer

Client = TestClient[Any, Any]
Guest = Callable[..., dict[str, Any]]

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 200
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
PDF = b"%PDF-1.7\n" + b"1 0 obj\n" * 20
EXECUTABLE = b"MZ\x90\x00" + b"\x00" * 200


def form(
    content: bytes | None,
    document_type: str | None = "passport",
    declared: str = "image/jpeg",
) -> aiohttp.FormData:
    data = aiohttp.FormData(default_to_multipart=True)
    if document_type is not None:
        data.add_field("documentType", document_type)
    if content is not None:
        data.add_field("file", content, filename="scan.jpg", content_type=declared)
    return data


@pytest.fixture
async def checkin(api: Client, org: int, make_guest: Guest) -> dict[str, Any]:
    answer = await api.post(
        "/v1/guest-checkins", json=make_guest(), headers=bearer(org)
    )
    return dict(await answer.json())


async def upload(api: Client, org: int, checkin_id: int, data: Any) -> Any:
    return await api.post(
        f"/v1/guest-checkins/{checkin_id}/documents", data=data, headers=bearer(org)
    )


@pytest.mark.parametrize(
    ("content", "declared", "expected"),
    [
        (JPEG, "image/jpeg", "image/jpeg"),
        (PNG, "application/octet-stream", "image/png"),
        (PDF, "image/jpeg", "application/pdf"),
    ],
    ids=["jpeg", "png-declared-as-bytes", "pdf-declared-as-jpeg"],
)
async def test_upload_stores_the_document_typed_by_its_bytes(
    api: Client,
    org: int,
    checkin: dict[str, Any],
    content: bytes,
    declared: str,
    expected: str,
) -> None:
    answer = await upload(api, org, checkin["id"], form(content, declared=declared))

    document = await answer.json()
    assert answer.status == 201, document
    assert document["contentType"] == expected
    assert document["sizeBytes"] == len(content)
    assert document["documentType"] == "passport"
    assert document["extraction"] is None


async def test_documents_are_listed_and_downloaded_byte_for_byte(
    api: Client, org: int, checkin: dict[str, Any]
) -> None:
    base = f"/v1/guest-checkins/{checkin['id']}"
    first = await (await upload(api, org, checkin["id"], form(JPEG))).json()
    second = await (
        await upload(api, org, checkin["id"], form(PDF, document_type="visa"))
    ).json()

    listed = await (await api.get(base + "/documents", headers=bearer(org))).json()
    download = await api.get(f"{base}/documents/{second['id']}", headers=bearer(org))
    record = await (await api.get(base, headers=bearer(org))).json()

    assert [item["id"] for item in listed["items"]] == [first["id"], second["id"]]
    assert download.status == 200
    assert download.content_type == "application/pdf"
    assert await download.read() == PDF
    assert "attachment" in download.headers["Content-Disposition"]
    assert record["documentCount"] == 2


async def test_bytes_that_are_no_jpeg_png_or_pdf_are_415_whatever_they_claim(
    api: Client, org: int, checkin: dict[str, Any]
) -> None:
    answer = await upload(
        api, org, checkin["id"], form(EXECUTABLE, declared="image/jpeg")
    )

    assert answer.status == 415
    assert (await answer.json())["error"] == "unsupported_media_type"


async def test_a_json_body_instead_of_a_form_is_415(
    api: Client, org: int, checkin: dict[str, Any]
) -> None:
    answer = await api.post(
        f"/v1/guest-checkins/{checkin['id']}/documents",
        json={"documentType": "passport"},
        headers=bearer(org),
    )

    assert answer.status == 415


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (form(JPEG, document_type=None), "documentType"),
        (form(JPEG, document_type="selfie"), "documentType"),
        (form(None), "file"),
        (form(b""), "file"),
    ],
    ids=["no-type", "unknown-type", "no-file", "empty-file"],
)
async def test_an_incomplete_upload_is_422_naming_the_field(
    api: Client, org: int, checkin: dict[str, Any], data: Any, field: str
) -> None:
    answer = await upload(api, org, checkin["id"], data)

    problem = await answer.json()
    assert answer.status == 422
    assert field in {item["field"] for item in problem["detail"]}


async def test_a_document_over_the_default_10_mb_cap_is_413(
    api: Client, org: int, checkin: dict[str, Any]
) -> None:
    too_big = JPEG + b"\x00" * (10 * 1024 * 1024 + 1 - len(JPEG))

    answer = await upload(api, org, checkin["id"], form(too_big))
    listed = await (
        await api.get(
            f"/v1/guest-checkins/{checkin['id']}/documents", headers=bearer(org)
        )
    ).json()

    assert answer.status == 413
    assert listed["items"] == []


async def test_a_document_of_exactly_the_cap_is_accepted(
    start_api: Any, api_settings: Any, org: int, make_guest: Guest
) -> None:
    settings = api_settings.model_copy(update={"max_document_bytes": 4096})
    async with start_api(settings) as api:
        record = await (
            await api.post("/v1/guest-checkins", json=make_guest(), headers=bearer(org))
        ).json()
        exact = JPEG + b"\x00" * (4096 - len(JPEG))

        fits = await upload(api, org, record["id"], form(exact))
        over = await upload(api, org, record["id"], form(exact + b"\x00"))

    assert fits.status == 201
    assert over.status == 413


async def test_extraction_is_stored_on_the_document(
    api: Client, org: int, checkin: dict[str, Any]
) -> None:
    document = await (await upload(api, org, checkin["id"], form(JPEG))).json()
    url = f"/v1/guest-checkins/{checkin['id']}/documents/{document['id']}/extraction"

    answer = await api.put(
        url,
        json={
            "fullName": "Ada Example",
            "documentNumber": "P1234567",
            "nationality": "GB",
            "dateOfBirth": "1990-01-31",
            "expiryDate": "2030-01-01",
            "confidence": 0.93,
        },
        headers=bearer(org),
    )

    stored = await answer.json()
    assert answer.status == 200
    assert stored["extraction"]["documentNumber"] == "P1234567"
    assert stored["extraction"]["confidence"] == 0.93
    assert stored["extractedAt"] is not None


@pytest.mark.parametrize(
    "body",
    [{"confidence": 1.5}, {"dateOfBirth": "yesterday"}, {"passportPhoto": "x"}],
    ids=["confidence", "date", "unknown-field"],
)
async def test_invalid_extractions_are_422(
    api: Client, org: int, checkin: dict[str, Any], body: dict[str, Any]
) -> None:
    document = await (await upload(api, org, checkin["id"], form(JPEG))).json()
    url = f"/v1/guest-checkins/{checkin['id']}/documents/{document['id']}/extraction"

    answer = await api.put(url, json=body, headers=bearer(org))

    assert answer.status == 422


async def test_documents_of_another_org_or_record_are_404(
    api: Client, org: int, other_org: int, checkin: dict[str, Any], make_guest: Guest
) -> None:
    document = await (await upload(api, org, checkin["id"], form(JPEG))).json()
    other_record = await (
        await api.post("/v1/guest-checkins", json=make_guest(), headers=bearer(org))
    ).json()
    own = f"/v1/guest-checkins/{checkin['id']}/documents/{document['id']}"
    wrong_record = f"/v1/guest-checkins/{other_record['id']}/documents/{document['id']}"

    answers = [
        await api.get(own, headers=bearer(other_org)),
        await api.put(own + "/extraction", json={}, headers=bearer(other_org)),
        await upload(api, other_org, checkin["id"], form(JPEG)),
        await api.get(wrong_record, headers=bearer(org)),
        await api.put(wrong_record + "/extraction", json={}, headers=bearer(org)),
    ]

    assert [answer.status for answer in answers] == [404] * 5
