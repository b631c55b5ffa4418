"""The fanout's HTTP edge: the long-poll and the JSON metrics.

``GET /v1/guest-checkin/realtime/subscribe?propertyId=&lastEventId=`` verifies the
bearer token, turns the query into a cursor and a property filter (a MANAGER with
``propertyIds`` sees only those; asking for another is 403), makes sure the org's
position is known (asking the check-in API with the caller's token), and then either
answers at once or holds the request until a visible event, the end of the hold, the
token's expiry (401) or shutdown. A client that goes away mid-hold cancels the
handler; its waiter is removed in ``finally`` so it never counts against the cap.

Domain outcomes become HTTP here and only here: ``WaiterCapReached`` is 429 with
``Retry-After``, a cursor beyond the org's real position is 400, a position the API
cannot give is ``resync`` (never a silent hole). Every poll ends in one key=value log
line on the ``realtime_fanout.http.poll`` logger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiohttp import web
from opentelemetry import propagate, trace
from service_kit.auth import Claims, InvalidToken
from service_kit.errors import ApiError
from service_kit.web import CLAIMS_KEY, authenticate, traces_itself

from realtime_fanout.openapi import OPENAPI_BODY
from realtime_fanout.positions import PositionLearner, PositionUnavailable
from realtime_fanout.settings import FanoutSettings
from realtime_fanout.waiters import (
    Answer,
    CursorAhead,
    Hub,
    PropertyFilter,
    ShuttingDown,
    Waiter,
    WaiterCapReached,
)

logger = logging.getLogger(__name__)
poll_logger = logging.getLogger(__name__ + ".poll")
tracer = trace.get_tracer(__name__)

HUB_KEY = web.AppKey("hub", Hub)
POSITIONS_KEY = web.AppKey("positions", PositionLearner)
SETTINGS_KEY = web.AppKey("settings", FanoutSettings)

SUBSCRIBE_PATH = "/v1/guest-checkin/realtime/subscribe"
MAX_CURSOR = 2**53
RETRY_AFTER_S = 5


@dataclass
class PollRecord:
    """What the poll log line says about one poll."""

    org_id: str = "-"
    user_id: str = "-"
    property_id: str = "all"
    events: int = 0
    outcome: str = "rejected"


def _optional_int(request: web.Request, name: str, minimum: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 16:
        raise ApiError(400, "bad_request", f"{name} must be a non-negative integer")
    value = int(raw)
    if not minimum <= value <= MAX_CURSOR:
        raise ApiError(400, "bad_request", f"{name} is out of range")
    return value


def _property_filter(claims: Claims, property_id: int | None) -> PropertyFilter:
    if property_id is not None:
        claims.require_property(property_id)
        return frozenset({property_id})
    if claims.property_ids is not None:
        return frozenset(claims.property_ids)
    return None


@traces_itself
async def subscribe(request: web.Request) -> web.Response:
    """The long-poll: events after the cursor, at once or as soon as one arrives.

    Its server span is recorded when the poll is answered (``_record_span``), not
    held open across the hold.
    """
    started = time.monotonic()
    started_ns = time.time_ns()
    record = PollRecord()
    hub = request.app[HUB_KEY]
    try:
        if hub.shutting_down:
            raise ApiError(503, "unavailable", "shutting down")
        claims = authenticate(request)
        record.org_id, record.user_id = str(claims.org_id), claims.sub
        property_id = _optional_int(request, "propertyId", minimum=1)
        record.property_id = "all" if property_id is None else str(property_id)
        cursor = _optional_int(request, "lastEventId", minimum=0)
        properties = _property_filter(claims, property_id)
        answer = await _answer(request, claims, cursor, properties)
        _record_span(request, started_ns, 200, answer)
        record.events = len(answer.events)
        record.outcome = (
            "resync" if answer.resync else "events" if answer.events else "timeout"
        )
        hub.stats.poll_answered(
            claims.org_id,
            record.outcome,
            time.monotonic() - started,
            [event.timestamp for event in answer.events],
        )
        return web.Response(body=answer.body(), content_type="application/json")
    except ApiError as exc:
        hub.stats.poll_rejected(exc.status)
        _record_span(request, started_ns, exc.status, None)
        raise
    except asyncio.CancelledError:
        record.outcome = "disconnected"
        raise
    finally:
        _log_poll(request, record, started)


def _record_span(
    request: web.Request, started_ns: int, status: int, answer: Answer | None
) -> None:
    """The poll's server span, from its arrival to now, continuing the caller's trace.

    An answer with events also gets its ``fanout.deliver`` span, linked to this one.
    Recorded only for a poll that is part of a trace: the caller sent a
    ``traceparent``, or the answer carries events of a traced write. Every answer
    costs CPU while thousands of waiters are woken at once; an untraced poll's span
    would be a root nobody looks at.
    """
    traced_events = answer is not None and any(
        event.trace_context is not None for event in answer.events
    )
    if not traced_events and "traceparent" not in request.headers:
        return
    claims = request.get(CLAIMS_KEY)
    attributes: dict[str, str | int] = {
        "http.request.method": request.method,
        "http.route": SUBSCRIBE_PATH,
        "http.response.status_code": status,
    }
    if claims is not None:
        attributes["checkin.org_id"] = claims.org_id
    span = tracer.start_span(
        f"GET {SUBSCRIBE_PATH}",
        context=propagate.extract(request.headers),
        kind=trace.SpanKind.SERVER,
        attributes=attributes,
        start_time=started_ns,
    )
    try:
        if answer is not None:
            with trace.use_span(span):
                _trace_delivery(answer)
    finally:
        span.end()


def _trace_delivery(answer: Answer) -> None:
    """One ``fanout.deliver`` span per answer with events, in the first event's trace.

    The span's parent is the span that consumed that event (and so, through the AMQP
    headers and the outbox, the request that wrote it); it links to the poll's own
    request span and to the traces of the other events in the answer.
    """
    contexts = [e.trace_context for e in answer.events if e.trace_context is not None]
    if not contexts:
        return
    poll_span = trace.get_current_span().get_span_context()
    links = [trace.Link(poll_span)] if poll_span.is_valid else []
    links += [trace.Link(other) for other in contexts[1:]]
    parent = trace.set_span_in_context(trace.NonRecordingSpan(contexts[0]))
    with tracer.start_as_current_span(
        "fanout.deliver",
        context=parent,
        links=links,
        attributes={"checkin.events": len(answer.events)},
    ):
        pass


def _log_poll(request: web.Request, record: PollRecord, started: float) -> None:
    user_agent = request.headers.get("User-Agent", "-").replace('"', "'")[:200]
    poll_logger.info(
        "poll completed orgId=%s userId=%s propertyId=%s events=%d durationMs=%d "
        'outcome=%s origin=%s ua="%s"',
        record.org_id,
        record.user_id,
        record.property_id,
        record.events,
        (time.monotonic() - started) * 1000,
        record.outcome,
        request.headers.get("Origin", "-").replace(" ", "%20")[:200],
        user_agent,
    )


async def _answer(
    request: web.Request,
    claims: Claims,
    cursor: int | None,
    properties: PropertyFilter,
) -> Answer:
    hub = request.app[HUB_KEY]
    authorization = request.headers["Authorization"]
    org_id = claims.org_id
    if not hub.is_known(org_id):
        try:
            position = await request.app[POSITIONS_KEY].position(org_id, authorization)
        except PositionUnavailable:
            hub.stats.resync("position_unavailable")
            return Answer([], cursor or 0, resync=True)
        hub.learn_position(org_id, position)

    try:
        judged = hub.poll(org_id, cursor, properties)
        if isinstance(judged, CursorAhead):
            assert cursor is not None
            judged = await _wait_ahead(request, hub, org_id, cursor, properties)
    except WaiterCapReached as exc:
        raise ApiError(
            429,
            "too_many_requests",
            "too many polls are waiting for this organisation",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc
    except ShuttingDown as exc:
        raise ApiError(503, "unavailable", "shutting down") from exc
    if isinstance(judged, Answer):
        return judged
    return await _hold(hub, judged, claims, request.app[SETTINGS_KEY].realtime_wait_s)


async def _wait_ahead(
    request: web.Request,
    hub: Hub,
    org_id: int,
    cursor: int,
    properties: PropertyFilter,
) -> Answer | Waiter:
    """A cursor past ``head``: wait for it if the API confirms it exists."""
    authorization = request.headers["Authorization"]
    try:
        position = await request.app[POSITIONS_KEY].position(org_id, authorization)
    except PositionUnavailable:
        hub.stats.resync("position_unavailable")
        return Answer([], cursor, resync=True)
    if cursor > position:
        raise ApiError(400, "bad_request", "cursor from the future")
    if not hub.is_known(org_id):
        hub.learn_position(org_id, position)
    return hub.wait_ahead(org_id, cursor, properties)


async def _hold(hub: Hub, waiter: Waiter, claims: Claims, wait_s: float) -> Answer:
    """Wait for the waiter's answer, the end of the hold or the token's expiry.

    No timer of its own: the hub's sweep ends the hold at its deadline.
    """
    expires_in = claims.exp - time.time()
    hub.hold(waiter, time.monotonic() + max(min(wait_s, expires_in), 0))
    try:
        answer = await waiter.future
    finally:
        hub.remove(waiter)
    if answer is not None:
        return answer
    if expires_in <= wait_s:
        raise InvalidToken("token expired")
    return hub.hold_ended(waiter)


async def metrics_summary(request: web.Request) -> web.Response:
    """The JSON metrics of the design note (ADMIN or MANAGER; global counts only)."""
    claims = authenticate(request)
    claims.require_role("ADMIN", "MANAGER")
    hub = request.app[HUB_KEY]
    summary = hub.stats.summary(len(hub.buffers.orgs), hub.buffers.total_size)
    return web.json_response(summary)


async def openapi_document(_: web.Request) -> web.Response:
    """The OpenAPI document of the fanout's routes (no token needed)."""
    return web.Response(body=OPENAPI_BODY, content_type="application/json")


def add_routes(app: web.Application) -> None:
    """Register the fanout's routes on the application."""
    app.router.add_get(SUBSCRIBE_PATH, subscribe)
    app.router.add_get("/v1/guest-checkin/realtime/metrics", metrics_summary)
    app.router.add_get("/v1/guest-checkin/realtime/openapi.json", openapi_document)
