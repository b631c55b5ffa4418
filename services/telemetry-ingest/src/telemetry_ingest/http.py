"""HTTP edge of telemetry-ingest: the batch endpoint, the summary, CORS, OpenAPI.

``POST /telemetry/client`` takes ``{"events": [...]}`` as ``application/json`` or as
``text/plain`` carrying JSON: a string sent with ``navigator.sendBeacon`` or
``fetch(..., {keepalive: true})`` is ``text/plain``, which needs no CORS preflight.
A beacon cannot set headers, so when no ``Authorization`` header is present the
token may travel as ``"token"`` inside the body instead; it is verified the same way.
The org and the user of every stored event come from the token, never from the body.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from service_kit.auth import Claims, Forbidden, InvalidToken
from service_kit.errors import ApiError, Handler, field_problems, unavailable
from service_kit.web import VERIFIER_KEY, authenticate

from telemetry_ingest.metrics import EVENTS_ACCEPTED, EVENTS_REJECTED
from telemetry_ingest.models import (
    Summary,
    TelemetryBatch,
    timestamp_problems,
)
from telemetry_ingest.ratelimit import RateLimited, RequestLimiter
from telemetry_ingest.settings import TelemetrySettings
from telemetry_ingest.store import (
    DATABASE_ERRORS,
    DatabaseNotReached,
    EventRow,
    EventStore,
)
from telemetry_ingest.summary import summarise_org
from telemetry_ingest.writer import EventWriter, WriterUnavailable

logger = logging.getLogger(__name__)

SETTINGS_KEY = web.AppKey("settings", TelemetrySettings)
STORE_KEY = web.AppKey("event_store", EventStore)
WRITER_KEY = web.AppKey("event_writer", EventWriter)
LIMITER_KEY = web.AppKey("request_limiter", RequestLimiter)

ACCEPTED_CONTENT_TYPES = {"application/json", "text/plain"}
MAX_AHEAD = timedelta(hours=1)
DEFAULT_SUMMARY_WINDOW = timedelta(hours=24)
SUMMARY_RETRY_AFTER_S = 5


def _refuse(reason: str, error: ApiError, events: int = 1) -> ApiError:
    EVENTS_REJECTED.labels(reason=reason).inc(events)
    logger.info("batch refused reason=%s status=%d", reason, error.status)
    return error


def client_address(request: web.Request, trust_forwarded_for: bool) -> str:
    """The caller's IP: the gateway's last ``X-Forwarded-For`` hop when trusted."""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if trust_forwarded_for and forwarded.strip():
        return forwarded.split(",")[-1].strip()
    return request.remote or "unknown"


async def _read_json(request: web.Request, max_bytes: int) -> Any:
    if request.content_type not in ACCEPTED_CONTENT_TYPES:
        raise _refuse(
            "unsupported_media_type",
            ApiError(415, "unsupported_media_type", "send application/json"),
        )
    too_large = ApiError(413, "payload_too_large", f"body over {max_bytes} bytes")
    if (request.content_length or 0) > max_bytes:
        raise _refuse("too_large", too_large)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _refuse("too_large", too_large) from None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _refuse(
            "malformed_json", ApiError(400, "malformed_json", f"malformed JSON: {exc}")
        ) from None


def _authenticate(request: web.Request, body_token: object) -> Claims:
    try:
        if "Authorization" in request.headers or not isinstance(body_token, str):
            return authenticate(request)
        return request.app[VERIFIER_KEY].verify(body_token)
    except InvalidToken as exc:
        raise _refuse("unauthorized", exc) from None
    except Forbidden as exc:
        raise _refuse("forbidden", exc) from None


def _validate(payload: Any, settings: TelemetrySettings) -> TelemetryBatch:
    events = payload.get("events") if isinstance(payload, dict) else None
    if isinstance(events, list) and len(events) > settings.max_events_per_batch:
        raise _refuse(
            "too_many_events",
            ApiError(
                422,
                "validation_failed",
                [
                    {
                        "field": "events",
                        "reason": f"at most {settings.max_events_per_batch} events",
                    }
                ],
            ),
            len(events),
        )
    try:
        batch = TelemetryBatch.model_validate(payload)
    except ValidationError as exc:
        reasons = field_problems(exc)
        count = len(events) if isinstance(events, list) else 1
        raise _refuse(
            "invalid", ApiError(422, "validation_failed", reasons), count
        ) from None
    problems = timestamp_problems(
        batch,
        datetime.now(UTC),
        timedelta(days=settings.retention_days),
        MAX_AHEAD,
    )
    if problems:
        raise _refuse(
            "invalid", ApiError(422, "validation_failed", problems), len(batch.events)
        )
    return batch


async def post_client_events(request: web.Request) -> web.Response:
    """Accept a batch of client events for storage: 202 ``{accepted: n}``."""
    settings = request.app[SETTINGS_KEY]
    limiter = request.app[LIMITER_KEY]
    try:
        await limiter.hit_ip(client_address(request, settings.trust_forwarded_for))
        claims = authenticate(request) if "Authorization" in request.headers else None
        if claims is not None:
            await limiter.hit_user(claims.org_id, claims.sub)
    except RateLimited as exc:
        raise _too_many(exc) from None
    except InvalidToken as exc:
        raise _refuse("unauthorized", exc) from None
    except Forbidden as exc:
        raise _refuse("forbidden", exc) from None

    payload = await _read_json(request, settings.max_body_bytes)
    body_token = payload.pop("token", None) if isinstance(payload, dict) else None
    if claims is None:
        claims = _authenticate(request, body_token)
        try:
            await limiter.hit_user(claims.org_id, claims.sub)
        except RateLimited as exc:
            raise _too_many(exc) from None
    batch = _validate(payload, settings)

    rows = [
        EventRow(
            org_id=claims.org_id,
            user_id=claims.sub,
            type=event.type.value,
            ts=event.ts,
            session_id=event.session_id,
            tab_id=event.tab_id,
            attrs=dict(event.attrs),
        )
        for event in batch.events
    ]
    try:
        request.app[WRITER_KEY].accept(rows)
    except WriterUnavailable as exc:
        raise _refuse(
            "unavailable",
            unavailable(exc.reason, exc.retry_after_s),
            len(rows),
        ) from None
    for row in rows:
        EVENTS_ACCEPTED.labels(type=row.type).inc()
    return web.json_response({"accepted": len(rows)}, status=202)


def _too_many(exc: RateLimited) -> ApiError:
    return _refuse(
        "rate_limited",
        ApiError(
            429,
            "too_many_requests",
            str(exc),
            headers={"Retry-After": str(exc.retry_after_s)},
        ),
    )


def parse_since(raw: str | None, now: datetime) -> datetime:
    """The ``since`` query value as an aware time (UTC when no offset is given)."""
    if raw is None or not raw.strip():
        return now - DEFAULT_SUMMARY_WINDOW
    try:
        since = datetime.fromisoformat(raw.strip().replace(" ", "+"))
    except ValueError:
        raise ApiError(400, "bad_request", "since must be an ISO 8601 time") from None
    return since if since.tzinfo is not None else since.replace(tzinfo=UTC)


async def get_summary(request: web.Request) -> web.Response:
    """The caller's org summary since ``since`` (default: the last 24 hours)."""
    claims = authenticate(request)
    claims.require_role("ADMIN")
    since = parse_since(request.query.get("since"), datetime.now(UTC))
    try:
        summary: Summary = await summarise_org(
            request.app[STORE_KEY], claims.org_id, since
        )
    except DatabaseNotReached as exc:
        raise unavailable(
            "the database has not answered since the service started; try again",
            SUMMARY_RETRY_AFTER_S,
        ) from exc
    except DATABASE_ERRORS as exc:
        logger.warning("summary failed error=%s", type(exc).__name__)
        raise unavailable(
            "the database is not answering; try again", SUMMARY_RETRY_AFTER_S
        ) from exc
    return web.json_response(text=summary.model_dump_json())


