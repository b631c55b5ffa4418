"""Oversized and odd bodies, paths and queries against the running services.

Every answer must be a refusal with a JSON ``{error, detail}`` body and the right
status (never a 500, never a hang), and nothing the attacker sent may change what the
org sees: SQL fragments are data, ``../`` is no path, ids and cursors that cannot
exist are refused.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
import pytest

from tests.support.guests import guest
from tests.support.processes import ServiceProcess
from tests.support.realtime import CHECKINS, SUBSCRIBE
from tests.support.tokens import bearer

logger = logging.getLogger(__name__)

ORG = 7
HEADERS = bearer(ORG)
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 20_000 + b"1" + b"}" * 20_000


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=20)
    ) as session:
        yield session


async def send(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    sent = {**HEADERS, "Content-Type": content_type, **(headers or {})}
    async with http.request(method, url, data=body, headers=sent) as answer:
        text = await answer.text()
        assert answer.content_type == "application/json", (answer.status, text[:200])
        return answer.status, json.loads(text)


@pytest.mark.parametrize(
    ("name", "body", "content_type", "status"),
    [
        ("deep array", DEEP, "application/json", 400),
        ("deep object", DEEP_OBJECT, "application/json", 400),
        ("invalid UTF-8", b'{"fullName": "\xff\xfe"}', "application/json", 400),
        ("NUL bytes", b'{"fullName": "\x00"}', "application/json", 400),
        (
            "escaped NUL",
            json.dumps({**guest(11), "roomNumber": "1\x00"}).encode(),
            "application/json",
            422,
        ),
        ("not JSON", b"propertyId=11", "application/x-www-form-urlencoded", 415),
        ("XML", b"<guest/>", "application/xml", 415),
        ("JSON array", b"[1, 2]", "application/json", 422),
        (
            "5 MB string",
            json.dumps({"fullName": "x" * 5_000_000}).encode(),
            "application/json",
            422,
        ),
        ("12 MB body", b'{"a":"' + b"x" * 12_000_000 + b'"}', "application/json", 413),
    ],
)
async def test_odd_bodies_to_the_api_are_refused_with_json_never_500(
    api: ServiceProcess,
    http: aiohttp.ClientSession,
    name: str,
    body: bytes,
    content_type: str,
    status: int,
) -> None:
    answered, error = await send(http, "POST", api.url + CHECKINS, body, content_type)
    assert (answered, set(error)) == (status, {"error", "detail"}), (name, error)


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("deep array", DEEP[:30_000] + DEEP[-30_000:], 400),
        ("deep object", DEEP_OBJECT[:20_000] + DEEP_OBJECT[-20_000:], 400),
        ("invalid UTF-8", b'{"events": [{"type": "\xff"}]}', 400),
    ],
)
async def test_odd_bodies_to_telemetry_are_refused_with_json_never_500(
    telemetry: ServiceProcess,
    http: aiohttp.ClientSession,
    name: str,
    body: bytes,
    status: int,
) -> None:
    answered, error = await send(
        http, "POST", telemetry.url + "/telemetry/client", body
    )
    assert (answered, set(error)) == (status, {"error", "detail"}), (name, error)


async def create(
    http: aiohttp.ClientSession, api: ServiceProcess, **fields: Any
) -> Any:
    body = json.dumps({**guest(11), **fields}).encode()
    status, record = await send(http, "POST", api.url + CHECKINS, body)
    assert status == 201, record
    return record


async def test_sql_fragments_are_stored_as_text_and_change_nothing(
    api: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    fragment = "Robert'); DROP TABLE guest_checkins;--"
    record = await create(http, api, fullName=fragment, roomNumber="1 OR 1=1")
    status, fetched = await send(http, "GET", f"{api.url}{CHECKINS}/{record['id']}")
    assert (status, fetched["fullName"], fetched["roomNumber"]) == (
        200,
        fragment,
        "1 OR 1=1",
    )
    status, other = await send(http, "GET", api.url + CHECKINS, headers=bearer(ORG + 1))
    assert (status, other["items"]) == (200, [])


@pytest.mark.parametrize(
    "path",
    [
        "/..%2F..%2Fetc%2Fpasswd",
        "/1%20OR%201=1",
        "/1;DROP%20TABLE%20guest_checkins",
        "/-1",
        "/0",
        "/1e3",
        "/" + "9" * 400,
        "/%D9%A1",  # an Arabic-Indic digit one: isdigit() but no id
        "/1/documents/..%2F1",
        "/1/documents/-5",
    ],
)
async def test_ids_that_cannot_exist_are_404_at_once(
    api: ServiceProcess, http: aiohttp.ClientSession, path: str
) -> None:
    status, error = await send(http, "GET", api.url + CHECKINS + path)
    assert (status, error["error"]) == (404, "not_found"), error


async def test_a_dot_dot_path_does_not_leave_the_api(
    api: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    async with http.get(
        api.url + "/v1/guest-checkins/../../../etc/passwd", headers=HEADERS
    ) as answer:
        assert answer.status == 404
        assert "root:" not in await answer.text()


@pytest.mark.parametrize(
    "query",
    [
        "cursor=abc",
        "cursor=-1",
        "cursor=1%20OR%201=1",
        "cursor=" + "9" * 300,
        "limit=-5",
        "limit=100000",
        "propertyId=11'--",
        "propertyId=%D9%A1%D9%A1",
        "status=checked_in'%20OR%20'1'='1",
    ],
)
async def test_malformed_list_queries_are_400(
    api: ServiceProcess, http: aiohttp.ClientSession, query: str
) -> None:
    status, error = await send(http, "GET", f"{api.url}{CHECKINS}?{query}")
    assert (status, error["error"]) == (400, "bad_request"), error


@pytest.mark.parametrize(
    "query",
    [
        "lastEventId=zzz",
        "lastEventId=-1",
        "lastEventId=" + "9" * 300,
        "lastEventId=1e3",
        "lastEventId=%D9%A1",
        "lastEventId=1%20OR%201=1",
        "propertyId=0",
        "propertyId=-11",
        "propertyId=11'--",
    ],
)
async def test_malformed_cursors_and_properties_are_400_at_once_on_the_fanout(
    fanout: ServiceProcess, http: aiohttp.ClientSession, query: str
) -> None:
    status, error = await send(http, "GET", f"{fanout.url}{SUBSCRIBE}?{query}")
    assert (status, error["error"]) == (400, "bad_request"), error


def multipart(parts: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    boundary = "hostileboundary42"
    body = b""
    for name, data, filename in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None and filename.startswith("utf-8''"):
            disposition += f"; filename*={filename}"
        elif filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{boundary}\r\nContent-Disposition: ".encode()
        body += disposition.encode("utf-8", "surrogateescape") + b"\r\n\r\n"
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    ("name", "parts", "status"),
    [
        (
            "a script that says it is a PNG",
            [
                ("documentType", b"passport", None),
                ("file", b"<script>alert(1)</script>", "passport.png"),
            ],
            415,
        ),
        (
            "a file name that climbs out",
            [
                ("documentType", b"passport", None),
                ("file", b"%PDF-1.4\n%%EOF\n", "../../../etc/cron.d/x"),
            ],
            201,
        ),
        (
            "a NUL in the file name",
            [
                ("documentType", b"passport", None),
                ("file", b"%PDF-1.4\n%%EOF\n", "utf-8''scan%00.pdf"),
            ],
            201,
        ),
        (
            "control characters in a part header",
            [("\x0e\x1fname", b"x", None), ("documentType", b"passport", None)],
            400,
        ),
    ],
)
async def test_hostile_uploads_are_judged_by_their_bytes_never_500(
    api: ServiceProcess,
    http: aiohttp.ClientSession,
    name: str,
    parts: list[tuple[str, bytes, str | None]],
    status: int,
) -> None:
    record = await create(http, api)
    body, content_type = multipart(parts)
    url = f"{api.url}{CHECKINS}/{record['id']}/documents"
    answered, answer = await send(http, "POST", url, body, content_type)
    assert answered == status, (name, answer)
    if status == 201:
        assert answer["contentType"] == "application/pdf"
        async with http.get(f"{url}/{answer['id']}", headers=HEADERS) as download:
            assert download.status == 200
            disposition = download.headers["Content-Disposition"]
            assert disposition == f'attachment; filename="document-{answer["id"]}.pdf"'
