"""The HTTP edge of the check-in API: routes, input parsing and error mapping.

Handlers authenticate, turn the request into domain inputs, call the store and
answer JSON. Domain errors and an unreachable database become ``{error, detail}``
answers here (and only here), so bad input never surfaces as a 500.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Annotated, Literal, get_args

import asyncpg
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from service_kit.auth import AuthSettings, Claims, mint_token
from service_kit.errors import ApiError, Handler, field_problems, unavailable
from service_kit.web import authenticate

from checkin_api.domain import (
    MAX_ID,
    AlreadyCheckedOut,
    CheckinChanges,
    CheckinInput,
    CheckinNotFound,
    DocumentNotFound,
    DocumentTooLarge,
    DocumentType,
    DomainError,
    ExtractionInput,
    GuestCheckin,
    GuestDocument,
    InvalidInput,
    Scope,
    UnsupportedDocument,
    detect_content_type,
    parse_input,
)
from checkin_api.openapi import openapi_document
from checkin_api.settings import ApiSettings
from checkin_api.store import CheckinStore, DatabaseNotReached, PageRequest

logger = logging.getLogger(__name__)

STORE_KEY = web.AppKey("checkin_store", CheckinStore)
SETTINGS_KEY = web.AppKey("api_settings", ApiSettings)
AUTH_SETTINGS_KEY = web.AppKey("auth_settings", AuthSettings)

DEFAULT_PAGE_SIZE = 50
DATABASE_RETRY_AFTER_S = 2
MAX_PAGE_SIZE = 200
_MULTIPART_OVERHEAD = 64 * 1024
_DIGITS = re.compile(r"[0-9]{1,16}")
_DOCUMENT_TYPES: tuple[str, ...] = get_args(DocumentType)

_DOMAIN_STATUS: dict[type[DomainError], tuple[int, str]] = {
    CheckinNotFound: (404, "not_found"),
    DocumentNotFound: (404, "not_found"),
    AlreadyCheckedOut: (409, "already_checked_out"),
    DocumentTooLarge: (413, "payload_too_large"),
    UnsupportedDocument: (415, "unsupported_media_type"),
}

DATABASE_DOWN = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.QueryCanceledError,
    asyncpg.AdminShutdownError,
)


@web.middleware
async def error_mapping(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map domain errors to their statuses and an unreachable database to 503.

    A database that has not answered since start is refused at once, without a log
    line per request (the start-up retries log it); one that went away is logged.
    """
    try:
        return await handler(request)
    except InvalidInput as exc:
        raise ApiError(422, "validation_failed", exc.problems) from exc
    except DomainError as exc:
        status, error = _DOMAIN_STATUS.get(type(exc), (400, "bad_request"))
        raise ApiError(status, error, str(exc)) from exc
    except DatabaseNotReached as exc:
        raise unavailable(
            "the database has not answered since the service started; try again",
            DATABASE_RETRY_AFTER_S,
        ) from exc
    except DATABASE_DOWN as exc:
        logger.warning(
            "database unavailable method=%s path=%s error=%r",
            request.method,
            request.path,
            exc,
        )
        raise unavailable(
            "the database is not answering; try again", DATABASE_RETRY_AFTER_S
        ) from exc


# --- request parsing -----------------------------------------------------------


def _scope(claims: Claims) -> Scope:
    properties = None if claims.property_ids is None else frozenset(claims.property_ids)
    return Scope(org_id=claims.org_id, property_ids=properties, user_id=claims.sub)


def _path_id(request: web.Request, name: str, missing: DomainError) -> int:
    text = request.match_info[name]
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_ID:
        raise missing
    return int(text)


def _checkin_id(request: web.Request) -> int:
    text = request.match_info["checkin_id"]
    return _path_id(request, "checkin_id", CheckinNotFound(f"{text[:20]} not found"))


def _document_id(request: web.Request) -> int:
    text = request.match_info["document_id"]
    return _path_id(request, "document_id", DocumentNotFound(f"{text[:20]} not found"))


async def _json_body(request: web.Request) -> bytes:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json")
    raw = await request.read()
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise InvalidInput([{"field": "body", "reason": "a JSON object is expected"}])
    return raw