def cors_middleware(allowed_origins: list[str]) -> Any:
    """Answer preflights and add CORS headers for the configured browser origins."""
    allowed = set(allowed_origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and request.path.startswith("/telemetry/"):
            response: web.StreamResponse = web.Response(status=204)
            if origin in allowed:
                response.headers.update(
                    {
                        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                        "Access-Control-Allow-Headers": "Authorization, Content-Type",
                        "Access-Control-Max-Age": "600",
                    }
                )
        else:
            try:
                response = await handler(request)
            except ApiError as exc:
                response = exc.response()
        if origin in allowed and origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        response.headers.add("Vary", "Origin")
        return response

    return middleware


async def get_openapi(_: web.Request) -> web.Response:
    """The OpenAPI description of this service's routes."""
    return web.json_response(OPENAPI)


def _error(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Error"}
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "telemetry-ingest", "version": "0.1.0"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "TelemetryBatch": TelemetryBatch.model_json_schema(by_alias=True),
            "Summary": Summary.model_json_schema(by_alias=True),
            "Error": {
                "type": "object",
                "properties": {"error": {"type": "string"}, "detail": {}},
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/telemetry/client": {
            "post": {
                "summary": "Send a batch of client telemetry events",
                "description": "application/json, or text/plain carrying JSON "
                "(sendBeacon); without an Authorization header the body may carry "
                '"token".',
                "requestBody": {
                    "content": {
                        media: {
                            "schema": {"$ref": "#/components/schemas/TelemetryBatch"}
                        }
                        for media in sorted(ACCEPTED_CONTENT_TYPES)
                    }
                },
                "responses": {
                    "202": {"description": "accepted: {accepted: n}"},
                    "400": _error("malformed JSON"),
                    "401": _error("missing or invalid token"),
                    "413": _error("body over MAX_BODY_BYTES"),
                    "415": _error("content type not JSON or text/plain"),
                    "422": _error("invalid events, with reasons"),
                    "429": _error("rate limit; see Retry-After"),
                    "503": _error("queue full or database away; see Retry-After"),
                },
            }
        },
        "/telemetry/summary": {
            "get": {
                "summary": "The caller's org summary (ADMIN only)",
                "parameters": [
                    {
                        "name": "since",
                        "in": "query",
                        "schema": {"type": "string", "format": "date-time"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "summary",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Summary"}
                            }
                        },
                    },
                    "400": _error("since is not an ISO 8601 time"),
                    "401": _error("missing or invalid token"),
                    "403": _error("not an ADMIN"),
                    "503": _error("database away; see Retry-After"),
                },
            }
        },
    },
}


def add_routes(app: web.Application) -> None:
    """Register the telemetry routes on the application."""
    app.router.add_post("/telemetry/client", post_client_events)
    app.router.add_get("/telemetry/summary", get_summary)
    app.router.add_get("/telemetry/openapi.json", get_openapi)
