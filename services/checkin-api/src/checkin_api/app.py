"""The check-in API's application factory: one place that wires the service.

``create_app`` builds the aiohttp application from the settings. Everything with a
lifetime is opened and closed in ``cleanup_ctx``, in order: the schema migration,
the database pool, then the outbox relay task (cancelled and awaited on shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web
from service_kit.auth import AuthSettings, TokenVerifier
from service_kit.web import READINESS_INFO_KEY, READINESS_KEY, base_app

from checkin_api import http
from checkin_api.migrate import upgrade_to_head
from checkin_api.relay import OutboxRelay
from checkin_api.settings import ApiSettings
from checkin_api.store import CheckinStore

logger = logging.getLogger(__name__)

RELAY_KEY = web.AppKey("outbox_relay", OutboxRelay)
READINESS_TIMEOUT_S = 2.0
RELAY_STOP_TIMEOUT_S = 10.0


def create_app(settings: ApiSettings, auth: AuthSettings) -> web.Application:
    """The check-in API application, ready for ``web.run_app`` or a test server."""
    app = base_app(
        TokenVerifier(auth),
        middlewares=[http.error_mapping],
        client_max_size=settings.max_document_bytes + 1024**2,
    )
    app[http.SETTINGS_KEY] = settings
    app[http.AUTH_SETTINGS_KEY] = auth
    app[RELAY_KEY] = OutboxRelay(settings)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_relay)
    app[READINESS_KEY]["database"] = lambda: _database_ready(app)
    app[READINESS_INFO_KEY]["broker"] = lambda: _broker_state(app)
    http.add_routes(app, settings.local_mode)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[http.SETTINGS_KEY]
    if settings.migrate_on_start:
        await asyncio.to_thread(upgrade_to_head, settings.database_url)
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        timeout=settings.db_connect_timeout_s,
        command_timeout=settings.db_command_timeout_s,
        reset=_reset_connection,
    )
    app[http.STORE_KEY] = CheckinStore(pool, settings.db_acquire_timeout_s)
    logger.info("database pool open max_size=%s", settings.db_pool_max_size)
    yield
    try:
        await asyncio.wait_for(pool.close(), timeout=5)
    except TimeoutError:
        pool.terminate()
    logger.info("database pool closed")


async def _reset_connection(connection: asyncpg.Connection) -> None:
    """Hand a connection back to the pool without asyncpg's reset round trip.

    The API keeps no session state on pooled connections (no LISTEN, advisory lock,
    SET or cursor: the relay uses its own connection), so the default reset query
    is one more round trip per request for nothing. A transaction left open by a
    cancelled request is rolled back.
    """
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


async def _relay(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[RELAY_KEY].run(), name="outbox-relay")
    yield
    task.cancel()
    # Bounded: shutdown must not wait on a broker or database that does not answer.
    # Rows the relay did not mark are published again by the next relay.
    done, _ = await asyncio.wait({task}, timeout=RELAY_STOP_TIMEOUT_S)
    if not done:
        logger.warning("outbox relay did not stop within %.0fs", RELAY_STOP_TIMEOUT_S)
    else:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    logger.info("outbox relay stopped")


async def _database_ready(app: web.Application) -> str | None:
    await asyncio.wait_for(app[http.STORE_KEY].ping(), timeout=READINESS_TIMEOUT_S)
    return None


async def _broker_state(app: web.Application) -> str:
    relay = app[RELAY_KEY]
    role = "leader" if relay.is_leader else "standby"
    return f"{relay.broker_state} ({role})"