def _query_id(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return None
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_ID:
        raise ApiError(400, "bad_request", f"{name} must be a positive integer")
    return int(text)


def _page_request(request: web.Request) -> PageRequest:
    status = request.query.get("status") or None
    if status not in (None, "checked_in", "checked_out"):
        raise ApiError(400, "bad_request", "status must be checked_in or checked_out")
    limit = _query_id(request, "limit") or DEFAULT_PAGE_SIZE
    if limit > MAX_PAGE_SIZE:
        raise ApiError(400, "bad_request", f"limit must be at most {MAX_PAGE_SIZE}")
    return PageRequest(
        property_id=_query_id(request, "propertyId"),
        status=status,
        limit=limit,
        before_id=_query_id(request, "cursor"),
    )


def _record_answer(
    record: GuestCheckin | GuestDocument, status: int = 200
) -> web.Response:
    """A record as the JSON answer (the bytes come straight from pydantic)."""
    return web.Response(
        body=record.wire_json(),
        status=status,
        content_type="application/json",
        charset="utf-8",
    )


# --- check-ins -----------------------------------------------------------------


async def create_checkin(request: web.Request) -> web.Response:
    """``POST /v1/guest-checkins``: check a guest in."""
    claims = authenticate(request)
    data = parse_input(CheckinInput, await _json_body(request))
    claims.require_property(data.property_id)
    record = await request.app[STORE_KEY].check_in(_scope(claims), data)
    return _record_answer(record, status=201)


async def list_checkins(request: web.Request) -> web.Response:
    """``GET /v1/guest-checkins``: a page of records and the snapshot's position."""
    claims = authenticate(request)
    page = _page_request(request)
    if page.property_id is not None:
        claims.require_property(page.property_id)
    result = await request.app[STORE_KEY].list_page(_scope(claims), page)
    return web.json_response(result.to_wire())


async def org_position(request: web.Request) -> web.Response:
    """``GET /v1/guest-checkins/position``: the org's current sequence number."""
    claims = authenticate(request)
    position = await request.app[STORE_KEY].position(_scope(claims))
    return web.json_response({"position": position})


async def get_checkin(request: web.Request) -> web.Response:
    """``GET /v1/guest-checkins/{id}``."""
    claims = authenticate(request)
    record = await request.app[STORE_KEY].get(_scope(claims), _checkin_id(request))
    return _record_answer(record)


async def update_checkin(request: web.Request) -> web.Response:
    """``PATCH /v1/guest-checkins/{id}``: change some fields of a record."""
    claims = authenticate(request)
    checkin_id = _checkin_id(request)
    changes = parse_input(CheckinChanges, await _json_body(request))
    record = await request.app[STORE_KEY].update(_scope(claims), checkin_id, changes)
    return _record_answer(record)


async def check_out(request: web.Request) -> web.Response:
    """``POST /v1/guest-checkins/{id}/checkout``: 409 when already checked out."""
    claims = authenticate(request)
    record = await request.app[STORE_KEY].check_out(
        _scope(claims), _checkin_id(request)
    )
    return _record_answer(record)


async def delete_checkin(request: web.Request) -> web.Response:
    """``DELETE /v1/guest-checkins/{id}``: ADMIN only."""
    claims = authenticate(request)
    claims.require_role("ADMIN")
    await request.app[STORE_KEY].delete(_scope(claims), _checkin_id(request))
    return web.Response(status=204)


# --- documents -----------------------------------------------------------------


async def upload_document(request: web.Request) -> web.Response:
    """``POST …/{id}/documents``: multipart ``documentType`` and ``file``.

    The type is decided by the file's magic bytes, not by what the upload declares;
    the size is capped while reading, so an oversized upload is never held whole.
    """
    claims = authenticate(request)
    checkin_id = _checkin_id(request)
    if request.content_type != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data")
    max_bytes = request.app[SETTINGS_KEY].max_document_bytes
    declared = request.content_length
    if declared is not None and declared > max_bytes + _MULTIPART_OVERHEAD:
        raise DocumentTooLarge(f"documents are limited to {max_bytes} bytes")
    document_type, filename, content = await _read_upload(request, max_bytes)
    content_type = detect_content_type(content)
    document = await request.app[STORE_KEY].add_document(
        _scope(claims), checkin_id, document_type, content_type, filename, content
    )
    return _record_answer(document, status=201)


async def _read_upload(
    request: web.Request, max_bytes: int
) -> tuple[DocumentType, str | None, bytes]:
    document_type: str | None = None
    filename: str | None = None
    content: bytes | None = None
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "documentType":
                document_type = (await _read_capped(part, 64)).decode(errors="replace")
            elif part.name == "file":
                filename = (part.filename or "").replace("\x00", "")[:255] or None
                content = await _read_capped(part, max_bytes)
            else:
                await part.release()
    except (ValueError, AssertionError, UnicodeDecodeError, BadHttpMessage) as exc:
        raise ApiError(400, "bad_request", "malformed multipart body") from exc
    problems = []
    if document_type not in _DOCUMENT_TYPES:
        problems.append(
            {
                "field": "documentType",
                "reason": "must be one of " + ", ".join(_DOCUMENT_TYPES),
            }
        )
    if not content:
        problems.append({"field": "file", "reason": "a non-empty file is required"})
    if problems:
        raise InvalidInput(problems)
    assert content is not None
    return document_type, filename, content  # type: ignore[return-value]


async def _read_capped(part: BodyPartReader, max_bytes: int) -> bytes:
    chunks = []
    size = 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise DocumentTooLarge(f"documents are limited to {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def list_documents(request: web.Request) -> web.Response:
    """``GET /v1/guest-checkins/{id}/documents``: the documents, without bytes."""
    claims = authenticate(request)
    documents = await request.app[STORE_KEY].list_documents(
        _scope(claims), _checkin_id(request)
    )
    return web.json_response({"items": [d.to_wire() for d in documents]})


_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}


async def download_document(request: web.Request) -> web.Response:
    """``GET /v1/guest-checkins/{id}/documents/{docId}``: the document's bytes."""
    claims = authenticate(request)
    document, content = await request.app[STORE_KEY].read_document(
        _scope(claims), _checkin_id(request), _document_id(request)
    )
    name = f"document-{document.id}.{_EXTENSIONS[document.content_type]}"
    return web.Response(
        body=content,
        content_type=document.content_type,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


async def put_extraction(request: web.Request) -> web.Response:
    """``PUT …/documents/{docId}/extraction``: the document's extracted fields."""
    claims = authenticate(request)
    checkin_id = _checkin_id(request)
    document_id = _document_id(request)
    extraction = parse_input(ExtractionInput, await _json_body(request))
    document = await request.app[STORE_KEY].record_extraction(
        _scope(claims), checkin_id, document_id, extraction
    )
    return _record_answer(document)


# --- local mode and description ------------------------------------------------


class DevTokenRequest(BaseModel):
    """What the demo page's login asks a token for (local mode only)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True
    )

    org_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    role: Literal["ADMIN", "MANAGER"]
    property_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None = None
    user_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None


async def dev_token(request: web.Request) -> web.Response:
    """``POST /v1/dev/token``: sign a token for the demo login (LOCAL_MODE only)."""
    raw = await _json_body(request)
    try:
        wanted = DevTokenRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidInput(field_problems(exc)) from exc
    token = mint_token(
        request.app[AUTH_SETTINGS_KEY],
        org_id=wanted.org_id,
        role=wanted.role,
        user_id=wanted.user_id or f"user-{wanted.org_id}-{wanted.role.lower()}",
        property_ids=wanted.property_ids,
    )
    return web.json_response({"token": token})


async def openapi(_: web.Request) -> web.Response:
    """``GET /v1/openapi.json``: the description of these routes."""
    return web.json_response(openapi_document())


def add_routes(app: web.Application, local_mode: bool) -> None:
    """Register every route of the API (the dev token route in local mode only)."""
    checkin = "/v1/guest-checkins/{checkin_id}"
    document = checkin + "/documents/{document_id}"
    routes: list[web.AbstractRouteDef] = [
        web.get("/v1/openapi.json", openapi),
        web.post("/v1/guest-checkins", create_checkin),
        web.get("/v1/guest-checkins", list_checkins),
        web.get("/v1/guest-checkins/position", org_position),
        web.get(checkin, get_checkin),
        web.patch(checkin, update_checkin),
        web.delete(checkin, delete_checkin),
        web.post(checkin + "/checkout", check_out),
        web.post(checkin + "/documents", upload_document),
        web.get(checkin + "/documents", list_documents),
        web.get(document, download_document),
        web.put(document + "/extraction", put_extraction),
    ]
    if local_mode:
        routes.append(web.post("/v1/dev/token", dev_token))
    app.add_routes(routes)
