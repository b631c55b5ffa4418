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
line on the ``realtime_fanout.http.poll`` logger, written once the answers of the
same loop iteration are out (``PollLog``).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from opentelemetry import propagate, trace
from service_kit.auth import Claims, InvalidToken
from service_kit.errors import ApiError, error_response
from service_kit.web import authenticate, stands_alone, token_claims

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


def _optional_int(request: web.Request, name: str, minimum: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    kind = "a positive" if minimum > 0 else "a non-negative"
    if not raw.isascii() or not raw.isdigit() or len(raw) > 16:
        raise ApiError(400, "bad_request", f"{name} must be {kind} integer")
    value = int(raw)
    if not minimum <= value <= MAX_CURSOR:
        raise ApiError(
            400, "bad_request", f"{name} must be {kind} integer up to {MAX_CURSOR}"
        )
    return value


def _property_filter(claims: Claims, property_id: int | None) -> PropertyFilter:
    if property_id is not None:
        claims.require_property(property_id)
        return frozenset({property_id})
    if claims.property_ids is not None:
        return frozenset(claims.property_ids)
    return None


@stands_alone
async def subscribe(request: web.Request) -> web.StreamResponse:
    """The long-poll: events after the cursor, at once or as soon as one arrives.

    While a poll is held, this coroutine is the only one of the fanout's on its
    stack (the shared middlewares step aside, see ``stands_alone``): it answers its
    own errors as JSON and records its server span when the poll is answered
    (``_record_span``), not across the hold.
    """
    started = time.monotonic()
    started_ns = time.time_ns()
    hub = request.app[HUB_KEY]
    claims: Claims | None = None
    property_id: int | None = None
    answer: Answer | None = None
    outcome = "rejected"
    try:
        if hub.shutting_down:
            raise ApiError(503, "unavailable", "shutting down")
        claims = token_claims(request)
        property_id = _optional_int(request, "propertyId", minimum=1)
        cursor = _optional_int(request, "lastEventId", minimum=0)
        properties = _property_filter(claims, property_id)
        judged = await _judge(request, hub, claims.org_id, cursor, properties)
        if isinstance(judged, Waiter):
            # The hold, here rather than in a coroutine of its own: one frame less
            # per waiting poll. No timer either: the hub's sweep ends the hold.
            wait_s = request.app[SETTINGS_KEY].realtime_wait_s
            expires_in = claims.exp - time.time()
            hub.hold(judged, started + max(min(wait_s, expires_in), 0))
            try:
                answer = await judged.future
            finally:
                hub.remove(judged)
            if answer is None:
                if expires_in <= wait_s:
                    raise InvalidToken("token expired")
                answer = hub.hold_ended(judged)
        else:
            answer = judged
        outcome = (
            "resync" if answer.resync else "events" if answer.events else "timeout"
        )
        _record_span(request, claims, started_ns, 200, answer)
        hub.stats.poll_answered(
            claims.org_id, outcome, time.monotonic() - started, answer.events
        )
        return web.Response(body=answer.body(), content_type="application/json")
    except asyncio.CancelledError:
        outcome = "disconnected"
        raise
    except Exception as exc:
        if isinstance(exc, ApiError):
            hub.stats.poll_rejected(exc.status)
            _record_span(request, claims, started_ns, exc.status, None)
        return error_response(request, exc)
    finally:
        events = 0 if answer is None or outcome == "rejected" else len(answer.events)
        request.app[POLL_LOG_KEY].add(
            request, claims, property_id, events, outcome, started
        )


async def _judge(
    request: web.Request,
    hub: Hub,
    org_id: int,
    cursor: int | None,
    properties: PropertyFilter,
) -> Answer | Waiter:
    """An answer at once, or a registered waiter; learns an unseen org's position."""
    if not hub.is_known(org_id):
        authorization = request.headers["Authorization"]
        try:
            position = await request.app[POSITIONS_KEY].position(org_id, authorization)
        except PositionUnavailable:
            hub.stats.resync("position_unavailable")
            return Answer([], cursor or 0, resync=True)
        if cursor is not None and cursor < position:
            # The events after the cursor may have been written a moment ago and
            # still be on their way from the broker: the first one to arrive makes
            # the org known from there. Otherwise the cursor is judged against the
            # position (resync) once the catch-up time has passed.
            catch_up_s = request.app[SETTINGS_KEY].position_catch_up_s
            await hub.first_event(org_id, catch_up_s)
        hub.learn_position(org_id, position)
    try:
        judged = hub.poll(org_id, cursor, properties)
        if isinstance(judged, CursorAhead):
            assert cursor is not None
            return await _wait_ahead(request, hub, org_id, cursor, properties)
    except WaiterCapReached as exc:
        raise ApiError(
            429,
            "too_many_requests",
            "too many polls are waiting for this organisation",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc
    except ShuttingDown as exc:
        raise ApiError(503, "unavailable", "shutting down") from exc
    return judged


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


def _record_span(
    request: web.Request,
    claims: Claims | None,
    started_ns: int,
    status: int,
    answer: Answer | None,
) -> None:
    """The poll's server span, from its arrival to now, continuing the caller's trace.

    An answer with events also gets its ``fanout.deliver`` span, linked to this one.
    Recorded only for a poll that is part of a trace: the caller sent a
    ``traceparent``, or the answer carries events of a traced write. Every answer
    costs CPU while thousands of waiters are woken at once; an untraced poll's span
    would be a root nobody looks at.
    """
    traced_events = answer is not None and answer.traced
    if not traced_events and "traceparent" not in request.headers:
        return
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


class PollLog:
    """The poll log lines of one loop iteration, written after its answers went out.

    When an event wakes thousands of polls, all their handlers resume in one loop
    iteration; writing each line (about 17 us: the record, its format, a write to
    stderr) between two answers would delay every later answer by it. The lines are
    queued instead, and written, in order, by one callback that runs after them.
    """

    __slots__ = ("_lines", "_loop")

    def __init__(self) -> None:
        self._lines: list[tuple[object, ...]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(
        self,
        request: web.Request,
        claims: Claims | None,
        property_id: int | None,
        events: int,
        outcome: str,
        started: float,
    ) -> None:
        """Queue the poll's one key=value line (nothing at all when INFO is off)."""
        if not poll_logger.isEnabledFor(logging.INFO):
            return
        headers = request.headers
        self._lines.append(
            (
                "-" if claims is None else claims.org_id,
                "-" if claims is None else claims.sub,
                "all" if property_id is None else property_id,
                events,
                (time.monotonic() - started) * 1000,
                outcome,
                headers.get("Origin", "-").replace(" ", "%20")[:200],
                headers.get("User-Agent", "-").replace('"', "'")[:200],
            )
        )
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every queued line."""
        lines, self._lines, self._loop = self._lines, [], None
        for line in lines:
            poll_logger.info(
                "poll completed orgId=%s userId=%s propertyId=%s events=%d "
                'durationMs=%d outcome=%s origin=%s ua="%s"',
                *line,
            )


POLL_LOG_KEY = web.AppKey("poll_log", PollLog)


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
    app[POLL_LOG_KEY] = PollLog()
    app.router.add_get(SUBSCRIBE_PATH, subscribe)
    app.router.add_get("/v1/guest-checkin/realtime/metrics", metrics_summary)
    app.router.add_get("/v1/guest-checkin/realtime/openapi.json", openapi_document)
