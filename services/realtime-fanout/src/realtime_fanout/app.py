"""Wiring of the fanout: hub, position source, consumer and sweep in ``cleanup_ctx``.

``create_app`` builds the aiohttp application. Everything that opens a connection or
starts a task does so in a ``cleanup_ctx`` generator and closes it there: the HTTP
session to the check-in API, the event consumer (an exclusive per-process queue bound
to the owned shards), and the one periodic sweep task. ``on_shutdown`` (SIGTERM)
refuses new polls and answers every waiting one at once. The position source and the
clock can be injected, which is how the tests run without the API.

The fanout starts while the broker is away: the consumer's first attach is retried
in the background with capped backoff (``service_kit.startup``). Until it has
attached once, ``/readyz`` is 503 and a poll is answered 503 with ``Retry-After``:
the fanout has no events to judge a cursor against. After that, a lost connection
is aio-pika's to restore, and polls are served meanwhile as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable

import aiohttp
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from checkin_events import shard_bindings
from service_kit.auth import AuthSettings, TokenVerifier
from service_kit.errors import json_error
from service_kit.startup import start_or_retry
from service_kit.web import READINESS_KEY, base_app

from realtime_fanout.buffer import BufferLimits, Buffers, Clock
from realtime_fanout.http import (
    HUB_KEY,
    POSITIONS_KEY,
    RETRY_AFTER_S,
    SETTINGS_KEY,
    SUBSCRIBE_PATH,
    add_routes,
)
from realtime_fanout.intake import FanoutConsumer
from realtime_fanout.metrics import POLLS_REJECTED, FanoutStats
from realtime_fanout.positions import ApiPositionSource, PositionLearner, PositionSource
from realtime_fanout.settings import FanoutSettings
from realtime_fanout.waiters import Hub

logger = logging.getLogger(__name__)

CONSUMER_KEY = web.AppKey("consumer", FanoutConsumer)
IDLE_SWEEP_EVERY_S = 5.0


def build_hub(settings: FanoutSettings, clock: Clock = time.monotonic) -> Hub:
    """The hub with buffers sized by the settings."""
    limits = BufferLimits(
        max_events=settings.buffer_max_events,
        ttl_s=settings.buffer_ttl_s,
        idle_evict_s=settings.org_idle_evict_s,
        gap_grace_s=settings.gap_grace_s,
    )
    return Hub(Buffers(limits, clock), settings.max_waiters_per_org, FanoutStats())


def create_app(
    settings: FanoutSettings,
    verifier: TokenVerifier | None = None,
    position_source: PositionSource | None = None,
    clock: Clock = time.monotonic,
    consume_events: bool = True,
) -> web.Application:
    """The fanout application.

    ``position_source`` replaces the check-in API and ``consume_events=False`` leaves
    the broker out: unit tests feed the hub directly.
    """
    app = base_app(verifier or TokenVerifier(AuthSettings()))
    app[SETTINGS_KEY] = settings
    app[HUB_KEY] = build_hub(settings, clock)
    if position_source is not None:
        app[POSITIONS_KEY] = PositionLearner(position_source)
    else:
        app.cleanup_ctx.append(_api_positions)
    if consume_events:
        consumer = _build_consumer(settings, app[HUB_KEY])
        app[CONSUMER_KEY] = consumer
        app[READINESS_KEY]["consumer"] = lambda: _consumer_attached(consumer)
        app.middlewares.append(_refuse_polls_until_attached(consumer))
        app.cleanup_ctx.append(_consumer)
    app.cleanup_ctx.append(_sweeper)
    app.on_shutdown.append(_drain)
    add_routes(app)
    return app


async def _api_positions(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    timeout = aiohttp.ClientTimeout(total=settings.position_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        app[POSITIONS_KEY] = PositionLearner(
            ApiPositionSource(session, settings.checkin_api_url)
        )
        yield


def _build_consumer(settings: FanoutSettings, hub: Hub) -> FanoutConsumer:
    def reconnected() -> None:
        released = hub.connection_lost()
        logger.warning("consumer reattached orgs_forgotten=all released=%s", released)

    return FanoutConsumer(
        settings.consumer_amqp_url(),
        hub.publish,
        shard_bindings(settings.shards, settings.shard_count),
        exchange_name=settings.events_exchange,
        on_reconnect=reconnected,
    )


async def _consumer_attached(consumer: FanoutConsumer) -> str | None:
    if consumer.is_ready:
        return None
    if not consumer.started:
        return "consumer not attached: the broker has not answered since start"
    return "consumer not attached"


def _refuse_polls_until_attached(consumer: FanoutConsumer) -> Middleware:
    """Answer a poll 503 with ``Retry-After`` until the consumer attached once.

    Counted in ``fanout_polls_rejected_total{reason="not_consuming"}``.

    A plain function, not a coroutine: once attached it hands back the handler's
    own awaitable, so a held poll keeps no frame of this middleware alive.
    """

    async def refuse() -> web.StreamResponse:
        POLLS_REJECTED.labels(reason="not_consuming").inc()
        return json_error(
            503,
            "unavailable",
            "not receiving events yet: the broker has not answered since the fanout "
            "started; try again",
            {"Retry-After": str(RETRY_AFTER_S)},
        )

    @web.middleware
    def refuse_polls(
        request: web.Request, handler: Handler
    ) -> Awaitable[web.StreamResponse]:
        if consumer.started or request.path != SUBSCRIBE_PATH:
            return handler(request)
        return refuse()

    return refuse_polls


async def _consumer(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    consumer = app[CONSUMER_KEY]
    retrying = await start_or_retry(
        consumer.start,
        "broker",
        CONNECTION_EXCEPTIONS,
        settings.connect_retry_min_s,
        settings.connect_retry_max_s,
    )
    try:
        yield
    finally:
        if retrying is not None:
            retrying.cancel()
            await asyncio.gather(retrying, return_exceptions=True)
        await consumer.stop()


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_sweep_forever(app), name="fanout-sweep")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _sweep_forever(app: web.Application) -> None:
    """End due holds, close lost holes and trim often; evict idle orgs now and then.

    A hold therefore ends up to one sweep interval after its deadline.
    """
    hub = app[HUB_KEY]
    interval = app[SETTINGS_KEY].sweep_interval_s
    next_idle_sweep = time.monotonic() + IDLE_SWEEP_EVERY_S
    while True:
        await asyncio.sleep(interval)
        try:
            hub.end_holds(time.monotonic())
            hub.sweep()
            if time.monotonic() >= next_idle_sweep:
                next_idle_sweep = time.monotonic() + IDLE_SWEEP_EVERY_S
                evicted = hub.evict_idle()
                hub.stats.forget_inactive()
                if evicted:
                    logger.info("idle orgs evicted count=%s", len(evicted))
        except Exception:
            logger.exception("sweep failed")


async def _drain(app: web.Application) -> None:
    released = app[HUB_KEY].drain()
    logger.info("shutting down released_waiters=%s", released)
