"""Wiring of telemetry-ingest: settings, migrations, pool, writer, jobs and routes.

Every connection and background task is opened and closed in ``cleanup_ctx``, in
this order: the database (migrations, then the pool), the batch writer (whose
clean-up writes everything still queued before the pool closes) and the retention
job.

The service starts while PostgreSQL is away: the migrations are tried at once and,
if the database does not answer, again in the background with capped backoff
(``service_kit.startup``). Until they ran, ``/readyz`` is 503, a batch is refused
503 with ``Retry-After`` (nothing is accepted that could not be stored) and the
summary is 503; the retention job waits for them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import sqlalchemy.exc
from aiohttp import web
from service_kit.auth import AuthSettings, TokenVerifier
from service_kit.startup import start_or_retry
from service_kit.web import READINESS_KEY, base_app

from telemetry_ingest.http import (
    LIMITER_KEY,
    SETTINGS_KEY,
    STORE_KEY,
    WRITER_KEY,
    add_routes,
    cors_middleware,
)
from telemetry_ingest.migrate import upgrade_to_head
from telemetry_ingest.ratelimit import RequestLimiter
from telemetry_ingest.settings import TelemetrySettings
from telemetry_ingest.store import DATABASE_ERRORS, EventStore
from telemetry_ingest.writer import EventWriter

logger = logging.getLogger(__name__)


DATABASE_AWAY: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    sqlalchemy.exc.OperationalError,
)
"""What the migrations raise while the database is away (retried, not fatal)."""


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    store = await EventStore.open(settings.database_url, settings.database_timeout_s)
    app[STORE_KEY] = store

    async def database_ready() -> str | None:
        if not store.reached:
            return "the database has not answered since start (not migrated)"
        await store.ping()
        return None

    async def migrate() -> None:
        await asyncio.to_thread(
            upgrade_to_head, settings.database_url, settings.database_timeout_s
        )
        store.mark_reached()

    app[READINESS_KEY]["database"] = database_ready
    retrying = await start_or_retry(
        migrate,
        "database",
        DATABASE_AWAY,
        settings.connect_retry_min_s,
        settings.connect_retry_max_s,
    )
    yield
    if retrying is not None:
        retrying.cancel()
        await asyncio.gather(retrying, return_exceptions=True)
    await store.close()


async def _writer(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    writer = EventWriter(
        app[STORE_KEY],
        queue_max=settings.queue_max,
        flush_interval_s=settings.flush_interval_s,
        flush_batch_max=settings.flush_batch_max,
    )
    app[WRITER_KEY] = writer

    async def writer_ready() -> str | None:
        return "last write failed" if writer.failing else None

    app[READINESS_KEY]["writer"] = writer_ready
    task = asyncio.create_task(writer.run(), name="telemetry-writer")
    yield
    writer.stop()
    await task
    left = await writer.drain(settings.shutdown_flush_timeout_s)
    logger.info("writer stopped events_left=%d", left)


async def run_retention(store: EventStore, retention_days: int) -> int:
    """Delete the events older than the retention period; returns how many."""
    cutoff = datetime.now(UTC) - timedelta(days=retention_days)
    deleted = await store.delete_older_than(cutoff)
    logger.info("retention ran deleted=%d cutoff=%s", deleted, cutoff.isoformat())
    return deleted


async def _retention_loop(store: EventStore, settings: TelemetrySettings) -> None:
    await store.wait_reached()
    while True:
        try:
            await run_retention(store, settings.retention_days)
        except DATABASE_ERRORS as exc:
            logger.warning("retention failed error=%s", type(exc).__name__)
        except Exception:
            logger.exception("retention failed unexpectedly; trying again later")
        await asyncio.sleep(settings.retention_interval_s)


async def _retention(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(
        _retention_loop(app[STORE_KEY], app[SETTINGS_KEY]), name="telemetry-retention"
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(
    settings: TelemetrySettings, auth_settings: AuthSettings | None = None
) -> web.Application:
    """The telemetry-ingest application, ready to be run or tested."""
    verifier = TokenVerifier(auth_settings or AuthSettings())
    app = base_app(
        verifier,
        middlewares=[cors_middleware(settings.cors_origins)],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS_KEY] = settings
    app[LIMITER_KEY] = RequestLimiter(
        settings.rate_limit_per_minute, settings.rate_limit_per_ip_per_minute
    )
    app.cleanup_ctx.extend([_database, _writer, _retention])
    add_routes(app)
    return app
